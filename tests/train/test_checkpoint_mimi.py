"""The Mimi a kame train checkpoint carries (kame.train.checkpoint): copied once a run when its
source is on another file system (later saves link the run's own copy), and never under the name
of another of the checkpoint's files (its weights, tokenizer, config.json, training state)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import torch

from kame import registry
from kame.backend.tokenizer import DEFAULT_MODEL
from kame.codec.mimi import build_random, save_mimi
from kame.config import load_config
from kame.errors import CheckpointError, ConfigError
from kame.model.loaders import load_frontend, save_frontend
from kame.paths import file_sha256
from kame.runtime.frontend import load_frame_models
from kame.train.checkpoint import save_checkpoint
from kame.train.config import TrainConfig

MIMI = "tokenizer-e351c8d8-checkpoint125.safetensors"


def _save(tmp_path, src, step, tok="default", out="out"):
    codec = registry.create("codec", f"mimi:{src}")
    torch.manual_seed(0)
    model, _ = load_frontend("random:tiny", card=codec.cardinality, text_card=4000)
    man = tmp_path / "train.jsonl"
    man.write_text("")
    return save_checkpoint(model, model.state_dict(), {}, tmp_path / out, step, TrainConfig(), man, "0" * 64,
                           codec_spec=f"mimi:{src}", tokenizer_spec=tok, codec=codec)


def test_a_mimi_on_another_file_system_is_copied_once_a_run(tmp_path, monkeypatch):
    """(was: os.link from the source failed (EXDEV) at every save, so every step-N held a full copy)"""
    src = tmp_path / "src" / MIMI
    src.parent.mkdir()
    save_mimi(build_random("tiny"), src)
    link = os.link

    def cross_device(a, b, *args, **kw):  # the source on another file system: it cannot be linked
        if os.path.samefile(a, src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return link(a, b, *args, **kw)

    monkeypatch.setattr(os, "link", cross_device)
    folders = [_save(tmp_path, src, step) for step in (1, 2, 3)]
    inodes = {(f / MIMI).stat().st_ino for f in folders}
    assert len(inodes) == 1 and src.stat().st_ino not in inodes, inodes  # one copy, the run's
    assert file_sha256(folders[2] / MIMI) == file_sha256(src)


def test_a_copy_of_another_content_in_latest_is_not_linked(tmp_path, monkeypatch):
    """The run's earlier copy is taken only when it is the same file (by its sha256)."""
    src = tmp_path / "src" / MIMI
    src.parent.mkdir()
    save_mimi(build_random("tiny"), src)
    first = _save(tmp_path, src, 1)
    os.unlink(first / MIMI)
    save_mimi(build_random("tiny", seed=4), first / MIMI)  # (another Mimi there since, of the same size)
    monkeypatch.setattr(os, "link", lambda a, b, *x, **k: shutil.copyfile(a, b))
    assert file_sha256(_save(tmp_path, src, 2) / MIMI) == file_sha256(src)


def test_a_mimi_named_as_another_checkpoint_file_gets_its_own_name(tmp_path, monkeypatch):
    """(was: a Mimi named model.safetensors was overwritten by the LM weights, and config.json said
    mimi_name: model.safetensors: the checkpoint could not be loaded)"""
    src = tmp_path / "src" / "model.safetensors"  # (the LM weights' name)
    src.parent.mkdir()
    save_mimi(build_random("tiny"), src)
    shutil.copy(DEFAULT_MODEL, tmp_path / "spm.model")
    monkeypatch.chdir(tmp_path)
    folder = _save(tmp_path, src, 1, tok="spm.model")
    raw = json.loads((folder / "config.json").read_text())
    mimi_name = raw["mimi_name"]
    assert mimi_name == f"mimi-{file_sha256(src)[:8]}.safetensors", raw
    assert raw["kame"]["codec"] == f"mimi:{mimi_name}"
    assert file_sha256(folder / mimi_name) == file_sha256(src)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(None, [f"frontend.spec={folder}", "backend.stt=none", "backend.llm=none"])
    assert load_frame_models(cfg)[1]["codec"] == f"mimi:{folder / mimi_name}"


def test_an_embedded_codecs_own_fit_goes_into_the_checkpoint(tmp_path, monkeypatch):
    """(was: embedded:PATH recorded by its absolute path, not copied: the checkpoint broke once the
    fit was moved or deleted, or on another machine); the shipped fit is recorded as `embedded`."""
    from kame.codec.embedded.model import DEFAULT_PATH

    fit = tmp_path / "fits" / "fit.safetensors"
    fit.parent.mkdir()
    shutil.copy(DEFAULT_PATH, fit)
    man = tmp_path / "train.jsonl"
    man.write_text("")
    monkeypatch.chdir(tmp_path)
    for spec, recorded in ((f"embedded:{DEFAULT_PATH}", "embedded"), ("embedded:fits/fit.safetensors",
                                                                       "embedded:fit.safetensors")):
        codec = registry.create("codec", spec)
        model, _ = load_frontend("random:tiny", card=codec.cardinality, text_card=4000)
        folder = save_checkpoint(model, model.state_dict(), {}, tmp_path / "out", 1, TrainConfig(), man, "0" * 64,
                                 codec_spec=spec, tokenizer_spec="default", codec=codec)
        raw = json.loads((folder / "config.json").read_text())
        assert raw["kame"]["codec"] == recorded and "mimi_name" not in raw, raw
    assert file_sha256(folder / "fit.safetensors") == file_sha256(fit) == raw["kame"]["codec_sha256"]
    shutil.rmtree(tmp_path / "fits")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(None, [f"frontend.spec={folder}", "backend.stt=none", "backend.llm=none"])
    assert load_frame_models(cfg)[1]["codec"] == f"embedded:{folder / 'fit.safetensors'}"


def _decoy_fit(path, codebooks=4):
    """A fit of the shipped one's tensors whose header says ``codebooks`` codebooks (not the model's 8)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from kame.codec.embedded.model import DEFAULT_PATH

    with safe_open(str(DEFAULT_PATH), "np") as f:
        kame = json.loads(f.metadata()["kame"])
    kame["config"]["num_codebooks"] = codebooks
    save_file(load_file(str(DEFAULT_PATH)), str(path), metadata={"kame": json.dumps(kame)})


def test_a_carried_fit_is_checked_in_the_checkpoint_not_the_working_directory(tmp_path, monkeypatch):
    """(was: save_frontend checked embedded:NAME against a file NAME in the working directory: a
    different fit of that name there refused the step after training; none there, nothing checked)"""
    from kame.codec.embedded.model import DEFAULT_PATH

    fit = tmp_path / "fits" / "fit.safetensors"
    fit.parent.mkdir()
    shutil.copy(DEFAULT_PATH, fit)
    _decoy_fit(tmp_path / "fit.safetensors")  # (the working directory's: another fit of that name)
    man = tmp_path / "train.jsonl"
    man.write_text("")
    monkeypatch.chdir(tmp_path)
    codec = registry.create("codec", "embedded:fits/fit.safetensors")
    model, _ = load_frontend("random:tiny", card=codec.cardinality, text_card=4000)
    folder = save_checkpoint(model, model.state_dict(), {}, tmp_path / "out", 1, TrainConfig(), man, "0" * 64,
                             codec_spec="embedded:fits/fit.safetensors", tokenizer_spec="default", codec=codec)
    raw = json.loads((folder / "config.json").read_text())
    assert raw["kame"] == {**raw["kame"], "codec": "embedded:fit.safetensors", "codec_sha256": file_sha256(fit)}
    # the checkpoint's own fit is the one checked: a good one of that name in the working
    # directory, a decoy only in the folder (review238 finding 6: through save_checkpoint the
    # working directory's decoy was copied into the folder, so the old code refused it too)
    shutil.copy(fit, tmp_path / "fit.safetensors")
    _decoy_fit(folder / "fit.safetensors")
    with pytest.raises(ConfigError, match=r"codec 'embedded:fit.safetensors' holds 4 codebooks"):
        save_frontend(model, folder, codec="embedded:fit.safetensors", codec_sha256=file_sha256(fit),
                      tokenizer="default")


def test_a_carried_fit_missing_from_the_checkpoint_is_not_taken_from_the_working_directory(tmp_path, monkeypatch):
    """(was: codec.spec=auto loaded embedded:NAME from the working directory when the checkpoint
    folder had no such file)"""
    from kame.codec.embedded.model import DEFAULT_PATH

    folder = tmp_path / "ck"
    folder.mkdir()
    shutil.copy(DEFAULT_PATH, folder / "fit.safetensors")
    model, _ = load_frontend("random:tiny", card=registry.create("codec", "embedded").cardinality, text_card=4000)
    save_frontend(model, folder, codec="embedded:fit.safetensors", tokenizer="default")
    (folder / "fit.safetensors").rename(tmp_path / "fit.safetensors")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [f"frontend.spec={folder}", "backend.stt=none", "backend.llm=none"])
    with pytest.raises(CheckpointError, match=rf"not found: {folder / 'fit.safetensors'}"):
        load_frame_models(cfg)


def test_a_step_saved_again_does_not_copy_its_mimi_again(tmp_path, monkeypatch):
    """(was: saving step N again, OUT/latest being step-N, copied the Mimi from a source on another
    file system once more)"""
    src = tmp_path / "src" / MIMI
    src.parent.mkdir()
    save_mimi(build_random("tiny"), src)
    copies = []
    link, copyfile = os.link, shutil.copyfile

    def cross_device(a, b, *args, **kw):
        if os.path.samefile(a, src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return link(a, b, *args, **kw)

    monkeypatch.setattr(os, "link", cross_device)
    monkeypatch.setattr(shutil, "copyfile", lambda a, b, *x, **k: copies.append(a) or copyfile(a, b, *x, **k))
    first = _save(tmp_path, src, 1)
    again = _save(tmp_path, src, 1)
    assert [c for c in copies if os.path.samefile(c, src)] == [src], copies  # one copy, at the first save
    assert file_sha256(again / MIMI) == file_sha256(src) and first == again
