"""kame eval mtbench, found by a QA sweep: a --rejudge of some questions then a plain resume, an
edited question file, question ids that are no ids, a turn the agent said nothing in (and
--fast with the cascade), the summary's count of questions run but not rated, the "failed in a
row" stop naming what was saved, a pairwise folder given as -o (scripted judges, fake agent)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from kame.cli import main
from kame.errors import ConfigError, KameError

from . import test_mtbench
from .test_mtbench import QUESTIONS, Judges, eval_, read_questions, refused, write

judges = test_mtbench.judges  # (test_mtbench's scripted judges and agent counter: fixtures, used by name)
agent_runs = test_mtbench.agent_runs


def test_a_rejudge_of_some_questions_then_a_plain_resume_of_those(tmp_path, capsys, fake_components, judges):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[0], QUESTIONS[2]])  # 81 writing, 131 stem
    out = tmp_path / "out"
    assert eval_(qf, out, "--categories", "all") == 0
    assert eval_(qf, out, "--rejudge", judge="test_judge2") == 0  # (default categories: 131 alone)
    # 81 keeps test_judge's rating, but it is not selected: a plain resume of 131 (was: refused for good)
    assert eval_(qf, out, judge="test_judge2") == 0
    # with 81 selected: refused, naming it
    err = refused(capsys, qf, out, "--categories", "all", judge="test_judge2")
    assert "has ratings of the judge test_judge for question_id 81; give --rejudge" in err


def test_an_edited_question_file_is_refused(tmp_path, capsys, fake_components, judges, agent_runs):
    q131 = QUESTIONS[2]
    qf = write(tmp_path / "question.jsonl", [q131])
    out = tmp_path / "out"
    # the judge fails after its probe: run, saved, not rated; the summary says so (was: "0 run")
    assert eval_(qf, out, judge="test_flaky_judge") == 1
    printed = capsys.readouterr().out
    assert "1 question(s): 1 run, 0 rated, 0 unparsed, 1 not rated yet (131: a rerun rates them)" in printed
    assert "the judge failed on 131, run but not rated" in printed
    write(tmp_path / "question.jsonl", [{**q131, "turns": ["What is a dog?"]}])
    err = refused(capsys, qf, out)  # (the saved run is of the old question)
    assert "holds answers to other questions than" in err and "131 turn 1 ('What is a cat?' there, " \
        "'What is a dog?' now): the question file was edited" in err
    write(tmp_path / "question.jsonl", [q131])
    assert eval_(qf, out) == 0  # rated now
    write(tmp_path / "question.jsonl", [{**q131, "category": "humanities"}])
    assert "131 (category stem there, humanities now)" in refused(capsys, qf, out, "--categories", "humanities")
    write(tmp_path / "question.jsonl", [{**q131, "turns": ["What is a cat? Say it in one word, please, thanks."]}])
    err = refused(capsys, qf, out, "--rejudge", judge="test_judge2")  # (another judge would rate the wrong question)
    assert "131 turn 1 ('What is a cat?' there, 'What is a cat? Say it in one word" in err
    assert agent_runs["main"] == 1


@pytest.mark.parametrize("qid", [None, {"a": 1}, "", "  ", True, 1.5, [1]])
def test_a_question_id_that_is_no_id_is_refused(tmp_path, qid):
    f = write(tmp_path / "q.jsonl", [QUESTIONS[1], {"question_id": qid, "category": "stem", "turns": ["Q?"]}])
    with pytest.raises(ConfigError, match=r"q\.jsonl:2: question_id .* is not an id: give an integer .* or a "
                                          r"non-empty string"):
        read_questions(f)
    from kame.eval.reference import read_reference_answers

    rf = write(tmp_path / "ref.jsonl", [{"question_id": qid, "choices": [{"turns": ["A."]}]}])
    with pytest.raises(ConfigError, match=r"ref\.jsonl:1: question_id .* is not an id"):
        read_reference_answers(rf)


def test_a_turn_the_agent_said_nothing_in_is_not_sent_to_the_judge(judges):
    from kame.eval.mtbench import SAID_NOTHING, grade

    recs = [{"question": "2 + 2?", "answer": "", "reference": None},
            {"question": "And 3 + 3?", "answer": "Six.", "reference": None, "said_nothing": True}]
    with asyncio.Runner() as runner:
        grade(Judges(), runner, recs, 5.0, "test_judge")
    assert judges["n"] == 1 and recs[0]["rating"] == SAID_NOTHING == 1.0 and recs[0]["said_nothing"] is True
    assert recs[0]["judge_reply"] is None and recs[0]["judge"] == "test_judge"
    assert recs[1]["rating"] == 7.0 and "said_nothing" not in recs[1]


def test_the_last_turns_heard_keeps_a_final_after_the_files_end(tmp_path):
    from kame.eval.mtbench import turn_records

    doc = {"components": {"mode": "cascade"}, "other_meta": [], "agent_text": [],
           "transcripts": [{"final": True, "t": 13.36, "text": "what is a cat"}]}  # (the file ends at 13.28 s)
    ut = type("UT", (), {"start": 0.5, "end": 1.5, "window_end": 13.28, "text": "What is a cat?"})()
    q = read_questions(write(tmp_path / "q.jsonl", [QUESTIONS[2]]))[0]
    (rec,) = turn_records(q, doc, [ut], np.zeros(24000, np.float32), 0.01, "cascade", {})
    assert rec["heard"] == "what is a cat" and rec["answer"] == ""


def test_fast_with_the_cascade_is_warned_and_a_silent_turn_rated_1(tmp_path, capsys, fake_components, judges,
                                                                   monkeypatch):
    from kame.eval import mtbench

    real = mtbench.turn_records

    def silent(*args):  # (a cascade that said nothing, as --fast leaves a real one)
        return [{**r, "answer": ""} for r in real(*args)]

    monkeypatch.setattr(mtbench, "turn_records", silent)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    assert eval_(qf, out, "--mode", "cascade", "--set", "cascade.tts=fake") == 0
    captured = capsys.readouterr()
    assert "warning: --fast with --mode cascade: no wall-clock pacing leaves its STT, LLM and TTS no time" in \
        " ".join(captured.err.split())
    (r,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert r["rating"] == 1.0 and r["said_nothing"] is True and judges["n"] == 0
    md = (out / "results.md").read_text()
    assert "1 turn(s) the agent said nothing in, rated 1 without asking the judge: 131" in md
    assert "warning: --fast with --mode cascade" in md
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["eval", "mtbench", "--help"])
    assert "its turns go unanswered, rated 1: leave it out for a cascade" in " ".join(capsys.readouterr().out.split())


def test_failed_in_a_row_names_what_was_saved(tmp_path, capsys):
    from kame.eval.results import failure

    results = tmp_path / "results.jsonl"
    with pytest.raises(KameError) as exc:
        failure([], 4, "5", "[6/6] 5", "the judge", "down", results, kept="the answers of 1, 2 are saved in runs/")
    said = str(exc.value)
    assert f"stopped. No result is saved in {results} yet; the answers of 1, 2 are saved in runs/; fix it" in said
    assert "results so far" not in said  # (was: "the results so far are in" a file never written)
    results.write_text('{"question_id": "0"}\n')
    with pytest.raises(KameError, match=f"stopped. The results so far are in {results}; fix it"):
        failure([], 4, "5", "[6/6] 5", "the judge", "down", results)


def test_a_pairwise_folder_as_output_is_named(tmp_path, capsys, fake_components, judges):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "pair"
    out.mkdir()
    (out / "pairwise.json").write_text('{"folder_a": "a", "folder_b": "b", "judge": "x"}\n')
    (out / "results.jsonl").write_text('{"question_id": "131"}\n')
    err = refused(capsys, qf, out)
    assert f"{out} is a kame eval pairwise folder (pairwise.json), not a kame eval mtbench one; give another -o" in err
    assert "older kame" not in err


def test_five_judge_failures_name_the_saved_runs_not_a_missing_results_file(tmp_path, capsys, fake_components,
                                                                           judges):
    qs = [{"question_id": i, "category": "stem", "turns": [f"Question {i}?"]} for i in range(6)]
    qf = write(tmp_path / "question.jsonl", qs)
    out = tmp_path / "out"
    err = refused(capsys, qf, out, judge="test_flaky_judge")
    assert f"stopped. No result is saved in {out / 'results.jsonl'} yet; the answers of 0, 1, 2, 3, 4 are saved in " \
        f"{out / 'runs'}/ (a rerun rates them, the agent not run); fix it and rerun to resume" in err


def test_a_silent_turn_an_older_kame_sent_to_the_judge_is_rated_again(tmp_path, capsys, fake_components, judges):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    assert eval_(qf, out) == 0
    results = out / "results.jsonl"
    (r,) = [json.loads(x) for x in results.read_text().splitlines()]
    # as an older kame left it: the empty answer sent to the judge, which rated silence 10
    results.write_text(json.dumps({**r, "answer": "", "rating": 10.0, "judge_reply": "Rating: [[10]]"}) + "\n")
    capsys.readouterr()
    assert eval_(qf, out) == 0  # a plain resume keeps it, and says so (was: silently)
    captured = capsys.readouterr()
    said = "1 question(s) hold a turn with no answer that the judge rated (an older kame sent silence to it; now " \
        "rated 1 without asking the judge): 131; give --rejudge to rate them again"
    assert said in " ".join(captured.err.split()) and said in (out / "results.md").read_text()
    judges["n"] = 0
    assert eval_(qf, out, "--rejudge") == 0  # the same judge: re-rated all the same (was: "nothing to re-rate")
    (r,) = [json.loads(x) for x in results.read_text().splitlines()]
    assert r["rating"] == 1.0 and r["said_nothing"] is True and r["judge_reply"] is None and judges["n"] == 0
    md = (out / "results.md").read_text()
    assert "1 turn(s) the agent said nothing in, rated 1 without asking the judge: 131" in md
    assert "no answer that the judge rated" not in md


def test_the_summary_notes_say_no_words_heard_for_heard_answers():
    import argparse

    from kame.eval.summary import notes

    args = argparse.Namespace(turns=1, mode="tandem", judge="j", asr=True, answer="heard", fast=False, rejudge=False)
    q = argparse.Namespace(id="131", category="stem")
    recs = [{"question_id": "131", "category": "stem", "turn": 1, "answer": "", "rating": 1.0, "said_nothing": True}]
    lines = notes(args, [q], recs, {"131"}, ref_file=None, failed=[], judge_failed=[], todo=[q], stored=set(),
                  not_run=[], out="out")
    # (was: "the agent said nothing in", though a babbling tandem made sound whisper heard no word in)
    assert "1 turn(s) whisper heard no words of the agent in (--answer heard), rated 1 without asking the judge: " \
        "131" in lines
    lines = notes(argparse.Namespace(**{**vars(args), "answer": "text"}), [q], recs, {"131"}, ref_file=None,
                  failed=[], judge_failed=[], todo=[q], stored=set(), not_run=[], out="out")
    assert "1 turn(s) the agent said nothing in, rated 1 without asking the judge: 131" in lines
