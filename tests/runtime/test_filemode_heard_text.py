"""The `agent` line of a cascade's `kame run` summary is what was heard (docs/cascade.md: the
"agent_turn" text), and says how many words of a reply were not spoken; the tandem's is its text."""

from __future__ import annotations

from kame.runtime.filemode import print_summary, summarize

REPLY = "Paris is the capital. It is in France. It is big."


def _rec(mode: str, **kw) -> dict:
    rec = {"agent_text": [{"t": 1.0, "text": "Paris is the capital. "}, {"t": 1.1, "text": "It is in France. "},
                          {"t": 1.2, "text": "It is big. "}],
           "other": [{"type": "turn", "turn": 1, "t": 0.9},
                     {"type": "agent_turn", "turn": 1, "text": "Paris is the capital.", "reply": REPLY,
                      "failed": True, "interrupted": False, "t": 2.0}],
           "components": {"mode": mode}, "transcripts": [{"final": True, "text": "capital?", "t": 0.5, "words": []}],
           "oracle": [], "metrics": [], "frames": 40, "late_frames": 0, "wall_s": 3.2, "slowdown": 1.0,
           "load_s": 0.0, "errors": [{"t": 1.5, "message": "tts failtts failed during the reply to turn 1"}]}
    rec.update(kw)
    return rec


def test_a_cascade_whose_tts_failed_shows_the_text_heard_and_the_words_not_spoken(tmp_path, capsys):
    """(was: agent 'Paris is the capital. It is in France. It is big.', two sentences never spoken)"""
    s = summarize(_rec("cascade"))
    assert s["agent_text"] == "Paris is the capital." and s["agent_unspoken_words"] == {"failed": 7, "interrupted": 0}
    print_summary(s, tmp_path / "out.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("agent "))
    assert line == "agent     'Paris is the capital.'  (+7 words not spoken: the reply's LLM or TTS failed)"


def test_a_cascade_reply_under_way_at_the_end_shows_what_streamed_marked_as_under_way(tmp_path, capsys):
    """(was: the streamed LLM text printed as if heard, with no word that its audio may lag it)"""
    s = summarize(_rec("cascade", other=[{"type": "turn", "turn": 1, "t": 0.9}]))  # (no agent_turn yet)
    assert s["agent_text"] == REPLY and s["agent_unspoken_words"] == {"failed": 0, "interrupted": 0}
    assert s["agent_reply_under_way"] is True
    print_summary(s, tmp_path / "out.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("agent "))
    assert line == (f"agent     {REPLY!r}  (reply under way at the end: its text as far as the LLM streamed it, "
                    "which can be ahead of what was spoken)")


def test_an_ended_reply_is_not_marked_under_way(tmp_path, capsys):
    s = summarize(_rec("cascade"))  # (its agent_turn came; a later turn with no text streamed is no reply yet)
    assert s["agent_reply_under_way"] is False
    s = summarize(_rec("cascade", other=_rec("cascade")["other"] + [{"type": "turn", "turn": 2, "t": 2.5}]))
    assert s["agent_reply_under_way"] is False and s["agent_text"] == "Paris is the capital."
    print_summary(s, tmp_path / "out.wav", True)
    assert "under way" not in capsys.readouterr().out


def test_the_tandem_agent_line_is_its_text(tmp_path, capsys):
    s = summarize(_rec("tandem", components={"mode": "tandem", "frontend": "x"}))
    assert s["agent_text"] == REPLY and s["agent_reply_under_way"] is False
    print_summary(s, tmp_path / "out.wav", True)
    out = capsys.readouterr().out
    assert "not spoken" not in out and "under way" not in out
