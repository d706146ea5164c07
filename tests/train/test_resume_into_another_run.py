"""`kame train --resume CKPT -o OUT`: OUT must be empty or new, or CKPT's own run folder; one that
holds another run's checkpoints is refused, naming both folders (was: its step-N of the same numbers
and its latest silently replaced by this run's), unless --overwrite, which then removes them first
as for a new run; --overwrite with a CKPT inside OUT is refused (it would remove what is resumed)."""

from __future__ import annotations

import json

from kame.cli import main as cli_main

from .test_finetune import _data

FAST = ["--codec", "fake", "--window", "16", "--batch-size", "2", "--warmup", "1", "--log-every", "1"]


def _lr(step):
    return json.loads((step / "config.json").read_text())["kame"]["train"]["config"]["lr"]


def test_a_resume_into_another_runs_folder_is_refused_unless_overwrite(tmp_path, capsys, fake_codec):
    manifest = str(_data(tmp_path / "data"))
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli_main(["train", manifest, "-o", str(a), "--steps", "2", "--save-every", "1", *FAST]) == 0
    assert cli_main(["train", manifest, "-o", str(b), "--steps", "2", "--lr", "1e-3", *FAST]) == 0
    weights = (b / "step-2" / "model.safetensors").read_bytes()
    capsys.readouterr()

    # A's step-1 resumed into B's folder: refused, B's checkpoints untouched
    assert cli_main(["train", manifest, "-o", str(b), "--steps", "2", "--resume", str(a / "step-1"), *FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kame: error: train: ") and "Traceback" not in err, err
    assert f"-o {b} holds files already" in err and f"Give -o {a} " in err and "--overwrite" in err, err
    assert (b / "step-2" / "model.safetensors").read_bytes() == weights and _lr(b / "latest") == 1e-3

    # --overwrite with the resumed checkpoint inside OUT: refused, nothing removed
    assert cli_main(["train", manifest, "-o", str(a), "--steps", "2", "--resume", str(a / "latest"), "--overwrite",
                     *FAST]) == 1
    err = capsys.readouterr().err
    assert f"--resume {a / 'latest'} is inside -o {a}" in err and "drop --overwrite" in err, err
    assert sorted(p.name for p in a.iterdir()) == ["latest", "step-1", "step-2"]

    # its own folder: goes on there (a step saved again is replaced)
    assert cli_main(["train", manifest, "-o", str(a), "--steps", "2", "--resume", str(a / "step-1"), *FAST]) == 0
    rec = json.loads((a / "latest" / "config.json").read_text())["kame"]["train"]
    assert rec["resumed_from"] == str((a / "step-1").resolve())

    # --overwrite: B's checkpoints removed first, then the resumed run saves there
    assert cli_main(["train", manifest, "-o", str(b), "--steps", "2", "--resume", str(a / "step-1"), "--overwrite",
                     *FAST]) == 0
    assert sorted(p.name for p in b.iterdir()) == ["latest", "step-2"] and _lr(b / "latest") == _lr(a / "latest")
