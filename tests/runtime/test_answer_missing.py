"""A tandem's ``answer_missing`` (kame.runtime.runreport): the oracle's answer to the user's last
words must come from a prediction started once the STT had sent them; a turn hybrid routing
answered, heard, is answered (docs/cascade.md: a routed final is no oracle's), and the warning
quotes the oracle's LLM first token, not the routed reply's. And the printed oracle and agent
lines, when shortened, say so. The records are small copies of real `kame run` records."""

from __future__ import annotations

from kame.runtime.filemode import print_summary
from kame.runtime.runreport import answer_missing
from kame.runtime.runreport import shortened


def _tr(t: float, text: str, words, final: bool = False) -> dict:
    return {"type": "transcript", "final": final, "text": text, "t": t,
            "words": [{"word": w, "start": a, "end": b} for w, a, b in words]}


def _restart(t: float, pid: int, reason: str = "final") -> dict:
    return {"type": "metric", "name": "oracle_restart", "value": 1.0, "t": t,
            "labels": {"reason": reason, "prediction_id": pid}}


def _yes_no() -> dict:
    """"Yes." (0.32-0.74), "No." (3.04-3.38): the final of "Yes." came at 3.12 and restarted
    prediction 1, which streamed at 4.72-6.56, after "No." ended but started before the STT sent
    it (partial at 3.84); the prediction for "No." (final at 7.2) streamed nothing before the end."""
    return {"components": {"mode": "tandem", "stt": "embedded", "llm": "embedded"},
            "transcripts": [_tr(0.96, "yes", [("yes", 0.54, 0.85)]), _tr(3.12, "Yes.", [("Yes.", 0.32, 0.74)], True),
                            _tr(3.84, "no", [("no", 3.21, 3.41)]), _tr(7.2, "No.", [("No.", 3.04, 3.38)], True)],
            "metrics": [{"name": "stt_final_latency", "value": 2.06, "t": 3.12}, _restart(3.12, 1),
                        {"name": "llm_ttft", "value": 0.88, "t": 4.0, "labels": {"prediction_id": 1}},
                        {"name": "stt_final_latency", "value": 3.65, "t": 7.2}, _restart(7.2, 2)],
            "oracle": [{"event": "reset", "prediction_id": 1, "t": 4.72}]
            + [{"event": "append", "prediction_id": 1, "text": x, "t": t}
               for x, t in ((" I'm", 4.72), (" glad", 4.88), (" to", 4.96), (" hear", 5.6), (" that", 6.56))],
            "other": []}


def test_a_prediction_started_before_the_last_words_were_transcribed_does_not_answer_them():
    # (was: None, as prediction 1's text came after the last word's end)
    rec = _yes_no()
    assert answer_missing(rec) == {"last_word_end": 3.38, "stt_final_latency": 3.65, "llm_ttft": 0.88,
                                  "llm_empty": 0}
    # prediction 2 streams before the end: answered
    rec["oracle"] += [{"event": "reset", "prediction_id": 2, "t": 7.3},
                      {"event": "append", "prediction_id": 2, "text": " Okay", "t": 7.3}]
    assert answer_missing(rec) is None
    # one restarted from the partial that holds the last word answers it too
    rec = _yes_no()
    rec["metrics"].append(_restart(3.84, 2, "words"))
    rec["oracle"] += [{"event": "append", "prediction_id": 2, "text": " No?", "t": 4.6}]
    assert answer_missing(rec) is None


def _routed(agent_text: str | None = "The answer is 14.") -> dict:
    """"What is 12 times 13?" (last word 1.70-1.96; partials from 0.72, final at 4.32) routed by
    hybrid routing (its reply's LLM first token 3.12 s); the oracle's one streaming prediction (its
    LLM first token 0.32 s) answered the first words only, those after it streamed nothing."""
    other = [{"type": "route", "turn": 1, "route": "structured", "rules": ["arithmetic: expression"], "t": 4.32}]
    if agent_text is not None:
        other.append({"type": "agent_turn", "text": agent_text, "reply": "The answer is 14.", "interrupted": False,
                      "failed": False, "turn": 1, "route": "structured", "t": 10.16})
    hybrid = {"mode": "hybrid", "turn": 1, "route": "structured"}
    return {"components": {"mode": "tandem", "stt": "embedded", "llm": "embedded", "hybrid_routing": True},
            "transcripts": [_tr(0.88, "what is", [("what", 0.54, 0.68), ("is", 0.68, 0.77)]),
                            _tr(2.08, "what is twelve times thirty", [("what", 0.54, 0.68), ("is", 0.68, 0.8),
                                ("twelve", 0.8, 1.17), ("times", 1.17, 1.62), ("thirty", 1.62, 1.97)]),
                            _tr(4.32, "What is 12 times 13?", [("What", 0.32, 0.74), ("is", 0.74, 0.9),
                                ("12", 0.9, 1.24), ("times", 1.24, 1.7), ("13?", 1.7, 1.96)], True)],
            "metrics": [_restart(0.88, 1, "words"), {"name": "llm_ttft", "value": 0.32, "t": 1.2,
                                                     "labels": {"prediction_id": 1}},
                        _restart(2.08, 2, "words"), {"name": "stt_final_latency", "value": 2.18, "t": 4.32},
                        {"name": "llm_ttft", "value": 3.12, "t": 7.44, "labels": hybrid}],
            "oracle": [{"event": "reset", "prediction_id": 1, "t": 1.28},
                       {"event": "append", "prediction_id": 1, "text": " I'm", "t": 1.28},
                       {"event": "append", "prediction_id": 1, "text": " here", "t": 1.36}],
            "other": other}


def test_a_turn_hybrid_routing_answered_and_was_heard_is_answered():
    # (was: "the back-end's answer ... had not reached the front-end's oracle", quoting the routed reply's
    # LLM first token, though the routed reply had just been heard)
    assert answer_missing(_routed()) is None
    assert answer_missing(_routed(agent_text=None)) is None  # under way at the end: reply_cut_off says so
    # nothing of it heard (cut before its first word): the oracle owes the answer; the LLM quoted is the oracle's
    miss = answer_missing(_routed(agent_text=""))
    assert miss == {"last_word_end": 1.96, "stt_final_latency": 2.18, "llm_ttft": 0.32, "llm_empty": 0}
    # a routed turn before the last words answers not them
    rec = _routed()
    rec["transcripts"].append(_tr(12.0, "Thanks.", [("Thanks.", 11.0, 11.4)], True))
    assert answer_missing(rec)["last_word_end"] == 11.4


def _summary(**kw) -> dict:
    s = {"mode": "tandem", "frontend": "kame:tiny", "frontend_random": False, "codec": "mimi", "stt": "embedded",
         "llm": "embedded", "heard": "hi", "oracle_text": "", "agent_text": "", "first_response_latency_s": [],
         "oracle_lag_s": [], "step_time_p50_s": 0.03, "step_time_p99_s": 0.05, "missed_deadlines": 0,
         "frames": 146, "wall_s": 11.7, "load_s": 1.0, "slowdown": 1.0, "errors": 0}
    s.update(kw)
    return s


def test_shortened_oracle_and_agent_lines_say_what_they_leave_out(tmp_path, capsys):
    # (was: both cut at 200 characters, mid-word, with no sign of it: 3 of 7 predictions shown as all)
    preds = [" the cap that i", " The capital of France is", " The capital of France is Paris. I'm sorry for any"
             " confusion earlier. You can find it on your map here: https://example.org/maps/france/paris", " Paris.",
             " It is in the north of France.", " Yes.", " The Seine runs through it."]
    oracle = " | ".join(preds)
    agent = " ".join(f"word{i:02d}" for i in range(40))  # 279 characters: 28 words shown (195)
    print_summary(_summary(oracle_text=oracle, agent_text=agent, mode="cascade", frontend=None,
                           agent_unspoken_words={"interrupted": 8}), tmp_path / "out.wav", True)
    print_summary(_summary(oracle_text=oracle, agent_text="short"), tmp_path / "out.wav", True)
    lines = capsys.readouterr().out.splitlines()
    agent_line = next(x for x in lines if x.startswith("agent"))
    assert agent_line.endswith("word27'... (+12 words not shown: summary.agent_text in out.json)  "
                               "(+8 words not spoken: the user barged in)")
    oracle_line = next(x for x in lines if x.startswith("oracle"))
    assert oracle_line.endswith(' |  Paris."... (+3 predictions, +13 words not shown: summary.oracle_text in out.json)')
    assert "agent     'short'" in lines  # (whole: as it was)
    assert shortened("x" * 200, "W") == repr("x" * 200)
    assert shortened("a | " + "b" * 300, "W") == "'a'... (+1 prediction, +1 word not shown: W)"
    assert shortened("a | " + "b " * 150, "W").endswith(" b'... (+52 words not shown: W)")  # cut in a prediction
