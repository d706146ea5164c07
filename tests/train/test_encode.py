"""kame.train.encode (`kame data encode`): a set's codes cache made in worker processes, equal to
what kame train would cache; cached dialogues skipped, stale ones redone, a broken one reported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kame.cli import main
from kame.train.codes import encode_dialogue
from kame.train.data import CODES, Dialogue, Word, read_dialogue, write_dialogue
from kame.train.manifest import write_manifest

PLUGIN = '''
import os
import pathlib
import time
from multiprocessing import parent_process

from kame import registry
from tests.train._fakes import FakeCodec


class LevelCodec(FakeCodec):
    def __init__(self, arg=None, **kw):
        super().__init__()
        self.fingerprint = None if arg == "nofp" else "cd" * 32
        self.die = arg == "die"  # (its process dies at dialogue(2), as one killed for memory would)
        self.gate = arg == "gate"  # (a worker says it began encoding, then waits for the test's go)
        if arg == "gate-init" and parent_process() is not None:  # (the same, in a worker's initializer)
            self._wait()

    @staticmethod
    def _wait():
        gate = pathlib.Path(os.environ["KAME_TEST_GATE"])
        (gate / f"started-{os.getpid()}").touch()
        while not (gate / "go").exists():
            time.sleep(0.02)

    def encode(self, pcm):
        if self.die and pcm.shape[-1] == 14 * 1920:
            os._exit(1)
        if self.gate:
            self._wait()
        return super().encode(pcm)


registry.register("codec", "level", LevelCodec, replace=True)
'''


def dialogue(i: int) -> Dialogue:
    T = 12 + i
    levels = (np.arange(T) * 37 + 100 * i) % 900 / 1000.0
    audio = np.repeat(np.stack([levels, levels[::-1]], axis=1), 1920, axis=0).astype(np.float32)
    return Dialogue(audio, [Word("user", "hello", 0.1, 0.3), Word("agent", "hi", 0.5, 0.7)])


@pytest.fixture
def plugin(tmp_path):
    from kame import registry

    path = tmp_path / "levelcodec.py"
    path.write_text(PLUGIN)
    yield str(path)
    registry._ENTRIES.get("codec", {}).pop("level", None)  # (the later tests list the known schemes)


def test_two_processes_cache_what_kame_train_would(tmp_path, plugin, capsys):
    from kame import registry

    root = tmp_path / "set"
    folders = [write_dialogue(root / f"d{i}", dialogue(i)) for i in range(4)]
    write_manifest(root / "train.jsonl", folders)
    (folders[2] / "audio.wav").write_bytes(b"RIFF not a wav")  # broken after the manifest was written
    rc = main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level", "--codebooks", "4", "--jobs", "2"])
    out = capsys.readouterr().out
    assert rc == 1 and "| 4 | 0 | 3 | 1 |" in out, out
    assert "failed: " in out and "d2" in out and not (folders[2] / CODES).exists()
    codec = registry.create("codec", "level")
    codec.set_num_codebooks(4)
    for f in (folders[0], folders[1], folders[3]):
        with np.load(f / CODES) as z:
            meta = json.loads(str(z["meta"]))
            user, agent = encode_dialogue(read_dialogue(f), codec)
            assert np.array_equal(z["user"], user.numpy()) and np.array_equal(z["agent"], agent.numpy())
        assert meta["codec"] == "level" and meta["num_codebooks"] == 4
    # again, with the broken one mended: only it is encoded; another codebook count redoes them all
    write_dialogue(folders[2], dialogue(2), overwrite=True)
    assert main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level", "--codebooks", "4"]) == 0
    assert "| 4 | 3 | 1 | 0 |" in capsys.readouterr().out
    args = ["--plugin", plugin, "data", "encode", str(root / "train.jsonl"), "--codec", "level", "--jobs", "1"]
    assert main(args) == 0
    assert "| 4 | 0 | 4 | 0 |" in capsys.readouterr().out


def test_a_broken_dialogue_beside_its_cache_is_reported_and_the_others_go_on(tmp_path, plugin, capsys):
    root = tmp_path / "set"
    folders = [write_dialogue(root / f"d{i}", dialogue(i)) for i in range(3)]
    write_manifest(root / "train.jsonl", folders)
    assert main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level", "--jobs", "1"]) == 0
    capsys.readouterr()
    (folders[1] / "dialogue.json").write_text("{ not json")  # its codes.npz stays
    (folders[2] / CODES).unlink()
    rc = main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level", "--jobs", "1"])
    out = capsys.readouterr().out
    assert rc == 1 and "| 3 | 1 | 1 | 1 |" in out, out
    assert "failed: " in out and "d1" in out and (folders[2] / CODES).is_file()


def test_one_process_uses_the_codec_it_checked(tmp_path, plugin, monkeypatch, capsys):
    from kame.train import encode

    made = []
    make = encode.make_codec
    monkeypatch.setattr(encode, "make_codec", lambda *a: made.append(a) or make(*a))
    root = tmp_path / "set"
    write_manifest(root / "train.jsonl", [write_dialogue(root / f"d{i}", dialogue(i)) for i in range(2)])
    assert main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level", "--jobs", "1"]) == 0
    assert "| 2 | 0 | 2 | 0 |" in capsys.readouterr().out and len(made) == 1  # (for Mimi: one weights load)


def test_jobs_default_to_the_cpus_this_process_may_use(monkeypatch):
    import os

    from kame.cli import _build_parser

    def jobs() -> int:
        return _build_parser(["data", "encode", "x"])[0].parse_args(["data", "encode", "x"]).jobs

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert jobs() == 3
    monkeypatch.delattr(os, "sched_getaffinity")  # (macOS, Windows)
    assert jobs() == 8  # (at most 8: each worker holds its own codec)


def test_a_worker_that_dies_is_a_clear_error_and_a_rerun_goes_on(tmp_path, plugin, capsys):
    root = tmp_path / "set"
    folders = [write_dialogue(root / f"d{i}", dialogue(i)) for i in range(3)]
    write_manifest(root / "train.jsonl", folders)
    rc = main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level:die", "--jobs", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and "a worker process died" in err and "fewer --jobs" in err and "run the command again" in err, err
    assert not (folders[2] / CODES).exists()
    kept = sum((f / CODES).is_file() for f in folders)  # (those a worker finished before: they stay)
    assert main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level", "--jobs", "1"]) == 0
    assert f"| 3 | {kept} | {3 - kept} | 0 |" in capsys.readouterr().out


def test_bad_input_is_refused_before_any_work(tmp_path, plugin, capsys):
    assert main(["data", "encode", str(tmp_path / "nope")]) == 1
    assert "data encode: no manifest at" in capsys.readouterr().err
    root = tmp_path / "set"
    write_manifest(root / "train.jsonl", [write_dialogue(root / "d0", dialogue(0))])
    assert main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level:nofp"]) == 1
    assert "has no fingerprint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["data", "encode", str(root), "--jobs", "0"])
    assert stop.value.code == 2 and "argument --jobs: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["data", "encode", str(root), "--codec", "bogus"]) == 1  # (the option the user typed, named)
    assert "--codec: unknown codec spec 'bogus'" in capsys.readouterr().err
    assert main(["data", "encode", str(root), "--tokenizer", str(tmp_path / "no.model")]) == 1
    assert "--tokenizer: " in capsys.readouterr().err
    for n in ("99", "0"):
        assert main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level", "--codebooks", n]) == 1
        assert f"--codebooks {n}: codec 'level' refuses it (num_codebooks must be an int in [1, 8]" in capsys.readouterr().err
    assert not (root / "d0" / CODES).exists()


def test_the_temporaries_a_killed_run_left_in_the_dialogue_folders_are_removed(tmp_path, plugin, capsys):
    """A run killed outright (SIGKILL) leaves .codes.npz.RANDOM.tmp in the folders it was encoding:
    the next run removes those an hour old there, and says so on stderr; a fresh one, a user's
    look-alikes, and the manifest's folder (encode writes nothing there) are left (was: never)."""
    from ._stale import check_swept, plant

    root = tmp_path / "set"
    folders = [write_dialogue(root / f"d{i}", dialogue(i)) for i in range(2)]
    write_manifest(root / "train.jsonl", folders)
    stale, kept = plant(folders[0], CODES)
    more, keep = plant(folders[1], "dialogue.json")  # (kame data synth's, killed: a dialogue folder's too)
    old, others = plant(root, "train.jsonl")  # (all kept: not where encode writes)
    assert main(["--plugin", plugin, "data", "encode", str(root), "--codec", "level", "--jobs", "1"]) == 0
    check_swept("kame data encode", stale + more, kept + keep + old + others, capsys.readouterr().err)


def _gated_run(tmp_path, plugin, codec: str):
    """`kame data encode --jobs 2` of 8 dialogues in its own session, the codec ``codec`` (gate,
    gate-init) holding each worker until the test's go: (process, gate folder, the workers' pids); its
    stdout and stderr go to files in tmp_path (workers left running would hold a pipe open)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = tmp_path / "set"
    write_manifest(root / "train.jsonl", [write_dialogue(root / f"d{i}", dialogue(i)) for i in range(8)])
    gate = tmp_path / "gate"
    gate.mkdir()
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "KAME_TEST_GATE": str(gate), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "kame", "--plugin", plugin, "data", "encode", str(root),
                                 "--codec", codec, "--jobs", "2"], cwd=repo, env=env, stdout=out, stderr=err,
                                start_new_session=True,
                                preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT,
                                                                                              signal.SIGTERM)])
    deadline = time.monotonic() + 300  # (a bound for a stuck run, not a timing check)
    while len(list(gate.glob("started-*"))) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the workers did not start: {(tmp_path / 'err').read_text()}")
        time.sleep(0.05)
    return proc, gate, [int(f.name.split("-")[1]) for f in gate.glob("started-*")]


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _end(pids) -> None:
    import os
    import signal

    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _said_and_written(tmp_path, err: str) -> tuple[int, int]:
    """(the N of "N of 8 dialogues encoded" in ``err``, the codes.npz of the gated run's set)."""
    import re

    said = re.search(r"(\d+) of 8 dialogues encoded", err)
    assert said, err
    return int(said[1]), sum((tmp_path / "set" / f"d{i}" / CODES).is_file() for i in range(8))


def test_sigterm_stops_the_pool_as_ctrl_c_does_and_exits_143(tmp_path, plugin):
    """`kill PID` of a `kame data encode --jobs N`: the dialogues not handed to a worker dropped,
    those handed to one finished, the workers ended with it, exit 143 and a line saying so (was:
    killed by the signal, its workers left running and encoding, ~265 MB each), whose count is the
    codes.npz written (was: "0 of 8", those finished after the signal left out)."""
    import signal

    proc, gate, workers = _gated_run(tmp_path, plugin, "level:gate")
    try:
        proc.send_signal(signal.SIGTERM)
        (gate / "go").touch()
        proc.wait(timeout=300)
        err = (tmp_path / "err").read_text()
        assert proc.returncode == 143, err
        assert "terminated (SIGTERM): " in err and " of 8 dialogues encoded" in err, err
        assert "Traceback" not in err and not any(map(_alive, workers))
        said, written = _said_and_written(tmp_path, err)
        # (the 2 gated ones at least: begun before it; how many more the workers were handed and finished
        # before the command stopped the pool depends on when it handled the signal: was checked as < 8,
        # which a loaded machine broke, the pool finishing all 8 first)
        assert written >= 2 and said == written, err
        assert ("run the same command again to go on" in err) == (said < 8), err  # (else: "(all of them)")
    finally:
        _end(workers)


def test_the_workers_end_with_a_command_killed_outright(tmp_path, plugin):
    """SIGKILL to the command (no handler runs): its workers see it gone and end (was: they kept
    running, waiting on their queue forever)."""
    import time

    proc, gate, workers = _gated_run(tmp_path, plugin, "level:gate")
    try:
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 120  # (a bound for the check, not a timing check)
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, workers))
    finally:
        _end(workers)


def test_ctrl_c_while_the_workers_start_is_one_line_not_a_traceback_per_worker(tmp_path, plugin):
    """The terminal's Ctrl-C reaches the whole process group: the workers ignore it (the command
    stops the pool), so it ends with exit 130 and "interrupted: K of N dialogues encoded" (was: an
    "Exception in initializer" traceback per worker, and no line saying the run was cut short), K
    the codes.npz written (was: 0, those handed to the workers before it left out)."""
    import os
    import signal

    proc, gate, workers = _gated_run(tmp_path, plugin, "level:gate-init")
    try:
        os.killpg(proc.pid, signal.SIGINT)
        (gate / "go").touch()
        proc.wait(timeout=300)
        err = (tmp_path / "err").read_text()
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "interrupted: " in err and " of 8 dialogues encoded" in err, err
        said, written = _said_and_written(tmp_path, err)
        assert said == written, err
    finally:
        _end(workers)


def test_each_dialogue_is_read_once_before_the_encoding(tmp_path, plugin, monkeypatch, capsys):
    """The cache check and the oracle check share one read of a dialogue (was: a stale cache's
    dialogue read twice, then again by the worker, which reads its samples)."""
    from kame.train import batching, data

    root = tmp_path / "set"
    write_manifest(root / "train.jsonl", [write_dialogue(root / f"d{i}", dialogue(i)) for i in range(2)])
    args = ["--plugin", plugin, "data", "encode", str(root), "--codec", "level", "--jobs", "1"]
    assert main(args + ["--codebooks", "4"]) == 0
    reads, real = [], data.read_dialogue

    def counted(folder, *a, **kw):
        reads.append((str(folder), kw.get("audio", True)))
        return real(folder, *a, **kw)

    monkeypatch.setattr(data, "read_dialogue", counted)
    monkeypatch.setattr(batching, "read_dialogue", counted)
    assert main(args) == 0  # (another codebook count: every cache stale, each dialogue encoded again)
    assert "| 2 | 0 | 2 | 0 |" in capsys.readouterr().out
    assert sorted(reads) == sorted((str(root / f"d{i}"), audio) for i in range(2) for audio in (False, True))
