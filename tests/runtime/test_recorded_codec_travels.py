"""codec.spec=auto for a checkpoint that records its codec (kame.codec): a relative path is the
checkpoint folder's, and a recorded Mimi that is gone gives way to the folder's own Mimi of the
recorded sha256 (kame.runtime.loading.recorded_codec); a repo without config.json whose Mimi does
not fit Moshi 7B's card says that config was assumed."""

from __future__ import annotations

import shutil

import pytest

from kame.backend.tokenizer import DEFAULT_MODEL
from kame.codec.mimi import build_random, save_mimi
from kame.config import load_config
from kame.errors import CheckpointError, ConfigError
from kame.model.loaders import MIMI_NAME, TOKENIZER_NAME, load_frontend, save_frontend
from kame.paths import file_sha256
from kame.runtime.frontend import load_frame_models

MIMI = "mimi_tiny.safetensors"


def cfg(spec, *sets):
    return load_config(None, [f"frontend.spec={spec}", "backend.stt=none", "backend.llm=none", *sets])


def recorded_ck(folder, codec_file, spec):
    """A kame-trained checkpoint recording ``spec`` (the Mimi ``codec_file``'s sha256) as its codec,
    naming MIMI as its mimi_name (the file not put there)."""
    codec = build_random("tiny")
    model, _ = load_frontend("random:tiny", card=codec.cardinality, text_card=4000)
    folder.mkdir(parents=True)
    shutil.copy(DEFAULT_MODEL, folder / "spm.model")
    save_frontend(model, folder, codec=spec, codec_sha256=file_sha256(codec_file), tokenizer="spm.model",
                  mimi_name=MIMI)
    return folder


def test_a_recorded_mimi_that_is_gone_gives_way_to_the_folders_own_of_that_sha256(tmp_path, monkeypatch):
    """(was: 'Mimi checkpoint not found' once the recorded path was gone, the same file in the folder or not)"""
    save_mimi(build_random("tiny"), tmp_path / "trained.safetensors")
    save_mimi(build_random("tiny", seed=5), tmp_path / "other.safetensors")
    # recorded by an absolute path, or one relative to where it was trained (kame train did): both gone
    for recorded in (f"mimi:{tmp_path / 'gone' / 'trained.safetensors'}", "mimi:gone/trained.safetensors"):
        ck = recorded_ck(tmp_path / f"ck{len(recorded)}", tmp_path / "trained.safetensors", recorded)
        (tmp_path / "elsewhere").mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / "elsewhere")
        with pytest.raises(CheckpointError, match=rf"cannot be loaded: .*; nor is its own Mimi there \(mimi_name "
                                                  rf"'{MIMI}': looked for {ck / MIMI}\): put the Mimi it was trained "
                                                  rf"with there \(sha256 [0-9a-f]{{64}}\)"):
            load_frame_models(cfg(ck))
        shutil.copy(tmp_path / "other.safetensors", ck / MIMI)  # another Mimi: not taken
        with pytest.raises(CheckpointError, match=rf"its own Mimi {ck / MIMI} \(mimi_name\) has sha256 "
                                                  rf"[0-9a-f]{{64}}, not the recorded kame.codec_sha256"):
            load_frame_models(cfg(ck))
        shutil.copy(tmp_path / "trained.safetensors", ck / MIMI)  # the same file: run with it
        assert load_frame_models(cfg(ck))[1]["codec"] == f"mimi:{ck / MIMI}"


def test_a_relative_recorded_codec_is_the_checkpoint_folders(tmp_path, monkeypatch):
    """kame train records the Mimi it copies into the checkpoint as mimi:NAME: the folder's file,
    whatever the working directory holds under that name."""
    save_mimi(build_random("tiny"), tmp_path / "trained.safetensors")
    ck = recorded_ck(tmp_path / "ck", tmp_path / "trained.safetensors", f"mimi:{MIMI}")
    shutil.copy(tmp_path / "trained.safetensors", ck / MIMI)
    (tmp_path / "cwd").mkdir()
    save_mimi(build_random("tiny", seed=3), tmp_path / "cwd" / MIMI)  # another file by that name, here
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_frame_models(cfg(ck))[1]["codec"] == f"mimi:{ck / MIMI}"
    save_mimi(build_random("tiny", seed=3), ck / MIMI)  # the folder's own replaced: refused, sha256 named
    with pytest.raises(CheckpointError, match=rf"but codec 'mimi:{ck / MIMI}' has sha256"):
        load_frame_models(cfg(ck))


def test_a_repo_without_config_json_says_moshi_7b_was_assumed(tmp_path, monkeypatch):
    """(was: "its config.json and the Mimi file it names (mimi_name) do not belong together: check
    mimi_name", for a repo that has neither)"""
    import huggingface_hub.constants as hc

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--legacy"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    model, _ = load_frontend("random:tiny", card=128, text_card=4000)
    save_frontend(model, snap)
    (snap / "config.json").unlink()
    save_mimi(build_random("tiny"), snap / MIMI_NAME)
    shutil.copy(DEFAULT_MODEL, snap / TOKENIZER_NAME)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError) as err:
        load_frame_models(cfg("hf://acme/legacy"))
    msg = str(err.value)
    assert "has 128 codes per codebook, the front-end 'hf://acme/legacy' expects 2048" in msg, msg
    assert "hf://acme/legacy has no config.json" in msg and "Moshi 7B's config was assumed" in msg, msg
    assert "check mimi_name" not in msg, msg
