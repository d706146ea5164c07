"""Hostile or damaged sizes in a front-end's config.json (security sweep, finding 3): sizes far above
any published checkpoint's are a ConfigError naming the key (was: dim 1e9 a torch overflow
traceback, num_layers 1e5 a hang while building the model, context 1e9 a raw allocation error in
the stepper); sizes that disagree with the weights file's header are a CheckpointError naming
config.json, the key and both values, before the model is built; a KV cache larger than the
machine is refused naming context, one taking more than half of the memory available is warned
about once. Tiny models."""

import json
import logging

import pytest
import torch

import kame.model.loaders as loaders
import kame.model.modules as modules
from kame.errors import CheckpointError, ConfigError
from kame.model.config import LMConfig, preset
from kame.model.loaders import load_frontend, save_frontend
from kame.model.stepper import Stepper

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """config.json (as a dict) and weights of a saved random:tiny front-end."""
    model, _ = load_frontend("random:tiny", seed=1)
    folder = save_frontend(model, tmp_path_factory.mktemp("ck") / "ck")
    return json.loads((folder / "config.json").read_text()), (folder / "model.safetensors").read_bytes()


def _folder(tmp_path, saved, **changes):
    raw, weights = saved
    folder = tmp_path / "h"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**raw, **changes}))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


@pytest.mark.parametrize("key, value", [
    ("dim", 10**9), ("num_layers", 10**5), ("context", 10**9), ("n_q", 1000), ("card", 10**7),
    ("text_card", 10**8), ("num_heads", 4096), ("depformer_dim", 10**6), ("depformer_num_layers", 10**4),
    ("hidden_scale", 1e6), ("depformer_dim_feedforward", 10**8), ("extra_heads_num_heads", 10**4),
])
def test_sizes_far_above_any_published_checkpoint_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"^{key}={value} is above kame's limit of \d+ for it \(published"):
        LMConfig.from_dict(preset("tiny").to_dict(), **{key: value})


def test_a_delay_or_a_weight_schedule_out_of_range_is_refused():
    delays = [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 2000]
    with pytest.raises(ConfigError, match=r"^delays entry 2000 is above kame's limit of 1024"):
        LMConfig.from_dict(preset("tiny").to_dict(), delays=delays)
    with pytest.raises(ConfigError, match=r"^depformer_weights_per_step_schedule=\[0, 0, 0, 0, 0, 0, 0, 8\]: each "
                                          r"entry .* within \[0, dep_q=8\)"):
        LMConfig.from_dict(preset("tiny").to_dict(), depformer_weights_per_step_schedule=[0] * 7 + [8])


@pytest.mark.parametrize("key, value", [("dim", 10**9), ("context", 10**9), ("num_layers", 600)])
def test_a_checkpoint_with_a_huge_size_is_a_config_error_naming_its_config_json(tmp_path, saved, key, value):
    """(was: dim, a RuntimeError "Storage size calculation overflowed"; context, a load, then the
    stepper's "tried to allocate 1024000000000 bytes"; num_layers 1e5, no return)"""
    folder = _folder(tmp_path, saved, **{key: value})
    with pytest.raises(ConfigError, match=rf"^{folder / 'config.json'}: {key}={value} is above kame's limit"):
        load_frontend(folder)


@pytest.mark.parametrize("key, value, says", [
    ("num_layers", 300, r"num_layers=300, but the file holds 2 layers \(transformer\.layers\.0\. to "
                        r"transformer\.layers\.1\.\): num_layers=2"),
    ("dim", 128, r"dim=128, but the file's text_emb\.weight has shape \(1001, 64\): dim=64"),
    ("text_card", 2000, r"text_card=2000, but the file's text_emb\.weight has shape \(1001, 64\): text_card=1000"),
    ("depformer_num_layers", 40, r"depformer_num_layers=40, but the file holds 2 depformer layers .*: "
                                 r"depformer_num_layers=2"),
    ("depformer_dim", 64, r"depformer_dim=64, but the file's depformer_in\.0\.weight has shape \(32, 64\): "
                          r"depformer_dim=32"),
])
def test_sizes_are_checked_against_the_weights_header_before_the_model_is_built(tmp_path, saved, monkeypatch,
                                                                                  key, value, says):
    folder = _folder(tmp_path, saved, **{key: value})

    def build(cfg):
        raise AssertionError("the model was built before the config was checked against the weights")

    monkeypatch.setattr(loaders, "build_meta", build)
    with pytest.raises(CheckpointError, match=rf"^{folder / 'model.safetensors'}: {folder / 'config.json'} has {says}$"):
        load_frontend(folder)


def test_a_kv_cache_larger_than_the_machine_is_refused_naming_context():
    """(was: torch's raw "can't allocate memory" RuntimeError from init_state)"""
    model, _ = load_frontend("random:tiny;context=65536")
    with pytest.raises(ConfigError, match=r"^context=65536: the KV cache of 100000 session\(s\) needs 6250\.0 GiB, "
                                          r"more than the .* GiB of cpu memory: lower the front-end's context"):
        Stepper(model, batch_size=100_000)
    assert Stepper(model, batch_size=1).state.lm.capacity == 65536


def test_a_kv_cache_taking_most_of_the_available_memory_is_warned_about_once(monkeypatch, caplog):
    """(was: allocated without a word, then the machine swapping or the OOM killer). 16 sessions of
    context 65536: 1 GiB."""
    model, _ = load_frontend("random:tiny;context=65536")
    available = [4 * 2**30]
    monkeypatch.setattr(modules, "device_memory", lambda dev: (64 * 2**30, available[0]))
    with caplog.at_level(logging.WARNING, logger="kame.model.modules"):
        modules.check_cache_memory(model, 16)  # a quarter of what is available: silent
        assert caplog.text == ""
        available[0] = 3 * 2**30 // 2
        modules.check_cache_memory(model, 16)
        modules.check_cache_memory(model, 16)  # (a second stepper of the same model: not again)
    assert caplog.messages == ["context=65536: the KV cache of 16 session(s) takes 1.0 GiB, 67% of the 1.5 GiB of "
                               "cpu memory available now: the machine may run short (lower the front-end's context, "
                               "its config.json, or the number of sessions, runtime.max_sessions)"]


def test_the_memory_figures_are_the_machines():
    total, available = modules.device_memory(torch.device("cpu"))
    assert 0 < available <= total
