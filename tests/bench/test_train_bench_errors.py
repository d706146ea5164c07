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
    monkeypatch.setattr(bench_train, "_run", reached)


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
    monkeypatch.setattr(bench_train, "_run", lambda cmd, **k: subprocess.CompletedProcess(cmd, 1, "", STDERR))
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
    ("no exception here\n", "its processes exited with 1 (kame -v shows their whole output)"),
    # several processes (torch prefixes their lines): each kame error once, in order, without the
    # others' echo of it (kame.train.parallel.agree: "train: rank R failed: ...") when a process said more
    ("[rank1]: kame.errors.ConfigError: train: rank 0 failed: d0/dialogue.json: format None\n"
     "[rank0]:     raise DataError(f'{meta_path}: format')\n"
     "[rank0]: kame.train.data.DataError: d0/dialogue.json: format None\n"
     "[rank2]: kame.errors.ConfigError: train: rank 0 failed: d0/dialogue.json: format None\n",
     "kame.train.data.DataError: d0/dialogue.json: format None"),
    ("[rank1]: kame.errors.ConfigError: train: rank 0 (on node2) failed: OSError: disk gone\n"
     "[rank2]: kame.errors.ConfigError: train: rank 0 (on node2) failed: OSError: disk gone\n",
     "kame.errors.ConfigError: train: rank 0 (on node2) failed: OSError: disk gone"),
    # (was: the others' echo alone, as if it were their own error)
    ("[rank1]: kame.errors.ConfigError: train: rank 0 failed: OSError: [Errno 28] No space left on device\n"
     "[rank0]: OSError: [Errno 28] No space left on device\n",
     "rank 0: OSError: [Errno 28] No space left on device (kame -v shows their whole output)"),
])
def test_it_says_their_kame_errors_else_the_last_exception_else_the_exit_code(stderr, said):
    assert bench_train.child_error(stderr, 1) == said


# Real torchrun stderr (torch 2.x, 2 processes, gloo), trimmed: torchrun's own traceback is cut to its
# last line, the tracebacks' "File" lines to one each.
TORCHRUN_END = """E1206 12:58:43.988000 29944 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 1) \
local_rank: 0 (pid: 29957) of binary: /work/main/.venv/bin/python
Traceback (most recent call last):
  File "/work/main/.venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 383, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
rt2.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-06_12:58:43
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -15 (pid: 29958)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 29958
------------------------------------------------------------
"""
ROOT_CAUSE_RANK0_EXIT1 = """Root Cause (first observed failure):
[0]:
  time      : 2026-12-06_12:58:43
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 29957) 
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""
# rank 0 raises; rank 1 then fails in all_reduce (its line comes last)
RANK0_RAISES = """[rank0]: Traceback (most recent call last):
[rank0]:   File "/tmp/k26/review1/tr/rt2.py", line 5, in <module>
[rank0]:     raise RuntimeError("real failure on rank 0")
[rank0]: RuntimeError: real failure on rank 0
[rank1]: Traceback (most recent call last):
[rank1]:   File "/work/main/.venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py", line 3252, \
in all_reduce
[rank1]:     work.wait()
[rank1]: RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by \
peer [127.0.0.1]:3478. This is typically caused by a remote worker crashing. Check the logs of the remote worker \
before reporting an error. GLHF! 🏖️
W1206 12:58:43.921000 29944 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 29958 closing \
signal SIGTERM
"""
# both processes SIGKILLed (os.kill(os.getpid(), SIGKILL): as the OOM killer does)
KILLED = """E1206 12:58:35.940000 29925 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9) \
local_rank: 0 (pid: 29940) of binary: /work/main/.venv/bin/python
Traceback (most recent call last):
  File "/work/main/.venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 383, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
======================================================
kill9.py FAILED
------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-06_12:58:35
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 29941)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 29941
------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-06_12:58:35
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -9 (pid: 29940)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 29940
======================================================
"""


# rank 0 raises an ordinary exception; rank 1, told by kame.train.parallel.agree, echoes it
PAIR = """[rank1]: Traceback (most recent call last):
[rank1]:   File "/work/main/src/kame/train/parallel.py", line 263, in agree
[rank1]:     raise ConfigError(f"{what}: rank {first}{where} failed: {said_first.removeprefix(what + ': ')}")
[rank1]: kame.errors.ConfigError: train: rank 0 failed: RuntimeError: codec broke on rank 0
[rank0]: Traceback (most recent call last):
[rank0]:   File "/tmp/k26/review3/tr/w.py", line 21, in <module>
[rank0]:     if failed: raise RuntimeError("codec broke on rank 0")
[rank0]:                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
[rank0]: RuntimeError: codec broke on rank 0
E1206 13:08:36.175000 16722 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 1) local_rank: \
0 (pid: 16727) of binary: /work/main/.venv/bin/python
Traceback (most recent call last):
  File "/work/main/.venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 383, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
w.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-06_13:08:36
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 16728) 
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-06_13:08:36
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 16727) 
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def _ranks_swapped(stderr: str) -> str:
    """torchrun's failure block of ``stderr`` with ranks 0 and 1 swapped (the other seen failing first)."""
    one, zero = "rank      : 1 (local_rank: 1)", "rank      : 0 (local_rank: 0)"
    return stderr.replace(zero, "\0").replace(one, zero).replace("\0", one)


@pytest.mark.parametrize("stderr, said", [
    # the root cause's own exception, not the other's echo of it (was: that alone)
    (PAIR, "rank 0: RuntimeError: codec broke on rank 0"),
    # torchrun saw the other fail first: still the one that said more
    (_ranks_swapped(PAIR), "rank 0: RuntimeError: codec broke on rank 0"),
    # the root cause's rank, not the last exception line (the other rank's, failing after it)
    (RANK0_RAISES + TORCHRUN_END + ROOT_CAUSE_RANK0_EXIT1, "rank 0: RuntimeError: real failure on rank 0"),
    # no root cause block: each rank's last exception line
    (RANK0_RAISES, "rank 0: RuntimeError: real failure on rank 0 | rank 1: RuntimeError: [/__w/pytorch/pytorch/"
                   "third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:3478."),
    # killed by a signal: torchrun exits with 1, its root cause says -9
    (KILLED, "rank 0 was killed by SIGKILL (out of memory?)"),
    (KILLED.replace("-9 (pid: 29940)  (SIGKILL)", "-11 (pid: 29940)  (SIGSEGV)")
     .replace("Signal 9 (SIGKILL) received by PID 29940", "Signal 11 (SIGSEGV) received by PID 29940"),
     "rank 0 was killed by SIGSEGV"),
    # the root cause's rank said nothing: its exit code
    ("[rank1]: RuntimeError: Connection closed by peer\n" + TORCHRUN_END
     + ROOT_CAUSE_RANK0_EXIT1.replace("exitcode  : 1", "exitcode  : 3"), "rank 0 exited with code 3"),
])
def test_it_names_the_rank_torchrun_saw_fail_first_and_how(stderr, said):
    got = bench_train.child_error(stderr, 1)
    assert got.startswith(said) and got.endswith(" (kame -v shows their whole output)"), got
    assert "processes exited with 1" not in got


# Real: tests/train/test_finetune.py::test_a_process_failing_to_encode_stops_them_all's stderr (rank 1's codec
# fails on its encode share; rank 0 learns it in parallel.agree and echoes it), trimmed as above
ENCODE_FAILS = """[rank0]: Traceback (most recent call last):
[rank0]:   File "/work/main/src/kame/train/parallel.py", line 263, in agree
[rank0]:     raise ConfigError(f"{what}: rank {first}{where} failed: {said_first.removeprefix(what + ': ')}")
[rank0]: kame.errors.ConfigError: train: rank 1 failed: OSError: rank 1 cannot encode
[rank1]: Traceback (most recent call last):
[rank1]:   File "/tmp/k47/m1/m1cap2rrvo8bq/fake_codec.py", line 12, in encode
[rank1]:     raise OSError("rank 1 cannot encode")
[rank1]: OSError: rank 1 cannot encode
W1207 19:04:27.378000 15795 .venv/lib/python3.11/site-packages/torch/distributed/elastic/multiprocessing/api.py:1028] \
Sending process 15821 closing signal SIGTERM
E1207 19:04:27.493000 15795 .venv/lib/python3.11/site-packages/torch/distributed/elastic/multiprocessing/api.py:1002] \
failed (exitcode: 1) local_rank: 1 (pid: 15822) of binary: /work/main/.venv/bin/python
Traceback (most recent call last):
  File "/work/main/.venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 383, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
/tmp/k47/m1/m1cap2rrvo8bq/run.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-07_19:04:27
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 15821)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 15821
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_19:04:27
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 15822) 
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


@pytest.mark.parametrize("stderr", [
    ENCODE_FAILS,
    # torchrun saw rank 0, the one that echoed it, fail first (was: rank 0's echo, said as its own error)
    _ranks_swapped(ENCODE_FAILS),
    # no root cause block (was: the echo alone)
    ENCODE_FAILS.partition("W1207")[0],
])
def test_a_failed_encode_share_is_said_by_the_rank_that_failed(stderr):
    assert bench_train.child_error(stderr, 1) == ("rank 1: OSError: rank 1 cannot encode "
                                                  "(kame -v shows their whole output)")


@pytest.mark.parametrize("host", [None, "node2"])
def test_the_echo_left_out_is_the_line_agree_raises(host):
    """kame.train.parallel.peer_failed (agree's line in the other processes) is what child_error
    takes for an echo: its wording is written once, in parallel.py."""
    from kame.train.parallel import peer_failed

    echo = "kame.errors.ConfigError: " + peer_failed("train", 1, host, "train: OSError: rank 1 cannot encode")
    assert echo == "kame.errors.ConfigError: train: rank 1{} failed: OSError: rank 1 cannot encode".format(
        f" (on {host})" if host else "")
    assert bench_train._ECHO.match(echo) and not bench_train._ECHO.match("kame.errors.ConfigError: train: OSError: x")


def test_the_root_causes_kame_error_is_said_as_is():
    stderr = PAIR.replace("[rank0]: RuntimeError: codec broke on rank 0", "[rank0]: kame.train.data.DataError: d0: bad") \
        .replace("rank 0 failed: RuntimeError: codec broke on rank 0", "rank 0 failed: d0: bad")
    assert bench_train.child_error(stderr, 1) == "rank 0: kame.train.data.DataError: d0: bad"


def test_the_table_begins_with_the_first_layouts_results(tmp_path, monkeypatch, capsys):
    """A layout that fails before any has results leaves no table (was: its header alone, in
    redirected output); one that fails after leaves the header and the rows before it."""
    ranks = [{"params_mb": 1.0, "grads_mb": 1.0, "optim_mb": 2.0, "rss_mb": 100.0, "peak_rss_mb": 120.0,
              "load_peak_mb": 110.0, "save_peak_mb": 130.0, "step_s": 0.5}]

    def run_layout(layout, *a):
        if layout == "shard":
            raise bench_train.KameError(f"bench train: layout {layout} failed: rank 0 was killed by SIGKILL")
        return ranks

    monkeypatch.setattr(bench_train, "make_data", lambda folder: folder / "train.jsonl")
    monkeypatch.setattr(bench_train, "run_layout", run_layout)
    argv = ["bench", "train", "--frontend", "random:tiny", "--steps", "4"]
    assert main([*argv, "--layout", "shard"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "layout shard failed" in captured.err
    assert main([*argv, "--layout", "single", "--layout", "shard"]) == 1
    out = capsys.readouterr().out
    assert "| layout | processes |" in out and "| single | 1 | 1 | 1 | 2 | 4 |" in out, out


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
