"""codec.spec "auto" for a kame train checkpoint recorded as the shipped embedded fit (`embedded`
+ its sha256), run by a kame that ships another fit: the copy of the fit the checkpoint carries
(embedded_codec.safetensors in its folder, kame.train.checkpoint.portable_codec) runs it when its
sha256 is the recorded one, said in one log line (was: refused, naming both sha256); refused as
before when neither is."""

from __future__ import annotations

import json
import logging
import shutil
from types import SimpleNamespace

import pytest

from kame import registry
from kame.codec.embedded import load, model, save
from kame.config import frontend_spec_form
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend
from kame.runtime.loading import check_fingerprint, recorded_codec
from kame.train.checkpoint import save_checkpoint
from kame.train.config import TrainConfig


@pytest.fixture
def trained(tmp_path):
    """A kame train checkpoint of the shipped fit -> (its folder, the recorded sha256)."""
    man = tmp_path / "train.jsonl"
    man.write_text("")
    codec = registry.create("codec", "embedded")
    net, _ = load_frontend("random:tiny", card=codec.cardinality, text_card=4000)
    folder = save_checkpoint(net, net.state_dict(), {}, tmp_path / "out", 1, TrainConfig(), man, "0" * 64,
                             codec_spec="embedded", tokenizer_spec="default", codec=codec)
    kame = json.loads((folder / "config.json").read_text())["kame"]
    assert kame["codec"] == "embedded" and (folder / "embedded_codec.safetensors").is_file()
    return folder, kame["codec_sha256"]


def _ship_another_fit(tmp_path, monkeypatch) -> str:
    """This kame ships another fit than the one the checkpoint was trained with -> its sha256."""
    other = tmp_path / "later" / model.DEFAULT_PATH.name
    other.parent.mkdir()
    later = save(load(), other, meta={"note": "a later kame's fit"})
    monkeypatch.setattr(model, "DEFAULT_PATH", other)
    monkeypatch.setattr(model, "DEFAULT_SHA256", later)
    return later


def _auto_codec(folder):
    """codec.spec "auto" as kame run chooses it for ``folder`` (kame.runtime.frontend's check before
    the weights load: recorded_codec, then check_fingerprint) -> (codec, its spec)."""
    kame = json.loads((folder / "config.json").read_text())["kame"]
    finfo = SimpleNamespace(kame=kame, mimi=None, config=SimpleNamespace(meta={"kame": kame}))
    codec, cspec = recorded_codec(kame["codec"], str(folder), frontend_spec_form(str(folder)), finfo)
    check_fingerprint(codec, cspec, finfo, str(folder))
    return codec, cspec


def test_the_checkpoints_copy_of_the_fit_runs_it_when_kame_ships_another(trained, tmp_path, monkeypatch, caplog):
    folder, want = trained
    later = _ship_another_fit(tmp_path, monkeypatch)
    assert later != want
    with caplog.at_level(logging.INFO, logger="kame.runtime.frontend"):
        codec, cspec = _auto_codec(folder)
    assert codec.fingerprint == want and cspec == f"embedded:{(folder / 'embedded_codec.safetensors').absolute()}"
    said = [r.getMessage() for r in caplog.records if "ships another" in r.getMessage()]
    assert len(said) == 1 and want in said[0] and later in said[0] and "embedded_codec.safetensors" in said[0], said


@pytest.mark.parametrize("copy", ["another fit", "none"])
def test_without_a_matching_copy_it_is_refused_naming_both_sha256(trained, tmp_path, monkeypatch, copy):
    folder, want = trained
    later = _ship_another_fit(tmp_path, monkeypatch)
    carried = folder / "embedded_codec.safetensors"
    carried.unlink()  # (a hard link to the run's first copy: unlinked, not written through)
    if copy == "another fit":
        shutil.copyfile(model.DEFAULT_PATH, carried)
    with pytest.raises(CheckpointError, match=rf"trained with the codec 'embedded' of sha256 {want} .*but codec "
                                              rf"'embedded' has sha256 {later}"):
        _auto_codec(folder)
