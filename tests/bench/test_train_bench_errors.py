"""`kame bench train` with a bad --data or --frontend: one line "kame: error: ..." before any data
is made or process started; a layout whose processes still fail: their kame error in one line (their
whole stderr at debug level, kame -v), not their tracebacks and torchrun's."""

import logging
import subprocess

import pytest

from kame.bench import train as bench_train
from kame.cli import main


@pytest.fixture
def nothing_started(monkeypatch):
    """make_data and the torchrun processes fail the test if they are reached."""
    def reached(*a, **k):
        raise AssertionError("reached past the argument checks")

    monkeypatch.setattr(bench_train, "make_data", reached)
    monkeypatch.setattr(bench_train.subprocess, "run", reached)


@pytest.mark.parametrize("argv, said", [
    (["--data", "{tmp}/none"], "bench train --data: no manifest at {tmp}/none"),
    (["--data", "{tmp}"], "bench train --data: {tmp} is a folder without a train.jsonl"),
    (["--data", "{tmp}/empty.jsonl"], "bench train --data: manifest {tmp}/empty.jsonl lists no dialogues"),
    (["--frontend", "nope"], "bench train --frontend nope: front-end checkpoint 'nope' does not exist"),
    (["--frontend", "random:nope"], "bench train --frontend random:nope: unknown random front-end"),
])
def test_bad_data_or_frontend_is_one_line_before_anything_runs(argv, said, tmp_path, capsys, nothing_started):
    (tmp_path / "empty.jsonl").write_text("")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(["bench", "train", "--layout", "single", "--steps", "4", *argv]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("kame: error: " + said.format(tmp=tmp_path)), captured.err
    assert "| layout" not in captured.out  # (no table begun)


STDERR = """Traceback (most recent call last):
  File "/work/main/src/kame/train/batching.py", line 172, in manifest_path
    raise DataError(f"{command}: no manifest at {p}: make one with `kame data synth` (OUT/train.jsonl) or "
kame.train.data.DataError: train: no manifest at /gone: make one with `kame data synth`
E1206 12:33:57.056000 17149 torch/distributed/elastic/multiprocessing/api.py:882] failed (exitcode: 1)
Traceback (most recent call last):
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
kame.bench.train FAILED
"""


def test_a_failed_layout_says_its_processes_kame_error_in_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(bench_train.subprocess, "run",
                        lambda cmd, **k: subprocess.CompletedProcess(cmd, 1, "", STDERR))
    args = bench_train.argparse.Namespace(nproc=2, frontend="random:tiny", steps=4, window=16, batch_size=1,
                                          plugin=[])
    with caplog.at_level(logging.DEBUG, logger="kame.bench.train"), \
            pytest.raises(bench_train.KameError) as exc:
        bench_train.run_layout("single", tmp_path / "train.jsonl", args, tmp_path)
    assert str(exc.value) == ("bench train: layout single failed: kame.train.data.DataError: train: no manifest "
                              "at /gone: make one with `kame data synth`")
    assert "ChildFailedError" in caplog.text  # (the whole stderr: kame -v)


@pytest.mark.parametrize("stderr, said", [
    ("Traceback (most recent call last):\n  File x\nRuntimeError: out of memory\nE1206 torchrun ...\n"
     "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n",
     "RuntimeError: out of memory (kame -v shows their whole output)"),
    ("Killed\n", "its processes exited with -9 (kame -v shows their whole output)"),
    # several processes (torch prefixes their lines): each kame error once, in order
    ("[rank1]: kame.train.data.DataError: train: another process failed\n"
     "[rank0]:     raise DataError(f'{meta_path}: format')\n"
     "[rank0]: kame.train.data.DataError: d0/dialogue.json: format None\n"
     "[rank2]: kame.train.data.DataError: train: another process failed\n",
     "kame.train.data.DataError: train: another process failed | kame.train.data.DataError: d0/dialogue.json: "
     "format None"),
])
def test_it_says_their_kame_errors_else_the_last_exception_else_the_exit_code(stderr, said):
    assert bench_train.child_error(stderr, -9) == said


@pytest.mark.slow
def test_a_layout_whose_processes_fail_says_why_in_one_line(tmp_path, capsys):
    """A manifest that passes the up-front check, whose dialogue the worker cannot read."""
    (tmp_path / "d0").mkdir()
    (tmp_path / "d0" / "dialogue.json").write_text("{}")
    (tmp_path / "train.jsonl").write_text('{"path": "d0", "duration": 1.0, "frames": 12}\n')
    assert main(["bench", "train", "--frontend", "random:tiny", "--layout", "single", "--steps", "4",
                 "--window", "16", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kame: error: bench train: layout single failed: "
                                               "kame.train.data.DataError: "), err
    assert "dialogue.json" in err[0]
