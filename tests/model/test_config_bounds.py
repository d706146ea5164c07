"""Hostile or damaged sizes in a front-end's config.json (security sweep, finding 3): sizes far above
any published checkpoint's are a ConfigError naming the key (was: dim 1e9 a torch overflow
traceback, num_layers 1e5 a hang while building the model, context 1e9 a raw allocation error in
the stepper); sizes that disagree with the weights file's header are a CheckpointError naming
config.json, the key and both values, before the model is built; a KV cache larger than the
machine (or than its container's memory limit, a fake cgroup folder here) is refused naming
context, one taking more than half of the memory available is warned about once. Tiny models."""

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


def test_a_kv_cache_larger_than_the_machine_is_refused_naming_context(tmp_path, monkeypatch):
    """(was: torch's raw "can't allocate memory" RuntimeError from init_state) No cgroup files: the
    machine's memory."""
    monkeypatch.setattr(modules, "CGROUP", str(tmp_path))
    monkeypatch.setattr(modules, "PROC_CGROUP", str(tmp_path / "no_proc_self_cgroup"))
    model, _ = load_frontend("random:tiny;context=65536")
    with pytest.raises(ConfigError, match=r"^context=65536: the KV cache of 100000 session\(s\) needs 6250\.0 GiB, "
                                          r"more than the .* GiB of the machine's memory: lower the front-end's "
                                          r"context"):
        Stepper(model, batch_size=100_000)
    assert Stepper(model, batch_size=1).state.lm.capacity == 65536


def test_a_kv_cache_taking_most_of_the_available_memory_is_warned_about_once(monkeypatch, caplog):
    """(was: allocated without a word, then the machine swapping or the OOM killer). 16 sessions of
    context 65536: 1 GiB."""
    model, _ = load_frontend("random:tiny;context=65536")
    available = [4 * 2**30]
    monkeypatch.setattr(modules, "device_memory", lambda dev: (64 * 2**30, available[0], modules.MACHINE,
                                                               modules.MACHINE))
    with caplog.at_level(logging.WARNING, logger="kame.model.modules"):
        modules.check_cache_memory(model, 16)  # a quarter of what is available: silent
        assert caplog.text == ""
        available[0] = 3 * 2**30 // 2
        modules.check_cache_memory(model, 16)
        modules.check_cache_memory(model, 16)  # (a second stepper of the same model: not again)
    assert caplog.messages == ["context=65536: the KV cache of 16 session(s) takes 1.0 GiB, 67% of the 1.5 GiB of "
                               "the machine's memory available now: memory may run short (lower the front-end's "
                               "context, its config.json, or the number of sessions, runtime.max_sessions)"]


def test_the_memory_figures_are_the_machines():
    total, available, *_ = modules.device_memory(torch.device("cpu"))
    assert 0 < available <= total


GiB = 2**30


def _cgroup(folder, files: dict) -> None:
    """A fake /sys/fs/cgroup: ``files`` (path under it: text)."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _machine() -> tuple[int, int, str, str]:
    """device_memory's figures (the machine's own without cgroup files) and whose each is."""
    return modules.device_memory(torch.device("cpu"))


@pytest.mark.parametrize("files", [
    {"memory.max": f"{2 * GiB}\n", "memory.current": f"{GiB + GiB // 2}\n",
     "memory.stat": f"anon {GiB}\ninactive_file {GiB // 2}\nactive_file 4096\n"},  # v2
    {"memory/memory.limit_in_bytes": f"{2 * GiB}\n", "memory/memory.usage_in_bytes": f"{GiB + GiB // 2}\n",
     "memory/memory.stat": f"inactive_file 4096\ntotal_inactive_file {GiB // 2}\n"}])  # v1
def test_the_memory_figures_are_held_to_a_containers_limit(tmp_path, monkeypatch, files):
    """total: the cgroup's limit; available: what its use leaves (the inactive page cache, which the
    kernel reclaims, counts as available) (was: the host's figures, so a cache filling the container
    was neither refused nor warned about before the OOM killer came)."""
    monkeypatch.setattr(modules, "CGROUP", str(tmp_path))
    host_total, host_available, *_ = _machine()
    assert host_total > 2 * GiB and host_available > GiB  # (this machine's: above the fake limit)
    _cgroup(tmp_path, files)
    assert _machine() == (2 * GiB, GiB, modules.CONTAINER, modules.CONTAINER)


@pytest.mark.parametrize("files", [{"memory.max": "max\n", "memory.current": f"{GiB}\n"},
                                   {"memory/memory.limit_in_bytes": "9223372036854771712\n",
                                    "memory/memory.usage_in_bytes": f"{GiB}\n"}])
def test_a_cgroup_without_a_limit_leaves_the_machines_figures(tmp_path, monkeypatch, files):
    """v2's "max"; v1's huge "no limit" figure, which is above the machine's."""
    monkeypatch.setattr(modules, "CGROUP", str(tmp_path))
    host_total, *_ = _machine()
    _cgroup(tmp_path, files)
    total, available, *whose = _machine()
    assert total == host_total and GiB < available <= total and whose == [modules.MACHINE] * 2


def test_a_kv_cache_larger_than_the_containers_limit_is_refused_and_one_filling_it_warned_about(tmp_path, monkeypatch,
                                                                                              caplog):
    """16 sessions of context 65536: 1 GiB, refused under a 0.5 GiB limit; under a 4 GiB limit of which
    3.5 GiB are in use (no cache to reclaim), warned about; a full container has 1 byte available
    (0 would read as unknown, and say nothing). Both name the container's limit (was: "cpu memory")."""
    model, _ = load_frontend("random:tiny;context=65536")
    monkeypatch.setattr(modules, "CGROUP", str(tmp_path))
    _cgroup(tmp_path, {"memory.max": f"{GiB // 2}\n", "memory.current": "0\n"})
    with pytest.raises(ConfigError, match=r"^context=65536: the KV cache of 16 session\(s\) needs 1\.0 GiB, more than "
                                          r"the 0\.5 GiB of the container's memory limit \(its cgroup's\): lower the "
                                          r"front-end's context"):
        Stepper(model, batch_size=16)
    _cgroup(tmp_path, {"memory.max": f"{4 * GiB}\n", "memory.current": f"{4 * GiB - GiB // 2}\n"})
    with caplog.at_level(logging.WARNING, logger="kame.model.modules"):
        modules.check_cache_memory(model, 16)
    assert caplog.messages == ["context=65536: the KV cache of 16 session(s) takes 1.0 GiB, 200% of the 0.5 GiB of "
                               "the container's memory limit (its cgroup's) available now: memory may run short "
                               "(lower the front-end's context, its config.json, or the number of sessions, "
                               "runtime.max_sessions)"]
    _cgroup(tmp_path, {"memory.current": f"{5 * GiB}\n"})  # (over its limit for a moment)
    assert _machine() == (4 * GiB, 1, modules.CONTAINER, modules.CONTAINER)
