"""bench/copy_task.py: an -o it cannot write (a folder, /proc, under a file) is a one-line usage
error, exit 2, before the word list is read (was: FileNotFoundError or IsADirectoryError tracebacks
after it)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "copy_task.py"


@pytest.fixture
def copy_task(monkeypatch):
    spec = importlib.util.spec_from_file_location("copy_task", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "word_list", lambda: [f"w{i}" for i in range(10)])  # (no pocketsphinx)
    return module


@pytest.mark.parametrize("out, said", [
    ("{tmp}", "-o {tmp} is a folder, cannot write a file there"),
    ("/proc/ct.jsonl", "-o /proc/ct.jsonl: cannot write into /proc"),
    ("{tmp}/file/ct.jsonl", "-o {tmp}/file/ct.jsonl: cannot create its folder: {tmp}/file is a file"),
    ("", "-o is empty; give the file to write"),
])
def test_an_output_it_cannot_write_is_a_usage_error(out, said, copy_task, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(copy_task, "word_list", lambda: pytest.fail("the words were read first"))
    with pytest.raises(SystemExit) as exc:
        copy_task.main(["-o", out.format(tmp=tmp_path), "--items", "2"])
    assert exc.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]  # (argparse's usage, then "PROG: error: ...")
    assert f": error: {said.format(tmp=tmp_path)}" in last, last


def test_it_writes_the_set_making_its_folder(copy_task, tmp_path):
    out = tmp_path / "new" / "qa.jsonl"
    assert copy_task.main(["-o", str(out), "--items", "3", "--seed", "1"]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 3 and all(r["question"] in copy_task.REQUESTS and r["answer"].endswith(".") for r in recs)


def test_it_says_the_items_written_and_the_vocabulary_they_come_from(copy_task, tmp_path, capsys):
    """(was: "qa.jsonl: 1 items, 10 words", the vocabulary's size read as the words written)"""
    out = tmp_path / "qa.jsonl"
    assert copy_task.main(["-o", str(out), "--items", "1"]) == 0
    assert capsys.readouterr().err == f"{out}: 1 item, from a vocabulary of 10 words\n"
