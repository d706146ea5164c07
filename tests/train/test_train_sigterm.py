"""SIGTERM during `kame train` (docker stop, a scheduler's preemption, `timeout`, torchrun stopping
its workers) stops it as Ctrl-C does: the step, the last checkpoint and the --resume to give, exit
143 (was: killed at once, nothing said, a batch log ending mid-table); SIGTERM's handler is given
back at the end (kame.runtime.signals.handling)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kame.cli import main as cli_main

from .test_finetune import PLUGIN, ROOT, _data

FAST = ["--codec", "fake", "--window", "16", "--batch-size", "2", "--warmup", "1", "--log-every", "1"]


class Killed(Exception):
    """What the test's own SIGTERM handler raises: kame train did not handle the signal."""


def _fallback(signum, frame):
    raise Killed


@pytest.mark.parametrize("when", ["training", "loading"])
def test_sigterm_stops_the_run_as_ctrl_c_with_status_143(tmp_path, capsys, monkeypatch, fake_codec, when):
    import kame.train.finetune as finetune
    import kame.train.loss as loss_mod

    manifest = _data(tmp_path / "data")
    target, name = (loss_mod, "frontend_loss") if when == "training" else (finetune, "load_examples")
    real, calls = getattr(target, name), []

    def terminated(*a, **k):  # (the 3rd forward: after step 2's save; or while the examples load)
        calls.append(1)
        if len(calls) == (3 if when == "training" else 1):
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(target, name, terminated)
    previous = signal.signal(signal.SIGTERM, _fallback)
    try:
        out = tmp_path / "o"
        rc = cli_main(["train", str(manifest), "-o", str(out), "--steps", "10", "--save-every", "2", *FAST])
        assert signal.getsignal(signal.SIGTERM) is _fallback  # (given back)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert rc == 143
    err = capsys.readouterr().err
    if when == "training":
        said = f"terminated (SIGTERM) at step 2; last checkpoint {out / 'step-2'}; resume with --resume {out / 'latest'}"
    else:
        said = "kame train: terminated (SIGTERM) before training began; nothing saved"
    assert said in err and "Traceback" not in err, err


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
    monkeypatch.setattr(finetune, "run", lambda args: seen.append(signal.getsignal(signal.SIGTERM)))
    previous = signal.signal(signal.SIGTERM, _fallback)
    try:
        assert finetune.main(None) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (seen[0] is _fallback) == (world == "2"), seen
