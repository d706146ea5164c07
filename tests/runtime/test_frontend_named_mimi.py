"""codec.spec=auto for a checkpoint whose config.json names a Mimi (mimi_name) that is missing: the
published Mimi stands in only for Moshi's own file name (a published repo without its copy, as
documented; the log says so), never for another Mimi (was: silently the published one, while
--codec mimi:FOLDER refuses the same folder; a front-end trained with its own Mimi would hear
other codes)."""

from __future__ import annotations

import logging

import pytest

from .test_frontend_checkpoint import cfg, make_ck
from kame.codec.mimi import build_random, save_mimi
from kame.errors import CheckpointError
from kame.model.loaders import MIMI_NAME
from kame.runtime.frontend import load_frame_models

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def published(tmp_path, monkeypatch):
    """An offline Hugging Face cache holding the published Mimi (a tiny one under its name)."""
    import huggingface_hub.constants as hc

    repo = tmp_path / "hub" / "models--kyutai--moshiko-pytorch-bf16"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    save_mimi(build_random("tiny"), repo / "snapshots" / COMMIT / MIMI_NAME)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("named", ["my_own_mimi_v2.safetensors", "hf://other/repo/x.safetensors"])
def test_a_missing_mimi_of_its_own_is_refused(tmp_path, published, named):
    own = make_ck(tmp_path / "own", mimi=False, mimi_name=named)
    with pytest.raises(CheckpointError) as e:
        load_frame_models(cfg(own))  # (was: run with the published Mimi, no word of it)
    msg = str(e.value)
    assert e.value.config_key == "codec.spec" and f"mimi_name {named!r} was not found" in msg, msg
    assert "not Moshi's published Mimi" in msg and "codec.spec=mimi:PATH" in msg
    if not named.startswith("hf://"):
        assert str(own / named) in msg


def test_moshis_own_name_falls_back_to_the_published_mimi_and_says_so(tmp_path, published, caplog):
    caplog.set_level(logging.INFO, logger="kame.runtime.frontend")
    dflt = make_ck(tmp_path / "dflt", mimi=False, mimi_name=MIMI_NAME)
    _, info = load_frame_models(cfg(dflt))
    assert info["codec"] == "mimi"
    said = [r.getMessage() for r in caplog.records if "(mimi_name) was not found" in r.getMessage()]
    assert len(said) == 1 and str(dflt / MIMI_NAME) in said[0] and f"moshiko-pytorch-bf16/{MIMI_NAME}" in said[0]
