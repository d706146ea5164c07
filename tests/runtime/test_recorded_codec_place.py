"""Where codec.spec=auto finds the codec a checkpoint records (kame.runtime.loading.recorded_codec):
kame train's mimi:NAME is the checkpoint's own Mimi, a local folder's or an hf:// repo's, never a
file of that name in the working directory; a recorded Mimi that loads but is not of the recorded
sha256 gives way to the checkpoint's own of that sha256; another relative record is the folder's
(made absolute) first, then as given."""

from __future__ import annotations

import shutil

import pytest

from kame.backend.tokenizer import DEFAULT_MODEL
from kame.codec.mimi import build_random, save_mimi
from kame.config import load_config
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend, save_frontend
from kame.paths import file_sha256
from kame.runtime.frontend import load_frame_models

MIMI = "tokenizer-e351c8d8-checkpoint125.safetensors"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cfg(spec):
    return load_config(None, [f"frontend.spec={spec}", "backend.stt=none", "backend.llm=none"])


def trained_ck(folder, recorded=f"mimi:{MIMI}", mimi=True):
    """A checkpoint as kame train writes it: its Mimi (seed 0) inside as mimi_name, recorded as ``recorded``."""
    folder.mkdir(parents=True)
    save_mimi(build_random("tiny"), folder / MIMI)
    model, _ = load_frontend("random:tiny", card=build_random("tiny").cardinality, text_card=4000)
    shutil.copy(DEFAULT_MODEL, folder / "spm.model")
    save_frontend(model, folder, codec=recorded, codec_sha256=file_sha256(folder / MIMI), tokenizer="spm.model",
                  mimi_name=MIMI)
    if not mimi:
        (folder / MIMI).unlink()
    return folder


def other_mimi_here(folder, name=MIMI):
    """Another Mimi (seed 3) under ``name`` in ``folder`` (the working directory)."""
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    save_mimi(build_random("tiny", seed=3), folder / name)


def test_an_hf_checkpoint_runs_its_repos_own_mimi_not_the_working_directorys(tmp_path, monkeypatch):
    """(was: mimi:NAME read from the working directory for an hf:// checkpoint: another Mimi there
    of that name was refused by its sha256, the repo's own never tried)"""
    import huggingface_hub.constants as hc

    repo = tmp_path / "hub" / "models--acme--trained"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = trained_ck(repo / "snapshots" / COMMIT)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    (tmp_path / "cwd").mkdir()
    other_mimi_here(tmp_path / "cwd")
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_frame_models(cfg("hf://acme/trained"))[1]["codec"] == f"mimi:{snap / MIMI}"


def test_a_checkpoint_whose_mimi_is_gone_does_not_take_the_working_directorys(tmp_path, monkeypatch):
    """(was: a same-named Mimi in the working directory was loaded, then refused by its sha256, as
    if it were the checkpoint's)"""
    ck = trained_ck(tmp_path / "ck", mimi=False)
    (tmp_path / "cwd").mkdir()
    other_mimi_here(tmp_path / "cwd")
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(CheckpointError, match=rf"nor is its own Mimi there \(mimi_name '{MIMI}': looked for "
                                              rf"{ck / MIMI}\)") as err:
        load_frame_models(cfg(ck))
    assert str(tmp_path / "cwd") not in str(err.value)


def test_a_recorded_mimi_of_another_sha256_gives_way_to_the_checkpoints_own(tmp_path, monkeypatch):
    """(was: the fallback to the checkpoint's own Mimi only when the recorded one could not be
    loaded: one that loaded with another sha256 was refused)"""
    ck = trained_ck(tmp_path / "ck", recorded="mimi:data/trained.safetensors")  # an older, relative record
    (tmp_path / "cwd").mkdir()
    other_mimi_here(tmp_path / "cwd", "data/trained.safetensors")
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_frame_models(cfg(ck))[1]["codec"] == f"mimi:{ck / MIMI}"


def test_a_relative_record_found_in_the_folder_is_made_absolute(tmp_path, monkeypatch):
    """(was: mimi:runs/a/latest/NAME, relative to the working directory, in info['codec'])"""
    trained_ck(tmp_path / "runs" / "a", recorded="mimi:sub/m.safetensors")
    (tmp_path / "runs" / "a" / "sub").mkdir()
    shutil.copy(tmp_path / "runs" / "a" / MIMI, tmp_path / "runs" / "a" / "sub" / "m.safetensors")
    monkeypatch.chdir(tmp_path)
    assert load_frame_models(cfg("runs/a"))[1]["codec"] == f"mimi:{tmp_path / 'runs' / 'a' / 'sub' / 'm.safetensors'}"


def test_an_older_record_is_tried_as_given_when_the_folder_has_no_such_file(tmp_path, monkeypatch):
    """A record relative to where the checkpoint was trained: the folder first, then as given
    (was: 'mimi:.', which exists in every folder, never tried as given)."""
    ck = trained_ck(tmp_path / "ck", recorded="mimi:.", mimi=False)
    (tmp_path / "cwd").mkdir()
    save_mimi(build_random("tiny"), tmp_path / "cwd" / MIMI)  # a Mimi folder (the published name): the one trained with
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_frame_models(cfg(ck))[1]["codec"] == "mimi:."
