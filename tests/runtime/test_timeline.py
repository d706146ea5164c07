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
