"""A kame eval mtbench / pairwise / follow into an -o another live run writes to is refused in one
line naming that run's pid, before it writes anything there (was: no lock, the two runs
interleaved their lines in results.jsonl); a lock whose process is gone is taken over. The lock
is kame train's OUT/.lock (kame.train.checkpoint.out_lock), held by kame.eval.firstwrites. The
live run here is a child process holding the lock (it says so before the test goes on: no
timing); scripted judges and the fake agent of test_mtbench / test_pairwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from . import test_mtbench, test_pairwise
from .test_mtbench import QUESTIONS, write
from .test_mtbench import refused as refused_mtbench
from .test_mtbench_first_writes import tree
from .test_pairwise import folder, pairwise
from .test_pairwise import refused as refused_pairwise

judges = test_pairwise.judges  # (fixtures, used by name)
mtbench_judges = test_mtbench.judges
agent_runs = test_mtbench.agent_runs

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no flock: no lock on Windows (documented)")

HOLD = """
import sys
from pathlib import Path
from kame.train.checkpoint import out_lock
with out_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()  # (until the test closes its stdin)
"""


@pytest.fixture
def live_run(tmp_path):
    """A process holding OUT/.lock of the folder it is given (as a live eval or train run does)."""
    procs = []

    def hold(out) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield hold
    for p in procs:
        p.stdin.close()
        p.wait(timeout=60)


def two_folders(tmp_path) -> tuple[str, str]:
    return (folder(tmp_path / "a", "tandem", {("101", 1): "GOOD", ("102", 1): "x"}),
            folder(tmp_path / "b", "cascade", {("101", 1): "bad", ("102", 1): "y"}))


def test_pairwise_into_a_live_runs_folder_is_refused(tmp_path, capsys, judges, live_run):
    a, b = two_folders(tmp_path)
    out = tmp_path / "pair"
    assert pairwise(a, b, out) == 0
    other = live_run(out)
    before = tree(out)  # (.lock: the live run's pid)
    err = refused_pairwise(capsys, a, b, out, "--rejudge")
    assert (f"eval pairwise: another kame process (pid {other.pid}) is writing to -o {out} (it holds "
            f"{out / '.lock'})") in err and "give another -o" in err, err
    assert tree(out) == before  # (nothing written: was its lines appended among the live run's)
    # a fresh -o a live run has just made: refused too, and its .lock left to it
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    live_run(fresh)
    assert f"is writing to -o {fresh}" in refused_pairwise(capsys, a, b, fresh)
    assert sorted(p.name for p in fresh.iterdir()) == [".lock"]


def test_a_refused_run_leaves_the_live_runs_files_alone(tmp_path, capsys, judges, live_run, monkeypatch):
    """The live run wrote OUT_PAIR/pairwise.json after the refused one looked at OUT_PAIR (while it
    read its folders): the refused one's undo does not put back what it found there (was: removed)."""
    from kame.eval import pairwise as pairwise_module

    a, b = two_folders(tmp_path)
    out = tmp_path / "pair"
    out.mkdir()
    live_run(out)
    read_folder = pairwise_module.read_folder

    def meanwhile(folder, name):  # (the live run writes its settings now)
        (out / "pairwise.json").write_text('{"the live run": 1}')
        return read_folder(folder, name)

    monkeypatch.setattr(pairwise_module, "read_folder", meanwhile)
    assert "is writing to -o" in refused_pairwise(capsys, a, b, out)
    assert (out / "pairwise.json").read_text() == '{"the live run": 1}'  # (was: removed, as "not there before")


def test_a_stale_lock_is_taken_over(tmp_path, judges):
    a, b = two_folders(tmp_path)
    out = tmp_path / "pair"
    out.mkdir()
    (out / ".lock").write_text("999999999\n")  # (a run killed with SIGKILL: its process gone, its flock with it)
    assert pairwise(a, b, out) == 0
    assert (out / ".lock").read_text().split() == [str(os.getpid())]


def test_mtbench_into_a_live_runs_folder_is_refused(tmp_path, capsys, fake_components, mtbench_judges, agent_runs,
                                                   live_run):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    out.mkdir()
    other = live_run(out)
    err = refused_mtbench(capsys, qf, out)
    assert f"eval mtbench: another kame process (pid {other.pid}) is writing to -o {out}" in err, err
    assert sorted(p.name for p in out.iterdir()) == [".lock"] and agent_runs["main"] == 0
    assert mtbench_judges["probes"] == 0  # (refused before the judge loads)


def test_follow_into_a_live_runs_folder_is_refused(tmp_path, capsys, fake_codec, live_run):
    from kame.cli import main

    from .test_follow_first_writes import _data

    manifest = _data(tmp_path / "data", n=1, T=24)
    out = tmp_path / "out"
    out.mkdir()
    other = live_run(out)
    capsys.readouterr()
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--no-asr",
                 "--temp", "0", "-o", str(out)]) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"eval follow: another kame process (pid {other.pid}) is writing to -o {out}" in err, err
    # (follow writes its results in one go: two runs overwrite them; was said to interleave them, mtbench's words)
    assert "two runs in one folder overwrite each other's audio and results" in err and "interleave" not in err, err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_a_refused_mtbench_leaves_the_live_runs_runs_folder_alone(tmp_path, capsys, monkeypatch, fake_components,
                                                                   mtbench_judges, agent_runs, live_run):
    """The live run made OUT/runs after the refused one started (OUT/runs missing then): the refused
    one's undo leaves it (was: removed, as made by it, so the live run's first question failed)."""
    from kame.eval import mtbench

    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    out.mkdir()
    live_run(out)
    real = mtbench.make_voice

    def meanwhile(*args):  # (the live run, just after its lock, makes its runs/)
        (out / "runs").mkdir()
        return real(*args)

    monkeypatch.setattr(mtbench, "make_voice", meanwhile)
    assert "is writing to -o" in refused_mtbench(capsys, qf, out)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "runs"]


def test_a_run_that_took_over_undoes_only_its_own(tmp_path, capsys, monkeypatch, fake_components, mtbench_judges,
                                                  agent_runs):
    """-o missing when this run started; meanwhile another run made it, wrote its eval.json and
    results and ended (its .lock let go). This run takes the lock over and fails before its first
    question: its undo leaves that run's files (was: its eval.json and .lock removed, as "not there")."""
    from kame.eval import mtbench

    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    real = mtbench.make_voice

    def meanwhile(*args):  # (the other run, begun and ended)
        (out / "runs").mkdir(parents=True)
        (out / "runs" / "101.rec.json").write_text("{}")
        (out / "eval.json").write_text('{"the other run": 1}')
        (out / "results.jsonl").write_text('{"question_id": "101"}\n')
        (out / ".lock").write_text("999999999\n")
        return real(*args)

    monkeypatch.setattr(mtbench, "make_voice", meanwhile)
    refused_mtbench(capsys, qf, out, judge="test_dead_judge")
    assert (out / "eval.json").read_text() == '{"the other run": 1}'
    assert sorted(p.name for p in out.iterdir()) == [".lock", "eval.json", "results.jsonl", "runs"]


def test_the_refusal_names_the_pid_the_lock_was_refused_on(tmp_path, capsys, judges, monkeypatch):
    """The live run ended and removed its .lock just after this run's flock was refused: the pid is
    the one read through the refused file (was: the file read again by its path, "pid ?")."""
    import fcntl

    from kame.train.checkpoint import out_lock

    a, b = two_folders(tmp_path)
    out = tmp_path / "pair"
    real = fcntl.flock

    def then_gone(f, op):
        try:
            return real(f, op)
        except BlockingIOError:
            (out / ".lock").unlink()  # (the live run's undo, as it ends)
            raise

    with out_lock(out):  # (the live run: this process, another open file)
        monkeypatch.setattr(fcntl, "flock", then_gone)
        err = refused_pairwise(capsys, a, b, out)
    assert f"eval pairwise: another kame process (pid {os.getpid()}) is writing to -o {out}" in err, err


def test_a_file_system_without_locks_is_warned_of_in_evals_words(tmp_path, judges, monkeypatch, caplog):
    import errno
    import fcntl
    import logging

    def refused(*a):
        raise OSError(errno.ENOLCK, "No locks available")

    a, b = two_folders(tmp_path)
    out = tmp_path / "pair"
    monkeypatch.setattr(fcntl, "flock", refused)
    with caplog.at_level(logging.WARNING, logger="kame.train.checkpoint"):
        assert pairwise(a, b, out) == 0
    said = [r.getMessage() for r in caplog.records if "cannot lock" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("eval pairwise: cannot lock"), said  # (was: "train: ...")
    assert f"a second kame eval pairwise into -o {out} would not be refused" in said[0], said
