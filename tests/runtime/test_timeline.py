"""Where OUT.png (kame.runtime.timeline) puts the first response and the agent's words: the
positions are computed apart from the drawing, so they are checked here, not pixels."""

from __future__ import annotations

import numpy as np

from kame.runtime.timeline import agent_word_positions, first_response_times, plot_timeline

SR = 24000


def test_a_tandem_first_response_is_at_the_end_of_speech_plus_its_latency():
    # (was: drawn at the metric's t, 2.56 s, when the VAD reported the end of speech at 1.98 s)
    vad = [{"type": "vad", "event": "start", "t": 0.1, "detected_at": 0.3},
           {"type": "vad", "event": "end", "t": 1.98, "detected_at": 2.56},
           {"type": "vad", "event": "start", "t": 4.0, "detected_at": 4.2},
           {"type": "vad", "event": "end", "t": 5.0, "detected_at": 5.58}]
    metrics = [{"name": "first_response_latency", "value": 0.0, "t": 2.56, "labels": {"overlap": True}},
               {"name": "first_response_latency", "value": 0.72, "t": 5.8, "labels": {}}]
    assert first_response_times({"vad": vad, "metrics": metrics}) == [1.98, 5.0 + 0.72]
    assert first_response_times({"vad": [], "metrics": metrics[:1]}) == [2.56]  # nothing better known


def _cascade_rec() -> tuple[dict, np.ndarray]:
    # the LLM streamed the reply at 3.0-3.2 s; its audio is heard from 4.8 s to 6.8 s
    agent = np.zeros(8 * SR, np.float32)
    agent[int(4.8 * SR):int(6.8 * SR)] = 0.3
    rec = {"vad": [{"type": "vad", "event": "end", "t": 1.5, "detected_at": 2.1}],
           "other": [{"type": "turn", "turn": 1, "t": 2.9, "t_user_end": 1.5},
                     {"type": "agent_turn", "turn": 1, "t": 6.8}],
           "metrics": [{"name": "first_response_latency", "value": 3.3, "t": 4.8, "labels": {"turn": 1}}],
           "agent_text": [{"t": 3.0, "text": "Paris"}, {"t": 3.1, "text": " is"}, {"t": 3.15, "text": " the"},
                          {"t": 3.2, "text": " capital"}]}
    return rec, agent


def test_a_cascade_reply_s_words_are_placed_when_they_are_heard():
    # (was: at the LLM's streaming times, 1.8 s before the audio began)
    rec, agent = _cascade_rec()
    assert first_response_times(rec) == [4.8]
    pos = agent_word_positions(rec, agent)
    assert [w for _, _, w in pos] == ["Paris", "is", "the", "capital"]
    times = [t for t, _, _ in pos]
    assert abs(times[0] - 4.8) < 1e-9 and times == sorted(times) and times[-1] < 6.8
    assert all(0 < y < 1 for _, y, _ in pos)  # inside the panel (axes fractions)


def test_tandem_words_stay_at_their_step_and_the_plot_is_written(tmp_path):
    rec = {"vad": [], "metrics": [], "other": [], "transcripts": [], "oracle": [],
           "agent_text": [{"t": 1.0, "text": " hel"}, {"t": 1.08, "text": "lo"}, {"t": 1.5, "text": " there"}]}
    assert [(t, w) for t, _, w in agent_word_positions(rec, np.zeros(SR * 2))] == [(1.0, "hello"), (1.5, "there")]
    rec, agent = _cascade_rec()
    rec.update(transcripts=[{"t": 2.0, "text": "what is the capital of France", "final": True}], oracle=[])
    plot_timeline(tmp_path / "t.png", np.zeros_like(agent), agent, rec, "cascade")
    assert (tmp_path / "t.png").stat().st_size > 0


def _long_tandem(words: int, seconds: float) -> tuple[dict, np.ndarray]:
    rec = {"vad": [], "metrics": [], "other": [], "transcripts": [], "oracle": [],
           "agent_text": [{"t": seconds * i / words, "text": f" w{i}"} for i in range(words)]}
    return rec, np.zeros(int(SR * seconds) + SR, dtype=np.float32)


def _word_texts(fig) -> list[str]:
    return [a.get_text() for a in fig.axes[3].texts]


def test_a_long_run_plots_its_last_words_on_a_wider_figure():
    """Was: the first 400 agent words only, silently: a 3-minute run's last turns had no words."""
    import matplotlib.pyplot as plt

    from kame.runtime.timeline import MAX_WIDTH_IN, WIDTH_IN, timeline_figure

    rec, agent = _long_tandem(600, 180.0)
    fig = timeline_figure(np.zeros_like(agent), agent, rec, "tandem")
    try:
        texts = _word_texts(fig)
        assert "w599" in texts and len(texts) == 600  # all of them, to the last
        assert WIDTH_IN < fig.get_figwidth() <= MAX_WIDTH_IN  # wider for 3 minutes
    finally:
        plt.close(fig)


def test_too_many_words_are_thinned_over_the_whole_run_with_a_note(monkeypatch):
    import matplotlib.pyplot as plt

    from kame.runtime import timeline

    monkeypatch.setattr(timeline, "WORDS_PER_IN", 10)  # (14 in: 140 words at most)
    rec, agent = _long_tandem(450, 40.0)
    fig = timeline.timeline_figure(np.zeros_like(agent), agent, rec, "tandem")
    try:
        texts = _word_texts(fig)
        note = [t for t in texts if "agent words shown, evenly over the whole run" in t]
        assert len(note) == 1 and "140 of 450" in note[0]
        shown = [int(t[1:]) for t in texts if t.startswith("w")]
        assert len(shown) == 140 and shown[0] == 0 and shown[-1] == 449  # spread to the last word, not the first 140
    finally:
        plt.close(fig)


def test_a_bare_oracle_reset_is_not_drawn_as_a_prediction():
    """(hybrid routing's bare reset blanks the queued tokens: the stats count it as blanked, so the
    plot's prediction panel leaves it out; was: a "#2:" line among the predictions)"""
    import matplotlib.pyplot as plt

    from kame.runtime.timeline import timeline_figure

    rec, agent = _long_tandem(3, 4.0)
    rec["oracle"] = [{"prediction_id": 1, "event": "reset", "t": 1.0},
                     {"prediction_id": 1, "event": "append", "t": 1.1, "text": "Paris."},
                     {"prediction_id": 2, "event": "reset", "t": 2.0, "bare": True}]
    fig = timeline_figure(np.zeros_like(agent), agent, rec, "tandem")
    try:
        texts = [a.get_text() for a in fig.axes[2].texts]
        assert texts == ["#1:Paris."]
    finally:
        plt.close(fig)


def _routed_rec() -> tuple[dict, np.ndarray]:
    """A tandem run with hybrid routing in the shape `kame run` records it (barge_h): the
    front-end talks until the route at 5.92 s and is muted then; the LLM streams the routed reply
    at 6.64-8.0 s (over silence); its audio starts at 8.48 s and a barge-in cuts it at 8.72 s,
    after its first sentence; the front-end talks again from 8.72 s (its word of that step too)."""
    agent = np.zeros(11 * SR, np.float32)
    agent[int(0.3 * SR):int(5.9 * SR)] = 0.3  # (the front-end)
    agent[int(8.52 * SR):int(8.72 * SR)] = 0.3  # (the routed reply)
    agent[int(8.72 * SR):int(10.0 * SR)] = 0.3  # (the front-end again)
    reply = "The planet Saturn has been added. It has rings."
    rec = {"vad": [{"type": "vad", "event": "end", "t": 3.648, "detected_at": 4.16}],
           "other": [{"type": "route", "turn": 1, "route": "structured", "rules": ["extraction"], "t": 5.92},
                     {"type": "barge_in", "turn": 1, "t": 8.72, "heard": "The planet Saturn has been added."},
                     {"type": "agent_turn", "text": "The planet Saturn has been added.", "reply": reply,
                      "interrupted": True, "failed": False, "turn": 1, "route": "structured", "t": 8.72},
                     {"type": "route", "turn": 2, "route": "open", "rules": [], "t": 10.5}],
           "metrics": [{"name": "first_response_latency", "value": 0.0, "t": 4.24, "labels": {"overlap": True}},
                       {"name": "llm_ttft", "value": 0.72, "t": 6.64,
                        "labels": {"mode": "hybrid", "turn": 1, "route": "structured"}},
                       {"name": "first_response_latency", "value": 4.872, "t": 8.48,
                        "labels": {"mode": "hybrid", "turn": 1, "route": "structured"}}],
           "agent_text": [{"t": 0.32, "text": " operations"}, {"t": 5.92, "text": " own"}]
           + [{"t": 6.64 + 0.08 * i, "text": p} for i, p in enumerate(
               [" The", " planet", " Sat", "urn", " has", " been", " added", ".", " It", " has", " rings", "."])]
           + [{"t": 8.72, "text": " such"}, {"t": 9.2, "text": " el"}]}
    return rec, agent


def test_a_routed_reply_s_heard_words_are_spread_over_its_audio():
    """Hybrid routing: the routed reply's words go over its audio (8.52 s to the barge-in at
    8.72 s), only those heard; the front-end's words stay at their steps, the one sent in the
    route's step and the one in the cut's step too. (Was: the whole reply drawn at 6.6-8.0 s,
    when the LLM streamed it, over the muted front-end's silence.)"""
    rec, agent = _routed_rec()
    pos = agent_word_positions(rec, agent)
    words = [w for _, _, w in pos]
    assert words == ["operations", "own", "The", "planet", "Saturn", "has", "been", "added.", "(+3 not heard)",
                     "such", "el"]
    at = {w: t for t, _, w in pos}
    assert abs(at["The"] - (3.648 + 4.872)) < 1e-6  # its first audible sample (the first response)
    assert all(8.5 <= at[w] < 8.72 for w in ("planet", "Saturn", "has", "been", "added."))
    assert at["(+3 not heard)"] == 8.72  # at the cut
    assert (at["operations"], at["own"], at["such"], at["el"]) == (0.32, 5.92, 8.72, 9.2)
    assert [t for t, _, _ in pos] == sorted(t for t, _, _ in pos)


def test_a_routed_reply_under_way_at_the_end_is_spread_to_its_last_audible_sample():
    rec, agent = _routed_rec()
    rec["other"] = rec["other"][:1]  # (no barge-in, no agent_turn yet: the file ended first)
    rec["agent_text"] = rec["agent_text"][:-2]
    agent[int(8.72 * SR):] = 0.0
    agent[int(8.52 * SR):int(9.6 * SR)] = 0.3  # (the reply, still playing)
    pos = agent_word_positions(rec, agent)
    assert [w for _, _, w in pos][2:] == ["The", "planet", "Saturn", "has", "been", "added.", "It", "has", "rings."]
    times = [t for t, _, _ in pos][2:]
    assert abs(times[0] - 8.52) < 1e-6 and 9.2 < times[-1] < 9.6


def test_a_cut_cascade_reply_draws_the_words_heard_and_the_next_reply_keeps_its_first_word():
    """(was: all the reply's words squeezed into the 0.5 s heard; and the next reply's first
    piece, "The", glued to the cut reply's trailing " " and drawn with it)"""
    agent = np.zeros(14 * SR, np.float32)
    agent[int(7.04 * SR):int(7.6 * SR)] = 0.3
    agent[int(11.0 * SR):int(13.0 * SR)] = 0.3
    rec = {"vad": [{"type": "vad", "event": "end", "t": 2.5, "detected_at": 3.0},
                   {"type": "vad", "event": "end", "t": 9.6, "detected_at": 10.1}],
           "other": [{"type": "turn", "turn": 1, "t": 4.48, "t_user_end": 2.5},
                     {"type": "agent_turn", "turn": 1, "t": 7.6, "interrupted": True, "text": "A tale of old.",
                      "reply": "A tale of old. The story begins with "},
                     {"type": "turn", "turn": 2, "t": 10.5, "t_user_end": 9.6},
                     {"type": "agent_turn", "turn": 2, "t": 13.0, "interrupted": False, "text": "The end.",
                      "reply": "The end."}],
           "metrics": [{"name": "first_response_latency", "value": 4.54, "t": 7.04, "labels": {"turn": 1}},
                       {"name": "first_response_latency", "value": 1.4, "t": 11.0, "labels": {"turn": 2}}],
           "agent_text": [{"t": 4.9, "text": "A tale"}, {"t": 5.0, "text": " of"}, {"t": 5.1, "text": " old. "},
                          {"t": 6.0, "text": "The story"}, {"t": 6.1, "text": " begins"}, {"t": 6.2, "text": " with"},
                          {"t": 6.3, "text": " "}, {"t": 10.9, "text": "The"}, {"t": 11.0, "text": " end."}]}
    pos = agent_word_positions(rec, agent)
    assert [w for _, _, w in pos] == ["A", "tale", "of", "old.", "(+4 not heard)", "The", "end."]
    assert all(7.04 <= t <= 7.6 for t, _, _ in pos[:5]) and all(11.0 <= t < 13.0 for t, _, _ in pos[5:])


def test_text_the_font_cannot_draw_gives_no_warning_per_glyph(tmp_path):
    """(was: one matplotlib "Glyph 12399 (...) missing from font(s) DejaVu Sans." UserWarning per
    character on stderr: CJK, emoji, an ESC in the LLM's text); other warnings still show."""
    import warnings

    rec, agent = _cascade_rec()
    rec["agent_text"] = [{"t": 3.0, "text": "你好世界"}, {"t": 3.1, "text": " こんにちは"}, {"t": 3.2, "text": " 🎉\x1b[31m"}]
    rec.update(transcripts=[{"t": 2.0, "text": "什么是 🎉", "final": True}], oracle=[])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_timeline(tmp_path / "t.png", np.zeros_like(agent), agent, rec, "cascade 你好")
        warnings.warn("another warning", UserWarning)
    assert [str(w.message) for w in caught] == ["another warning"]
    assert (tmp_path / "t.png").stat().st_size > 0


def test_a_long_track_is_drawn_as_each_pixel_column_s_min_and_max():
    """(was: every sample handed to matplotlib: a 10-minute `kame run` took ~1.2 GB more to draw
    its PNG; now 2 points per pixel column, whatever the length)"""
    import matplotlib.pyplot as plt

    from kame.runtime.timeline import DPI, timeline_figure

    rec, agent = _long_tandem(3, 180.0)
    rng = np.random.default_rng(0)
    user = rng.uniform(-0.1, 0.1, agent.shape[0]).astype(np.float32)
    user[1_000_003], user[3_000_001] = 0.9, -0.8  # (one sample each: kept by their columns)
    agent[2_000_000:2_000_500] = 0.5
    fig = timeline_figure(user, agent, rec, "tandem")
    try:
        columns = int(fig.get_figwidth() * DPI)
        for panel, track in ((fig.axes[0], user), (fig.axes[3], agent)):
            (line,) = panel.lines
            x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
            assert len(x) <= 2 * columns < track.shape[0] // 100
            assert y.max() == track.max() and y.min() == track.min()
            assert x[0] == 0 and x[-1] == (track.shape[0] - 1) / SR and np.all(np.diff(x) >= 0)
    finally:
        plt.close(fig)


def test_the_envelope_keeps_each_column_s_min_and_max_and_a_short_track_as_it_is():
    from kame.runtime.timeline import envelope

    track = np.random.default_rng(1).normal(size=1000).astype(np.float32)
    t, y = envelope(track, 100)  # (10 samples a column)
    cols = track.reshape(100, 10)
    assert np.array_equal(y[0::2], cols.min(1)) and np.array_equal(y[1::2], cols.max(1))
    assert np.array_equal(t[0::2], np.arange(0, 1000, 10) / SR) and np.array_equal(t[1::2], np.arange(9, 1000, 10) / SR)
    t, y = envelope(track[:995], 100)  # (the last column shorter)
    assert len(y) == 200 and y[-2:].tolist() == [track[990:995].min(), track[990:995].max()]
    t, y = envelope(track[:200], 100)  # (2 samples a column or fewer: every sample, as before)
    assert np.array_equal(y, track[:200]) and np.array_equal(t, np.arange(200) / SR)


def test_the_audible_samples_are_found_piece_by_piece_as_over_the_whole_track(monkeypatch):
    from kame.runtime import timeline

    monkeypatch.setattr(timeline, "_SCAN", 7)  # (pieces of 7 samples: the edges are crossed)
    agent = np.zeros(60, np.float32)
    agent[[3, 6, 7, 20, 41, 48, 49]] = 0.5
    loud = np.flatnonzero(np.abs(agent) > 0.01) / SR  # (what the plot took from the whole track at once)
    for start, stop in [(0, np.inf), (4 / SR, 41 / SR), (7 / SR, 7.5 / SR), (8 / SR, 20 / SR), (21 / SR, 40 / SR),
                        (49 / SR, np.inf), (50 / SR, np.inf), (-1.0, 3 / SR), (-np.inf, np.inf), (20 / SR, 20 / SR),
                        (np.nan, np.inf)]:
        want = loud[(loud >= start) & (loud < stop)]
        assert timeline._audible(agent, start, stop) == (want[0] if want.size else None), (start, stop)
        assert timeline._audible(agent, start, stop, last=True) == (want[-1] if want.size else None), (start, stop)
