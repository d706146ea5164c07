"""SIGTERM during `kame train` (docker stop, a scheduler's preemption, `timeout`, torchrun stopping
its workers) stops it as Ctrl-C does: the step, the last checkpoint and the --resume to give, exit
143 (was: killed at once, nothing said, a batch log ending mid-table); SIGTERM's handler is given
back at the end (kame.runtime.signals.handling). One whose KeyboardInterrupt is lost (it came in a
finalizer) is recorded and still stops the run; a resumed run stopped before its first save names
the checkpoint it resumed, also when OUT/latest points at a newer step it went back from."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from kame.cli import main as cli_main

from .test_finetune import PLUGIN, ROOT, _data

FAST = ["--codec", "fake", "--window", "16", "--batch-size", "2", "--warmup", "1", "--log-every", "1"]


class Killed(Exception):
    """What the test's own SIGTERM handler raises: kame train did not handle the signal."""


def _fallback(signum, frame):
    raise Killed


class _Dies:
    """An object whose finalizer sends the SIGTERM."""


def _sigterm(lost: bool) -> None:
    """A SIGTERM to this process; ``lost``: sent by a finalizer, in which its handler's KeyboardInterrupt
    is only reported ("Exception ignored in"), as where one comes while importlib runs one at an import's end."""
    if lost:
        weakref.finalize(_Dies(), os.kill, os.getpid(), signal.SIGTERM)  # (the object is gone at once)
    else:
        os.kill(os.getpid(), signal.SIGTERM)


def _train(manifest, out, *options, calls_to=None, at=1, lost=False):
    """kame train with a SIGTERM at the ``at``-th call of ``calls_to`` ((module, name)), with the test's
    own SIGTERM handler around it (it must be given back): its exit status."""
    target, name = calls_to
    real, calls = getattr(target, name), []

    def terminated(*a, **k):
        calls.append(1)
        if len(calls) == at:
            _sigterm(lost)
        return real(*a, **k)

    previous = signal.signal(signal.SIGTERM, _fallback)
    try:
        setattr(target, name, terminated)
        try:
            rc = cli_main(["train", str(manifest), "-o", str(out), *options, *FAST])
        finally:
            setattr(target, name, real)
        assert signal.getsignal(signal.SIGTERM) is _fallback  # (given back)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return rc


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (lost: "Exception ignored")
@pytest.mark.parametrize("lost", [False, True], ids=["", "lost"])
@pytest.mark.parametrize("when", ["training", "loading", "the last step"])
def test_sigterm_stops_the_run_as_ctrl_c_with_status_143(tmp_path, capsys, fake_codec, when, lost):
    """(lost: was the run going on to its end, exit 0, nothing said; lost in the last step: said, and
    0 still, since the run finished and saved)"""
    import kame.train.finetune as finetune
    import kame.train.loss as loss_mod

    manifest, out = _data(tmp_path / "data"), tmp_path / "o"
    # (the 3rd forward: after step 2's save; or while the examples load)
    calls_to = (finetune, "load_examples") if when == "loading" else (loss_mod, "frontend_loss")
    steps = "3" if when == "the last step" else "10"
    rc = _train(manifest, out, "--steps", steps, "--save-every", "2", calls_to=calls_to,
                at=1 if when == "loading" else 3, lost=lost)
    assert rc == (0 if when == "the last step" and lost else 143)  # (finished and saved: 0; was: 143)
    err = capsys.readouterr().err
    if when == "loading":
        said = "kame train: terminated (SIGTERM) before training began; nothing saved"
    elif when == "training":  # (lost: noticed once the step under way is done)
        said = f"terminated (SIGTERM) at step {3 if lost else 2}; last checkpoint {out / 'step-2'}; resume with " \
               f"--resume {out / 'latest'}"
    elif lost:
        said = f"kame train: terminated (SIGTERM) as training ended at step 3; its last checkpoint {out / 'step-3'} " \
               f"is saved"
    else:
        said = f"terminated (SIGTERM) at step 2; last checkpoint {out / 'step-2'}; resume with --resume {out / 'latest'}"
    assert said in err and "Traceback" not in err, err


def test_a_resumed_run_stopped_before_its_first_save_names_the_checkpoint_it_resumed(tmp_path, capsys, fake_codec):
    """(was: "no checkpoint written yet", though the checkpoint resumed can be resumed again)"""
    import kame.train.loss as loss_mod

    manifest, a = _data(tmp_path / "data"), tmp_path / "a"
    assert cli_main(["train", str(manifest), "-o", str(a), "--steps", "2", "--save-every", "1", *FAST]) == 0
    capsys.readouterr()
    rc = _train(manifest, tmp_path / "f", "--resume", str(a / "step-1"), "--steps", "10", "--save-every", "5",
                calls_to=(loss_mod, "frontend_loss"), at=2)
    assert rc == 143
    err = capsys.readouterr().err
    assert f"kame train: terminated (SIGTERM) at step 2; no checkpoint written by this run yet: resume again with " \
           f"--resume {a / 'step-1'}" in err, err


def test_a_run_that_went_back_and_saved_nothing_names_the_checkpoint_it_resumed_not_latest(tmp_path, capsys,
                                                                                             fake_codec):
    """Resumed in its own OUT from a step older than OUT/latest, stopped before its first save: OUT/latest
    still points at the newer step-N it went back from (was: named as the checkpoint to resume)."""
    import kame.train.loss as loss_mod

    manifest, out = _data(tmp_path / "data"), tmp_path / "o"
    assert cli_main(["train", str(manifest), "-o", str(out), "--steps", "4", "--save-every", "2", *FAST]) == 0
    capsys.readouterr()
    rc = _train(manifest, out, "--resume", str(out / "step-2"), "--steps", "10", "--save-every", "5",
                calls_to=(loss_mod, "frontend_loss"), at=2)
    assert rc == 143
    err = capsys.readouterr().err
    assert f"kame train: terminated (SIGTERM) at step 3; no checkpoint written by this run yet: resume again with " \
           f"--resume {out / 'step-2'}" in err, err
    assert (out / "latest").resolve() == (out / "step-4").resolve()  # (the step it went back from)


def test_a_sigterm_to_the_kame_train_process(tmp_path):
    """The command as a scheduler stops it: a real SIGTERM once a checkpoint is saved."""
    manifest = _data(tmp_path / "data")
    plugin = tmp_path / "fake_codec.py"
    plugin.write_text(PLUGIN.format(fakes=str(Path(__file__).parent)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "kame.cli", "--plugin", str(plugin), "train", str(manifest), "-o", str(out),
           "--steps", "100000", "--save-every", "1", *FAST]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in p.stdout:
            if line.startswith("saved "):
                p.send_signal(signal.SIGTERM)
                break
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 143, err
    assert "kame train: terminated (SIGTERM) at step " in err and f"resume with --resume {out / 'latest'}" in err, err


@pytest.mark.parametrize("world", ["1", "2"])
def test_under_torchrun_sigterm_keeps_ending_a_process_at_once(monkeypatch, world):
    """torchrun sends SIGTERM to every worker when it stops them: one waiting in a collective for a
    worker that stopped first could not run a Python handler until torchrun's SIGKILL, 30 s later
    (seen: a rank blocked in a gloo all-reduce with its peer stopped), so under torchrun (WORLD_SIZE
    > 1) SIGTERM's handler is left as it was."""
    import kame.train.finetune as finetune

    seen = []
    monkeypatch.setenv("WORLD_SIZE", world)
    monkeypatch.setattr(finetune, "run", lambda args, **kw: seen.append(signal.getsignal(signal.SIGTERM)))
    previous = signal.signal(signal.SIGTERM, _fallback)
    try:
        assert finetune.main(None) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (seen[0] is _fallback) == (world == "2"), seen
