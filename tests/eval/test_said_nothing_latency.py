"""A turn the agent said nothing in (said_nothing, rated 1) counts as "never" in kame eval
mtbench's median latencies and printed latencies (was: the sound its record measured: a cascade
reply to a final at a pause inside the question, cut off before its first word and still sounding
at the question's end, gave it latency_s 0.00, which pulled the category's median down)."""

from __future__ import annotations

import numpy as np

from kame.eval.mtbench import Question, grade, turn_records
from kame.eval.summary import secs, table

SR = 24000


def test_a_reply_cut_off_inside_the_question_gives_a_said_nothing_turn_latency_0(tmp_path):
    """How it happens: the agent's sound from 1.3 s to 1.6 s (a reply to a final at 1.0 s, inside
    the question, that the rest of the question cut before its first word was heard); the question
    ends at 1.5 s: sound at once, latency_s 0.0, and no answer."""
    doc = {"components": {"mode": "cascade"}, "summary": {},
           "other_meta": [{"type": "turn", "turn": 1, "t_user_end": 1.0, "t": 1.1},
                          {"type": "agent_turn", "turn": 1, "text": "", "reply": "Cats are small mammals.",
                           "interrupted": True, "t": 1.6}]}
    agent = np.zeros(SR * 4, np.float32)
    agent[int(1.3 * SR):int(1.6 * SR)] = 0.3
    ut = type("UT", (), {"start": 0.5, "end": 1.5, "window_end": 4.0, "text": "What is a cat?"})()
    (rec,) = turn_records(Question("131", "stem", ["What is a cat?"], None, "q:1"), doc, [ut], agent, 0.01,
                          "cascade", {})
    assert rec["answer"] == "" and rec["latency_s"] == 0.0
    grade(None, None, [rec], 1.0, "judge")  # (the judge is not asked)
    assert rec["said_nothing"] and rec["rating"] == 1.0
    assert secs([rec], "latency_s") == "never"


def test_said_nothing_turns_count_as_never_in_the_median():
    recs = [{"category": "stem", "rating": 8.0, "latency_s": 1.0, "answer": "A cat is a mammal."},
            {"category": "stem", "rating": 7.0, "latency_s": 2.0, "answer": "A dog is one too."},
            {"category": "stem", "rating": 1.0, "latency_s": 0.0, "answer": "", "said_nothing": True,
             "content_latency_s": 0.0}]
    lines = table(recs, ("stem",), content=True).splitlines()
    # (nearest rank of [1.0, 2.0, never]: 2.00; was 1.00, of [0.0, 1.0, 2.0])
    assert lines[2] == "| stem | 3 | 5.33 | 2.00 | never | 0 |"
    assert secs(recs, "latency_s") == "1.00 s, 2.00 s, never"


def test_under_answer_heard_a_turn_with_a_text_answer_keeps_its_latency():
    """--answer heard: said_nothing means whisper heard no words; the agent made sound and had a text
    answer, so its latency is its sound's, as under --answer text (was: never, a median that
    changed with --answer)."""
    heard = {"category": "stem", "rating": 1.0, "latency_s": 0.4, "answer": "", "said_nothing": True,
             "judged": "heard", "text_answer": "A cat is a small mammal.", "content_latency_s": None}
    assert table([heard], ("stem",), content=True).splitlines()[2] == "| stem | 1 | 1.00 | 0.40 | never | 0 |"
    assert secs([heard], "latency_s") == "0.40 s"
    # no text answer either: never
    assert secs([{**heard, "text_answer": ""}], "latency_s") == "never"
    # an older record of silence the judge rated (no said_nothing): no answer, never, as a new one
    assert secs([{"rating": 9.0, "latency_s": 0.0, "answer": ""}], "latency_s") == "never"


def test_the_notes_say_the_said_nothing_turns_count_as_never():
    """results.md says why its medians are not results.jsonl's latency_s (was: nothing said, so a
    plain rerun of a folder made before the rule changed its medians silently)."""
    import argparse

    from kame.eval.summary import notes

    args = argparse.Namespace(turns=1, mode="cascade", judge="j", asr=True, answer="heard", fast=False, rejudge=False)
    qs = [argparse.Namespace(id=i, category="stem") for i in ("131", "132")]
    recs = [{"question_id": "131", "category": "stem", "turn": 1, "answer": "", "rating": 1.0, "said_nothing": True,
             "text_answer": "", "latency_s": 0.0},
            {"question_id": "132", "category": "stem", "turn": 1, "answer": "", "rating": 1.0, "said_nothing": True,
             "text_answer": "A cat.", "latency_s": 0.5}]

    def said(recs, answer):
        return notes(argparse.Namespace(**{**vars(args), "answer": answer}), qs, recs, {"131", "132"}, ref_file=None,
                     failed=[], judge_failed=[], todo=qs, stored=set(), not_run=[], out="out")

    lines = said(recs, "heard")
    i = lines.index("2 turn(s) whisper heard no words of the agent in (--answer heard), rated 1 without asking the "
                    "judge: 131, 132")
    assert lines[i + 1] == ("the latencies of 1 of them (no text answer either) count as never in the table: they "
                            "gave no answer (results.jsonl's latency_s keeps the sound measured)")
    lines = said(recs[:1], "text")
    i = lines.index("1 turn(s) the agent said nothing in, rated 1 without asking the judge: 131")
    assert lines[i + 1].startswith("the latencies of these turns count as never in the table")
    assert not any("count as never" in x for x in said(recs[1:], "heard"))


def test_the_notes_do_not_blame_a_turn_with_a_text_answer_but_no_sound():
    """--answer heard, a turn with a text answer whose sound was never made (latency_s None): not
    counted as "no text answer either" (was: counted, its None latency taken for no answer)."""
    import argparse

    from kame.eval.summary import notes

    args = argparse.Namespace(turns=1, mode="cascade", judge="j", asr=True, answer="heard", fast=False, rejudge=False)
    qs = [argparse.Namespace(id="131", category="stem")]
    recs = [{"question_id": "131", "category": "stem", "turn": 1, "answer": "", "rating": 1.0, "said_nothing": True,
             "text_answer": "A cat.", "latency_s": None}]
    lines = notes(args, qs, recs, {"131"}, ref_file=None, failed=[], judge_failed=[], todo=qs, stored=set(),
                  not_run=[], out="out")
    assert "1 turn(s) whisper heard no words of the agent in (--answer heard), rated 1 without asking the judge: 131" \
        in lines
    assert not any("count as never" in x for x in lines), lines
