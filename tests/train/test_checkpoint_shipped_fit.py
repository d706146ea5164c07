"""A checkpoint trained on the shipped embedded codec fit carries a copy of it (recorded as
`embedded`): a later kame that ships another fit runs the checkpoint with that copy (codec.spec
auto: kame.runtime.loading.recorded_codec; embedded:COPY), and refuses it by its sha256 without
one (was: recorded as `embedded` + sha256 only, so no file to go back to)."""

from __future__ import annotations

import json
import shutil

import pytest

from kame import registry
from kame.codec.embedded import load, model, save
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend
from kame.paths import file_sha256
from kame.runtime.frontend import load_frontend_checked
from kame.train.checkpoint import save_checkpoint
from kame.train.config import TrainConfig


def test_the_shipped_fit_goes_with_the_checkpoint(tmp_path, monkeypatch):
    man = tmp_path / "train.jsonl"
    man.write_text("")
    codec = registry.create("codec", "embedded")
    net, _ = load_frontend("random:tiny", card=codec.cardinality, text_card=4000)
    out = tmp_path / "out"
    for step in (1, 2):  # (a later step links the run's copy: one file a run)
        folder = save_checkpoint(net, net.state_dict(), {}, out, step, TrainConfig(), man, "0" * 64,
                                 codec_spec="embedded", tokenizer_spec="default", codec=codec)
    kame = json.loads((folder / "config.json").read_text())["kame"]
    carried = folder / model.DEFAULT_PATH.name
    assert kame["codec"] == "embedded" and kame["codec_sha256"] == model.DEFAULT_SHA256 == file_sha256(carried)
    assert carried.stat().st_ino == (out / "step-1" / carried.name).stat().st_ino
    # a later kame ships another fit: the copy runs the checkpoint (auto, or named)
    other = tmp_path / "later" / model.DEFAULT_PATH.name
    other.parent.mkdir()
    later = save(load(), other, meta={"note": "a later kame's fit"})
    monkeypatch.setattr(model, "DEFAULT_PATH", other)
    monkeypatch.setattr(model, "DEFAULT_SHA256", later)
    shutil.rmtree(out / "step-1")
    got = load_frontend_checked(str(folder), "float32", "cpu", 0, "auto", weights=False)
    assert got[1].fingerprint == kame["codec_sha256"] and got[2] == f"embedded:{carried.absolute()}"
    got = load_frontend_checked(str(folder), "float32", "cpu", 0, f"embedded:{carried}", weights=False)
    assert got[1].fingerprint == kame["codec_sha256"]
    # without the copy, the record refuses the later kame's fit
    carried.unlink()
    with pytest.raises(CheckpointError, match=rf"trained with the codec 'embedded' of sha256 {kame['codec_sha256']}"):
        load_frontend_checked(str(folder), "float32", "cpu", 0, "auto", weights=False)
