"""An embedded codec fit of another format says which kame is newer (an older file: refit it; a
newer one: upgrade kame), and a fit whose frames are not 80 ms at 24 kHz is refused for a
front-end (was: a 16 kHz fit's 1920-sample frames taken for 80 ms ones)."""

from __future__ import annotations

import pytest

from kame import registry
from kame.codec.base import fit_codec
from kame.codec.embedded import load, model
from kame.errors import CheckpointError, ConfigError
from kame.model.config import preset


def _edited(tmp_path, old: bytes, new: bytes, name: str = "fit.safetensors"):
    data = model.DEFAULT_PATH.read_bytes()
    assert len(old) == len(new) and data.count(old) == 1  # (the header keeps its length)
    path = tmp_path / name
    path.write_bytes(data.replace(old, new))
    return path


def test_a_newer_fit_says_upgrade_kame_and_an_older_one_refit(tmp_path):
    newer = _edited(tmp_path, model.FORMAT.encode(), b"kame-embedded-codec/3", "newer.safetensors")
    with pytest.raises(CheckpointError, match=r"newer.safetensors is an embedded codec file of format "
                                              r"'kame-embedded-codec/3', made by a newer kame; this one reads up to "
                                              r"'kame-embedded-codec/2': upgrade kame \(pip install -U kame-tandem\)$"):
        load(newer)
    older = _edited(tmp_path, model.FORMAT.encode(), b"kame-embedded-codec/1", "older.safetensors")
    with pytest.raises(CheckpointError, match=r"older.safetensors is an embedded codec file of format "
                                              r"'kame-embedded-codec/1', written by an older kame; this one reads "
                                              r"'kame-embedded-codec/2': refit it with `kame codec fit -o FILE`$"):
        load(older)


def test_a_fit_at_another_sample_rate_does_not_fit_a_front_end(tmp_path):
    path = _edited(tmp_path, rb'\"sample_rate\": 24000', rb'\"sample_rate\": 16000')  # (JSON in JSON)
    spec = f"embedded:{path}"
    cfg = preset("tiny")
    message = rf"codec '{spec}' has sample rate 16000 Hz, the runtime needs 24000 Hz \(frames of 1920 samples = 80 ms\)"
    with pytest.raises(ConfigError, match=message):
        fit_codec(registry.create("codec", spec), spec, cfg, "random:tiny")
    with pytest.raises(ConfigError, match=message):  # its header alone (save_frontend's check)
        fit_codec(model.layout(path), spec, cfg, "random:tiny")
    fit_codec(model.layout(), "embedded", cfg, "random:tiny")  # the shipped fit: 24 kHz
