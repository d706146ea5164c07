"""kame eval pairwise, found by a QA sweep: differing questions shown where they differ, named by
folder; the "failed in a row" stop when no pair was judged; a pairwise folder given as a folder
to compare, and an mtbench folder as -o (hand-written folders, scripted judges)."""

from __future__ import annotations

import json

from . import test_pairwise
from .test_pairwise import folder, refused

judges = test_pairwise.judges  # (test_pairwise's scripted judges: a fixture, used by name)


def test_different_questions_are_shown_where_they_differ(tmp_path, capsys, judges):
    text = "Imagine you are in a race. You just overtook the second person. What is your position now?"
    a = folder(tmp_path / "a", "tandem", {("101", 1): "x"}, questions={("101", 1): text})
    b = folder(tmp_path / "b", "cascade", {("101", 1): "y"},
               questions={("101", 1): text.replace("position now?", "place now?")})
    err = refused(capsys, a, b, tmp_path / "p")
    # (was: both cut at 60 characters, alike, as "there" and "here")
    assert "position now?' in tandem: " in err and "place now?' in cascade: " in err
    assert f"in tandem: {a}, '..." in err and " there, " not in err


def test_five_failures_with_no_pair_judged_say_nothing_was_saved(tmp_path, capsys, judges):
    many = {(str(i), 1): "FAIL" for i in range(110, 115)}
    a, b = folder(tmp_path / "a", "tandem", many), folder(tmp_path / "b", "cascade", many)
    err = refused(capsys, a, b, tmp_path / "pair")
    assert f"stopped. No result is saved in {tmp_path / 'pair' / 'results.jsonl'} yet; fix it" in err
    assert "results so far" not in err


def test_a_pairwise_folder_given_for_mtbench_ones_and_the_other_way_round(tmp_path, capsys, judges):
    a = folder(tmp_path / "a", "tandem", {("101", 1): "x"})
    b = folder(tmp_path / "b", "cascade", {("101", 1): "y"})
    p = tmp_path / "p"
    p.mkdir()
    (p / "pairwise.json").write_text(json.dumps({"folder_a": a, "folder_b": b, "judge": "x"}))
    (p / "results.jsonl").write_text("")
    err = refused(capsys, str(p), b, tmp_path / "p2")
    assert f"OUT_A {p}: a kame eval pairwise folder (pairwise.json), not a kame eval mtbench one" in err
    assert "run kame eval mtbench" not in err  # (was: advice that fails: mtbench refuses that folder)
    err = refused(capsys, a, b, tmp_path / "b")  # (-o: an mtbench folder)
    assert f"{tmp_path / 'b'} is a kame eval mtbench folder (eval.json), not a kame eval pairwise one" in err


def test_an_empty_answer_is_decided_without_the_judge(tmp_path, capsys, judges):
    answers_a = {("101", 1): "", ("102", 1): "A cat.", ("103", 1): "", ("104", 1): "GOOD"}
    answers_b = {("101", 1): "A dog.", ("102", 1): " ", ("103", 1): "", ("104", 1): "fine"}
    a = folder(tmp_path / "a", "tandem", answers_a, settings={"answer": "heard"})
    b = folder(tmp_path / "b", "cascade", answers_b, settings={"answer": "heard"})
    out = tmp_path / "pair"
    assert test_pairwise.pairwise(a, b, out, judge="test_biased_judge") == 0  # (it would make A win everything)
    got = {r["question_id"]: r for r in test_pairwise.lines(out)}
    assert [(got[q]["outcome"], got[q].get("said_nothing")) for q in ("101", "102", "103")] == \
        [("B", "A"), ("A", "B"), ("tie", "both")]
    assert all(got[q]["orders"] == [] for q in ("101", "102", "103")) and judges["n"] == 2  # (104 alone, both orders)
    md = " ".join((out / "results.md").read_text().split())
    # (--answer heard: whisper heard no words, which says less than "the agent said nothing")
    assert "3 pair(s) with an empty answer, decided without the judge (the other answer wins; both empty: a tie): " \
        "101 (A: no words heard), 102 (B: no words heard), 103 (A: no words heard; B: no words heard)" in md
    # pairs an older kame sent to the judge: --rejudge decides them again (was: kept as judged)
    stored = test_pairwise.lines(out)
    old = [{**r, "outcome": "A", "orders": [{"first": "A", "verdict": "A"}, {"first": "B", "verdict": "A"}]}
           if r["question_id"] == "101" else r for r in stored]
    for r in old:
        r.pop("said_nothing", None) if r["question_id"] == "101" else None
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    assert test_pairwise.pairwise(a, b, out, judge="test_biased_judge") == 0
    assert "warning: 1 pair(s) with an empty answer were judged (an older kame sent them to the judge; now decided " \
        "without it): 101; give --rejudge" in " ".join((out / "results.md").read_text().split())
    assert test_pairwise.pairwise(a, b, out, "--rejudge", judge="test_biased_judge") == 0
    r101 = {r["question_id"]: r for r in test_pairwise.lines(out)}["101"]
    assert (r101["outcome"], r101["said_nothing"]) == ("B", "A")


def test_pairs_with_an_empty_answer_alone_need_no_judge_nor_count_as_judged(tmp_path, capsys, judges):
    """review238 finding 7: the judge was opened and probed (a judge down failed the run) for pairs
    that all had an empty answer; those pairs, stored with the judge's name, were stale for another
    --judge; results.md counted them as "judged"."""
    a = folder(tmp_path / "a", "tandem", {("101", 1): "", ("102", 1): "A cat.", ("103", 1): "x"})
    b = folder(tmp_path / "b", "cascade", {("101", 1): "A dog.", ("102", 1): "", ("103", 1): "y"})
    out = tmp_path / "pair"
    assert test_pairwise.pairwise(a, b, out, judge="test_pair_judge") == 0
    md = " ".join((out / "results.md").read_text().split())
    assert "1 pair(s) judged, 2 with an empty answer decided without the judge; " in md  # (was: 3 pair(s) judged)
    capsys.readouterr()
    # --rejudge with a judge that is down: only 103 is judged again (was: 101 and 102 too, and the probe failed)
    assert test_pairwise.pairwise(a, b, out, "--rejudge", judge="test_dead_pair_judge") == 1
    out_text = " ".join(capsys.readouterr().out.split())
    assert "--rejudge: 1 to judge again" in out_text
    got = {r["question_id"]: r for r in test_pairwise.lines(out)}
    assert (got["101"]["outcome"], got["102"]["outcome"]) == ("B", "A")
    # a folder of empty answers alone: no judge opened (a dead one does not fail it)
    c = folder(tmp_path / "c", "tandem", {("101", 1): ""})
    d = folder(tmp_path / "d", "cascade", {("101", 1): "A dog."})
    assert test_pairwise.pairwise(c, d, tmp_path / "pair2", judge="test_dead_pair_judge") == 0
    assert [r["outcome"] for r in test_pairwise.lines(tmp_path / "pair2")] == ["B"]


def test_a_results_file_with_bytes_that_are_not_utf8_is_refused_by_file_and_line(tmp_path, capsys, judges):
    """(was: a UnicodeDecodeError traceback; a line cut inside a character is as cut as one that is not JSON)"""
    a = folder(tmp_path / "a", "tandem", {("101", 1): "x"})
    b = folder(tmp_path / "b", "cascade", {("101", 1): "y"})
    results = tmp_path / "b" / "results.jsonl"
    results.write_bytes(results.read_bytes() + '{"question_id": "102", "answer": "café'.encode()[:-1])
    err = refused(capsys, a, b, tmp_path / "p")
    assert f"{results}:2: not valid JSON (cut while writing?); delete that line, or give another OUT_B" in err, err
    c = folder(tmp_path / "c", "cascade", {("101", 1): "y"})
    pair = tmp_path / "pair"  # (OUT_PAIR's own results.jsonl: read by has_results first, then resumed)
    pair.mkdir()
    (pair / "pairwise.json").write_text(json.dumps({"folder_a": a, "folder_b": c, "judge": "test_pair_judge"}))
    (pair / "results.jsonl").write_bytes(b"\xe4\n")
    err = refused(capsys, a, c, pair)
    assert f"{pair / 'results.jsonl'}:1: not valid JSON (cut while writing?); delete that line, or give another -o" \
        in err, err


def test_a_file_given_for_a_folder_is_said_to_be_a_file(tmp_path, capsys, judges):
    b = folder(tmp_path / "b", "cascade", {("101", 1): "y"})
    (tmp_path / "short.wav").write_bytes(b"RIFF")
    err = refused(capsys, str(tmp_path / "short.wav"), b, tmp_path / "p")
    assert f"OUT_A {tmp_path / 'short.wav'}: a file, not a folder; give a `kame eval mtbench` output folder" in err
    assert "no such folder" not in err  # (was: though it exists)
    err = refused(capsys, str(tmp_path / "missing"), b, tmp_path / "p")
    assert f"OUT_A {tmp_path / 'missing'}: no such folder; give a `kame eval mtbench` output folder" in err
