"""A step-N saved again (a run resumed in its own OUT from an older step saves those numbers again)
is written into OUT/.step-N.new, then swapped in (kame.train.saving): a save stopped midway leaves
the earlier step-N whole (was: this save's weights beside the earlier train_state.pt, OUT/latest
pointing at it, a later --resume mixing two runs); one killed between its two renames is put back
by the next run (was: OUT/latest dangling); the temporary folders a stopped save leaves are removed
once an hour old, one that is the step's only copy never."""

from __future__ import annotations

import os
import shutil
import time

import pytest
import torch

from kame.cli import main as cli_main
from kame.model.loaders import load_frontend
from kame.train import saving
from kame.train.config import TrainConfig
from kame.train.checkpoint import remove_stale_temporaries
from kame.train.saving import SaveFailed, put_back_stopped_saves

from .test_finetune import _data
from .test_out_safety import CLI, _fail_on


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def run(tmp_path, fake_codec, capsys):
    """A 3-step run saving each step in OUT: (manifest, OUT, its step-3's files)."""
    manifest, out = str(_data(tmp_path / "data")), tmp_path / "o"
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "3", "--save-every", "1", *CLI]) == 0
    capsys.readouterr()
    return manifest, out, _files(out / "step-3")


def test_a_stopped_re_save_leaves_the_earlier_step_whole(run, capsys, monkeypatch):
    manifest, out, before = run
    # resumed from step-1: step-2 saved again, then Ctrl-C while step-3's training state is written
    monkeypatch.setattr(torch, "save", _fail_on(2, KeyboardInterrupt())(torch.save))
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "3", "--save-every", "1",
                     "--resume", str(out / "step-1"), *CLI]) == 130
    err = capsys.readouterr().err
    assert f"interrupted at step 3; last checkpoint {out / 'step-2'}; resume with --resume {out / 'latest'}" in err
    assert _files(out / "step-3") == before  # (was: this run's weights beside the earlier train_state.pt)
    assert (out / "latest").resolve() == (out / "step-2").resolve()
    assert not [p for p in out.iterdir() if p.name.startswith(".step-")]


def test_a_failed_second_rename_puts_the_earlier_step_back(run, monkeypatch):
    manifest, out, before = run
    replace = os.replace

    def refused(src, dst):  # (the new folder cannot be renamed in: e.g. a file open in it, on Windows)
        if os.path.basename(src) == ".step-3.new":
            raise PermissionError(13, "Access is denied", str(src))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", refused)
    model = load_frontend(out / "step-3")[0]
    with pytest.raises(SaveFailed, match="cannot save step 3: .*Access is denied; nothing of it is kept"):
        saving.save_checkpoint(model, model.state_dict(), {}, out, 3, TrainConfig(), manifest, "0" * 64,
                               codec_spec="embedded", tokenizer_spec="default")
    assert _files(out / "step-3") == before
    assert not [p for p in out.iterdir() if p.name.startswith(".step-")]


def test_a_save_killed_between_its_renames_is_put_back_by_the_next_run(run, capsys):
    manifest, out, before = run
    # SIGKILL after step-3 was renamed aside, before the new one was renamed in: OUT/latest dangles
    os.rename(out / "step-3", out / ".step-3.old")
    shutil.copytree(out / "step-2", out / ".step-3.new")
    assert not (out / "latest").exists()
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "4", "--save-every", "1",
                     "--resume", str(out / "latest"), *CLI]) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert f"warning: put {out / 'step-3'} back as it was: a save of it was killed between its two renames" in said
    assert _files(out / "step-3") == before and not (out / ".step-3.old").exists()
    rec = load_frontend(out / "latest")[1].kame["train"]
    assert rec["step"] == 4 and rec["resumed_from"] == str((out / "step-3").resolve())
    assert (out / ".step-3.new").is_dir()  # (the killed save's files: removed once an hour old)


def test_the_temporary_folders_of_a_stopped_save_are_removed_an_hour_old_and_a_lone_old_one_never(tmp_path):
    out = tmp_path / "o"
    for name in ("step-3", ".step-3.old", ".step-4.old", ".step-5.new", ".step-6.new"):
        (out / name).mkdir(parents=True)
        (out / name / "model.safetensors").write_bytes(b"x" * 10)
    hour_ago = time.time() - 3700
    for p in out.rglob("*"):
        if ".step-6.new" not in str(p):  # (a save under way)
            os.utime(p, (hour_ago, hour_ago))
    removed = remove_stale_temporaries(out)
    assert sorted(removed) == [(out / ".step-3.old", 10), (out / ".step-5.new", 10)]
    assert (out / ".step-4.old").is_dir() and (out / ".step-6.new").is_dir()  # (step-4's only copy; one fresh)
    assert put_back_stopped_saves(out) == [out / "step-4"] and (out / "step-4" / "model.safetensors").is_file()
    assert put_back_stopped_saves(out) == [] and sorted(p.name for p in out.iterdir()) == [
        ".step-6.new", "step-3", "step-4"]
