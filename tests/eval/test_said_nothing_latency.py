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
