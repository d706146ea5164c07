"""The rules `kame run`'s summary, its timeline plot (kame.runtime.timeline) and `kame client`
share (kame.runtime.runreport): which reply a routed turn's text pieces spell, the words of a
reply not heard, which speech a final transcript ends, when the STT sent the user's last word,
and a routed reply's end of speech. The records are small copies of real `kame run` records."""

from __future__ import annotations

import numpy as np

from kame.runtime import runreport
from kame.runtime.filemode import summarize
from kame.runtime.runreport import answer_missing, final_missing, late_final, transcribed_at
from kame.runtime.timeline import agent_word_positions, first_response_times

SR = 24000


def _words(rec: dict, agent: np.ndarray) -> list[tuple[float, str]]:
    return [(round(float(t), 2), w) for t, _, w in agent_word_positions(rec, agent)]


def _routed(text: str, reply: str, interrupted: bool, t_done: float, pieces) -> tuple[dict, np.ndarray]:
    """A turn hybrid routing answered: routed at 3.0 s, its LLM streamed ``pieces`` from 3.5 s,
    its audio heard from 6.0 s (first_response_latency 3.5 s after the speech's end at 2.5 s)."""
    agent = np.zeros(12 * SR, np.float32)
    agent[int(0.3 * SR):int(2 * SR)] = 0.3  # (the front-end's)
    agent[int(6 * SR):int(7 * SR)] = 0.3
    hybrid = {"mode": "hybrid", "turn": 1}
    rec = {"vad": [{"event": "end", "t": 2.5}],
           "other": [{"type": "route", "turn": 1, "route": "structured", "t": 3.0},
                     {"type": "agent_turn", "turn": 1, "text": text, "reply": reply, "interrupted": interrupted,
                      "failed": False, "t": t_done}],
           "metrics": [{"name": "llm_ttft", "value": 0.5, "t": 3.5, "labels": hybrid},
                       {"name": "first_response_latency", "value": 3.5, "t": 6.0, "labels": hybrid}],
           "agent_text": [{"t": 1.0, "text": " hello"}]
           + [{"t": 3.5 + 0.08 * i, "text": p} for i, p in enumerate(pieces)]}
    return rec, agent


def test_a_front_end_word_sent_in_the_route_s_step_keeps_its_place_and_the_reply_its_words():
    # (was: the front-end's " The" taken as the reply's first word, the reply's own pieces drawn as the
    # front-end's at 3.5-3.74 s, over silence, and the front-end's "The" at 3.0 s gone)
    rec, agent = _routed("The answer is 14.", "The answer is 14.", False, 7.04, [" The", " answer", " is", " 14", "."])
    rec["agent_text"].insert(1, {"t": 3.0, "text": " The"})
    words = _words(rec, agent)
    assert words[:2] == [(1.0, "hello"), (3.0, "The")]
    assert [w for _, w in words[2:]] == ["The", "answer", "is", "14."] and words[2][0] == 6.0


def test_a_front_end_word_that_spells_all_of_a_one_piece_reply_stays_the_front_ends():
    # (was: a tie, the first run kept: the front-end's " Yes" at 3.0 s taken as the reply, the reply's
    # own "Yes" drawn as the front-end's at 3.5 s)
    rec, agent = _routed("Yes", "Yes", False, 7.04, ["Yes"])
    rec["agent_text"].insert(1, {"t": 3.0, "text": " Yes"})
    assert _words(rec, agent) == [(1.0, "hello"), (3.0, "Yes"), (6.0, "Yes")]
    rec, agent = _routed("Yes", "Yes", False, 7.04, ["Yes"])  # (one sent in the step of the cut: not the later run)
    rec["agent_text"].append({"t": 7.04, "text": " Yes"})
    assert _words(rec, agent) == [(1.0, "hello"), (6.0, "Yes"), (7.04, "Yes")]


def test_a_routed_reply_cut_before_its_first_word_leaves_its_words_not_heard_at_the_cut():
    # (was: no trace of it: only the front-end's "hello" drawn)
    rec, agent = _routed("", "The answer is 14.", True, 6.08, [" The", " answer", " is", " 14", "."])
    assert _words(rec, agent) == [(1.0, "hello"), (6.08, "(+4 not heard)")]


def test_words_not_heard_are_those_a_tts_would_have_spoken():
    # (was: "(+4 not heard)" and 4 words not spoken: the URL counted, which the splitter never sends to the TTS)
    agent = np.zeros(12 * SR, np.float32)
    agent[int(6 * SR):int(7 * SR)] = 0.3
    reply = "**Paris** is the capital. See https://x.org for more."
    rec = {"components": {"mode": "cascade"}, "transcripts": [], "oracle": [], "frames": 150, "late_frames": 0,
           "wall_s": 1.0, "slowdown": 1.0, "load_s": 0.0, "errors": [], "vad": [{"event": "end", "t": 2.5}],
           "other": [{"type": "turn", "turn": 1, "t": 3.0, "t_user_end": 2.5},
                     {"type": "agent_turn", "turn": 1, "text": "Paris is the capital.", "reply": reply,
                      "interrupted": True, "t": 7.0}],
           "metrics": [{"name": "first_response_latency", "value": 3.5, "t": 6.0, "labels": {"turn": 1}}],
           "agent_text": [{"t": 3.5, "text": reply}]}
    assert _words(rec, agent)[-1] == (7.0, "(+3 not heard)")  # "See for more."
    assert summarize(rec)["agent_unspoken_words"] == {"failed": 0, "interrupted": 3}


def test_a_routed_turn_is_a_reply_by_one_rule_everywhere():
    # (was: three rules; the timeline's asked for the reply's metrics too, and drew the pieces of a reply
    # under way before any, as the front-end's at the time they streamed)
    rec, agent = _routed("", "", False, 0.0, [" Four", "."])
    rec["other"], rec["metrics"] = rec["other"][:1], []
    assert runreport.open_turns(rec["other"]) == {1}
    assert _words(rec, agent) == [(1.0, "hello"), (6.0, "Four.")]


def test_a_barge_in_that_cut_the_routed_reply_before_its_first_word_owes_no_answer():
    # (was: "had not reached the front-end's oracle ...; give a longer --tail": the oracle waits for the
    # user's next final, docs/cascade.md; the barge-in's noise gave none)
    words = [{"word": "What", "start": 0.3, "end": 0.7}, {"word": "13?", "start": 1.7, "end": 1.96}]
    rec = {"components": {"mode": "tandem", "stt": "embedded", "llm": "embedded", "hybrid_routing": True},
           "transcripts": [{"t": 4.32, "final": True, "text": "What 13?", "words": words}],
           "metrics": [], "oracle": [], "errors": [],
           "other": [{"type": "route", "turn": 1, "route": "structured", "t": 4.32},
                     {"type": "agent_turn", "turn": 1, "text": "", "reply": "The answer is 14.", "interrupted": True,
                      "failed": False, "t": 8.0}]}
    assert answer_missing(rec) is None
    rec["other"][1].update(interrupted=False, failed=True)  # its TTS failed at once: the oracle owes it
    assert answer_missing(rec)["last_word_end"] == 1.96


def _late(mode: str) -> dict:
    """"Hello there." (0.3-1.4 s) then "Okay." (3.0-3.9 s); the STT's final of the first came at
    4.6 s, after the second had ended, and none came for the second."""
    return {"components": {"mode": mode, "stt": "embedded"},
            "vad": [{"event": "start", "t": 0.2}, {"event": "end", "t": 1.5},
                    {"event": "start", "t": 2.9}, {"event": "end", "t": 4.0}],
            "transcripts": [{"t": 3.6, "final": False, "text": "okay", "words": [
                                {"word": "okay", "start": 3.0, "end": 3.5}]},
                            {"t": 4.6, "final": True, "text": "Hello there.", "words": [
                                {"word": "Hello", "start": 0.3, "end": 0.8},
                                {"word": "there.", "start": 0.8, "end": 1.4}]}],
            "other": []}


def test_a_late_final_belongs_to_the_speech_its_words_are_in():
    # (was: the last VAD end before the final, 4.0 s: the next utterance's; and that final, sent after
    # it, taken for that utterance's, so its missing final went unsaid)
    assert late_final(_late("cascade")) == {"speech_end": 1.5, "latency": 4.6 - 1.5}
    assert final_missing(_late("tandem")) == {"speech_end": 4.0, "partial": "okay"}
    rec = _late("tandem")
    rec["transcripts"].append({"t": 5.0, "final": True, "text": "Okay.", "words": [
        {"word": "Okay.", "start": 3.0, "end": 3.6}]})
    assert final_missing(rec) is None


def test_the_word_before_the_last_ending_a_few_ms_into_it_is_not_the_last_word():
    # (was: "times" ending 10 ms after "13?" began counted as it: the STT "had sent" the last word 0.3 s
    # early); a partial's first try at it ("boy" for "please.", 0.05 s into it) still counts
    last = {"word": "13?", "start": 1.699, "end": 1.959}
    rec = {"transcripts": [{"t": 1.7, "final": False, "words": [{"word": "times", "start": 1.2, "end": 1.709}]},
                           {"t": 2.0, "final": False, "words": [{"word": "thirty", "start": 1.62, "end": 1.97}]}]}
    assert transcribed_at(rec, last) == 2.0
    rec = {"transcripts": [{"t": 10.88, "final": False, "words": [{"word": "boy", "start": 10.399, "end": 10.609}]}]}
    assert transcribed_at(rec, {"word": "please.", "start": 10.559, "end": 10.779}) == 10.88


def test_a_routed_reply_s_first_response_is_at_its_own_end_of_speech():
    # (was: the latest VAD end up to its t_user_end, an earlier utterance's at 1.5 s while the VAD had
    # not yet ended the routed question's speech: its marker drawn at 2.6 s)
    rec = {"vad": [{"event": "end", "t": 1.5}, {"event": "start", "t": 3.0}, {"event": "end", "t": 5.3}],
           "other": [{"type": "route", "turn": 2, "route": "structured", "t_user_end": 4.9, "t": 5.0}],
           "metrics": [{"name": "first_response_latency", "value": 1.1, "t": 6.0,
                        "labels": {"mode": "hybrid", "turn": 2}}]}
    assert first_response_times(rec) == [4.9 + 1.1]


def _unanswered_warnings(rec: dict, capsys, **kw) -> str:
    """print_warnings for an unanswered cascade run ``rec`` (59 frames: 4.72 s), its fields as kame run sets them."""
    from pathlib import Path

    from kame.runtime.filemode import reply_outcomes
    from kame.runtime.runreport import print_warnings, speech_open

    from .test_answer_missing import _summary

    s = _summary(mode="cascade", frontend=None, frames=59, unanswered=True, late_final=late_final(rec),
                 speech_open=speech_open(rec), replies=reply_outcomes(rec), **kw)
    print_warnings(s, Path("edge.wav"))
    return capsys.readouterr().out


def test_speech_the_vad_never_ended_is_said_so_not_a_slow_stt(capsys):
    # kame run q.wav --mode cascade --set cascade.end_of_turn_silence=4 (--tail 3): the speech never
    # ended by the VAD, the STT's final flushed as the session closed (was: "the STT's final ... came 3.30 s
    # after it ...; the STT is slow on this machine: give a longer --tail, or see backend.nice")
    rec = {"components": {"mode": "cascade", "stt": "embedded"}, "vad": [{"event": "start", "t": 0.064}],
           "transcripts": [{"t": 1.2, "final": False, "text": "what is the capital", "words": []},
                           {"t": 4.8, "final": True, "text": "What is the capital of France?",
                            "words": [{"word": "France?", "start": 1.1, "end": 1.5}]}],
           "other": [], "agent_text": []}
    said = _unanswered_warnings(rec, capsys)
    assert ("warning   the user's speech from 0.06 s had not ended by the VAD when edge.wav ended at 4.72 s (it "
            "had heard 'What is the capital of France?'), so the cascade took no turn for it and did not answer; a "
            "turn ends after cascade.end_of_turn_silence of silence") in said
    assert "cascade.vad_threshold" in said and "is slow" not in said and "did not answer in" not in said
    assert "had not ended" not in _unanswered_warnings(rec, capsys, interrupted=True)  # (a Ctrl-C cut it)
    rec["vad"].append({"event": "end", "t": 1.6})  # it ended: the late final's warning, as before
    assert "the STT is slow" in _unanswered_warnings(rec, capsys)
    assert runreport.speech_open({**rec, "components": {"mode": "tandem"}}) is None


def test_speech_whose_words_a_turn_took_is_not_said_to_have_had_no_turn():
    """(was: a final that started a turn while the VAD still heard speech, the STT's max_utterance
    cut, then an answer: 'so the cascade took no turn for it')"""
    rec = {"components": {"mode": "cascade", "stt": "embedded"}, "vad": [{"event": "start", "t": 1.0}],
           "transcripts": [{"t": 1.5, "final": False, "text": "hello", "words": []},
                           {"t": 2.0, "final": True, "text": "hello there", "words": []}],
           "other": [{"type": "turn", "turn": 1, "t": 2.0},
                     {"type": "agent_turn", "turn": 1, "t": 4.0, "text": "Hi! How can I help?"}]}
    assert runreport.speech_open(rec) is None
    rec["transcripts"].append({"t": 5.0, "final": False, "text": "and then", "words": []})  # words after it: open
    assert runreport.speech_open(rec) == {"start": 1.0, "heard": "and then"}


def test_an_unanswered_turn_a_barge_in_cut_says_so_not_a_longer_max_tail(capsys):
    # kame run q.wav --mode cascade --set cascade.barge_in_min_speech=0 (before that fix: every reply cut
    # on its first frame; the warning said "give a longer --max-tail")
    rec = {"components": {"mode": "cascade", "stt": "embedded"},
           "vad": [{"event": "start", "t": 0.064}, {"event": "end", "t": 1.6}],
           "transcripts": [{"t": 2.1, "final": True, "text": "What is the capital of France?", "words": []}],
           "other": [{"type": "turn", "turn": 1, "t_user_end": 1.6, "t": 4.08},
                     {"type": "agent_turn", "text": "", "t": 4.08, "turn": 1, "interrupted": True, "failed": False,
                      "reply": ""},
                     {"type": "barge_in", "turn": 1, "t": 4.16, "heard": ""}], "agent_text": []}
    said = _unanswered_warnings(rec, capsys)
    assert ("warning   the cascade heard the user but did not answer in edge.wav; a barge-in cut its reply before "
            "the first word: the VAD heard the user's voice over it (cascade.barge_in_min_speech; see 'barge_in' "
            "in edge.json)") in said
    assert "--max-tail" not in said
