"""`kame train --resume CKPT -o OUT`: OUT must be empty or new, or CKPT's own run folder; one that
holds another run's checkpoints is refused, naming both folders (was: its step-N of the same numbers
and its latest silently replaced by this run's), unless --overwrite, which then removes them first
as for a new run; --overwrite with a CKPT inside OUT is refused (it would remove what is resumed).
An OUT that holds this run's later checkpoints (the same command run again, a requeued job) is
refused naming --resume OUT/latest. Refused before the front-end loads."""

from __future__ import annotations

import json

import pytest

from kame.cli import main as cli_main

from .test_finetune import _data

FAST = ["--codec", "fake", "--window", "16", "--batch-size", "2", "--warmup", "1", "--log-every", "1"]


def _lr(step):
    return json.loads((step / "config.json").read_text())["kame"]["train"]["config"]["lr"]


def test_a_resume_into_another_runs_folder_is_refused_unless_overwrite(tmp_path, capsys, fake_codec, monkeypatch):
    import kame.train.launch

    manifest = str(_data(tmp_path / "data"))
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli_main(["train", manifest, "-o", str(a), "--steps", "2", "--save-every", "1", *FAST]) == 0
    assert cli_main(["train", manifest, "-o", str(b), "--steps", "2", "--save-every", "1", "--lr", "1e-3",
                     *FAST]) == 0
    weights = (b / "step-2" / "model.safetensors").read_bytes()
    capsys.readouterr()

    # A's step-1 resumed into B's folder: refused before the front-end loads, B's checkpoints untouched
    with monkeypatch.context() as m:
        m.setattr(kame.train.launch, "load_for_training", lambda *a, **kw: pytest.fail("loaded"))
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
    assert sorted(p.name for p in a.iterdir()) == [".lock", "latest", "log.jsonl", "step-1", "step-2"]

    # its own folder: goes on there (a step saved again is replaced)
    assert cli_main(["train", manifest, "-o", str(a), "--steps", "2", "--resume", str(a / "step-1"), *FAST]) == 0
    rec = json.loads((a / "latest" / "config.json").read_text())["kame"]["train"]
    assert rec["resumed_from"] == str((a / "step-1").resolve())

    # --overwrite: B's checkpoints removed first (its step-1 too, which the resumed run does not save again),
    # then the resumed run saves there
    assert cli_main(["train", manifest, "-o", str(b), "--steps", "2", "--resume", str(a / "step-1"), "--overwrite",
                     *FAST]) == 0
    assert sorted(p.name for p in b.iterdir()) == [".lock", "latest", "log.jsonl", "step-2"] and _lr(b / "latest") == _lr(a / "latest")


def test_the_same_resume_run_again_is_told_to_go_on_from_its_own_later_checkpoints(tmp_path, capsys, fake_codec):
    """(a job `--resume A/step-1 -o C` requeued after a preemption finds C holding its steps 2 and 3: was
    refused as "another run's?", offering -o A, an empty folder, or --overwrite, which deletes them)"""
    manifest = str(_data(tmp_path / "data"))
    a, c = tmp_path / "a", tmp_path / "c"
    assert cli_main(["train", manifest, "-o", str(a), "--steps", "2", "--save-every", "1", *FAST]) == 0
    job = ["train", manifest, "--resume", str(a / "step-1"), "-o", str(c), "--save-every", "1", *FAST]
    assert cli_main([*job, "--steps", "3"]) == 0
    capsys.readouterr()
    for steps in ("4", "5"):  # (5: after a resume in C's own folder, its latest goes on from A/step-1 through it)
        assert cli_main([*job, "--steps", steps]) == 1
        err = " ".join(capsys.readouterr().err.split())
        assert f"kame: error: train: -o {c} holds this run's later checkpoints" in err, err
        assert f"go on from them with --resume {c}/latest" in err and "--overwrite" not in err, err
        assert sorted(p.name for p in c.iterdir()) == [".lock", "latest", "log.jsonl", "step-2", "step-3",
                                                         "step-4"][:int(steps) + 1]
        assert cli_main(["train", manifest, "--resume", str(c / "latest"), "-o", str(c), "--steps", steps,
                         *FAST]) == 0
        capsys.readouterr()


def test_an_out_that_is_a_file_is_refused_before_anything_loads(tmp_path):
    """(was: the front-end loaded, the data encoded and steps trained before the first save
    failed on it)"""
    from kame.errors import ConfigError
    from kame.train.checkpoint import check_out

    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_out(f, False)
