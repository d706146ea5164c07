"""kame eval mtbench --reference: FastChat's reference-answer file read (its errors named by
file:line) and applied to the questions that need one (math, reasoning, coding), before their own
"reference". The end-to-end runs are in test_mtbench.py."""

from __future__ import annotations

import hashlib
import json

import pytest

from kame.errors import ConfigError
from kame.eval.mtbench import Question
from kame.eval.reference import apply_references, first_changed, read_reference_answers, reference_warning


def answer(qid, *turns) -> dict:  # FastChat's model-answer format
    return {"question_id": qid, "answer_id": f"a{qid}", "model_id": "gpt-4",
            "choices": [{"index": 0, "turns": list(turns)}], "tstamp": 1.0}


def write(path, rows) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_reads_fastchat_reference_answers(tmp_path):
    path = write(tmp_path / "gpt-4.jsonl", [answer(101, "One.", "Two."), "", answer(111, "Four.")])
    ref = read_reference_answers(path)
    assert ref.answers == {"101": ["One.", "Two."], "111": ["Four."]}
    assert ref.sha256 == hashlib.sha256((tmp_path / "gpt-4.jsonl").read_bytes()).hexdigest()
    assert ref.record() == {"path": str((tmp_path / "gpt-4.jsonl").resolve()), "sha256": ref.sha256}


@pytest.mark.parametrize("rows, error", [
    ([answer(101, "One."), "{not json"], ":2: not valid JSON (Expecting property name enclosed in double quotes "
                                         "at column 2)"),
    ([{"question_id": 101, "turns": ["One."]}], ":1: a reference answer needs question_id and choices[0].turns"),
    ([{"question_id": 101, "choices": []}], ":1: a reference answer needs"),
    ([{"question_id": 101, "choices": [{"turns": []}]}], ":1: a reference answer needs"),
    ([{"question_id": 101, "choices": [{"turns": ["One.", 2]}]}], ":1: a reference answer needs"),
    ([{"choices": [{"turns": ["One."]}]}], ":1: a reference answer needs"),
    (["[1, 2]"], ":1: a reference answer needs"),
    ([answer(101, "One."), answer(101, "Uno.")], ":2: question_id 101 again (first at "),
    ([""], ": no reference answer in it (an empty file?)"),
])
def test_reference_file_errors_name_the_line(tmp_path, rows, error):
    path = write(tmp_path / "ref.jsonl", rows)
    with pytest.raises(ConfigError) as exc:
        read_reference_answers(path)
    assert str(exc.value).startswith(path) or str(exc.value).startswith(f"--reference {path}")
    assert error in str(exc.value)


def test_unreadable_reference_file(tmp_path):
    with pytest.raises(ConfigError, match="ref.jsonl: cannot read it .no such file or directory.; give FastChat"):
        read_reference_answers(tmp_path / "ref.jsonl")
    with pytest.raises(ConfigError, match="cannot read it .is a folder."):
        read_reference_answers(tmp_path)
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match="bin.jsonl: not UTF-8 text"):
        read_reference_answers(tmp_path / "bin.jsonl")


def test_file_first_for_the_categories_that_need_one_then_the_questions_own(tmp_path):
    ref = read_reference_answers(write(tmp_path / "ref.jsonl", [
        answer(101, "File 1."), answer(111, "File 111a.", "File 111b."), answer(131, "Stem file.")]))
    qs = [Question("101", "reasoning", ["q1", "q2"], ["Own 1.", "Own 2."], "x:1"),  # file's turn 1, own turn 2
          Question("111", "math", ["q1", "q2"], None, "x:2"),
          Question("121", "coding", ["q1", "q2"], ["Own c."], "x:3"),  # turn 2: none anywhere
          Question("122", "coding", ["q1"], None, "x:4"),  # none at all
          Question("131", "stem", ["q1"], ["Own stem."], "x:5"),  # not a category that needs one: own only
          Question("141", "stem", ["q1"], None, "x:6")]
    missing = apply_references(qs, ref)
    assert [q.reference for q in qs] == [["File 1.", "Own 2."], ["File 111a.", "File 111b."], ["Own c.", None],
                                         [None], ["Own stem."], [None]]
    assert missing == ["121 turn 2", "122"]
    # without a file: each question's own, and the same gaps listed
    qs = [Question("101", "reasoning", ["q1"], ["Own 1."], "x:1"), Question("102", "reasoning", ["q1"], None, "x:2")]
    assert apply_references(qs, None) == ["102"] and qs[0].reference == ["Own 1."]


def test_first_changed_reference():
    recs = [{"reference": "A"}, {"reference": None}]
    assert first_changed(recs, ["A", None]) is None and first_changed(recs, ["A", ""]) is None
    assert first_changed(recs, ["B", None]) == 0 and first_changed(recs, ["A", "C"]) == 1
    assert first_changed([{"reference": "A"}], []) == 0


def test_the_warning_says_what_to_do(tmp_path):
    text = " ".join(reference_warning(["102", "121 turn 2"], None).split())
    assert text.startswith("warning: 2 math/reasoning/coding question(s) have no reference answer (neither in a "
                           "--reference file nor their own \"reference\")")
    assert text.endswith("unlike FastChat's MT-Bench: 102, 121 turn 2; give FastChat's with --reference (its "
                         "data/mt_bench/reference_answer/gpt-4.jsonl), or a \"reference\" to the questions, for "
                         "comparable scores")
    ref = read_reference_answers(write(tmp_path / "ref.jsonl", [answer(101, "One.")]))
    assert reference_warning(["102"], ref).endswith(": 102; add theirs to that file, or a \"reference\" to the "
                                                     "questions, for comparable scores")


def test_eval_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A write of eval.json stopped halfway leaves it as it was, not cut (was: written in place; a
    cut one refuses the folder, whose results would then be thrown away with it)."""
    from pathlib import Path
    from types import SimpleNamespace

    from kame.eval.mtbench import check_settings
    from kame.eval.reference import record_reference

    settings = tmp_path / "eval.json"
    old = {"mode": "tandem", "turns": 1, "judge": "old", "agent": {}, "asr": False, "answer": "text"}
    settings.write_text(json.dumps(old))
    write_text = Path.write_text

    def cut(self, text, *a, **k):  # a write stopped halfway
        write_text(self, text[:10])
        raise KeyboardInterrupt

    args = SimpleNamespace(mode="tandem", turns=2, judge="new", asr=False, answer="text", rejudge=False)
    ref = read_reference_answers(write(tmp_path / "ref.jsonl", [answer(101, "One.")]))
    for writes in (lambda: check_settings(tmp_path, args, {}), lambda: record_reference(settings, ref)):
        with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
            m.setattr(Path, "write_text", cut)
            writes()
        assert json.loads(settings.read_text()) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "ref.jsonl"]  # (no temporary left)
    record_reference(settings, ref)
    assert json.loads(settings.read_text())["reference_answers"] == ref.record()
