"""A front-end registered by a plugin (its own scheme, or a built-in one replaced with
replace=True) is what `kame run` loads: the config check takes its spec, the runtime creates it
through the registry with load_frontend's keyword arguments and checks it as kame's own (codec
fit, what the factory returns). Tiny random front-ends, made here."""

import pytest

from kame import registry
from kame.config import load_config
from kame.errors import ConfigError, KameError
from kame.model.loaders import Frontend, load_frontend
from kame.runtime.frontend import load_frame_models

ALONE = ["backend.stt=none", "backend.llm=none"]


def test_a_plugin_scheme_is_loaded_through_its_factory(scratch):
    calls = []

    def create(arg=None, **kw):
        calls.append((arg, sorted(kw)))
        return Frontend(*load_frontend("random:tiny", **kw))

    registry.register("frontend", "myfe", create)
    # (was: "frontend.spec: 'myfe:abc' is not a front-end spec", though registry.create took it)
    cfg = load_config(None, ["frontend.spec=myfe:abc", "frontend.seed=3", *ALONE])
    factory, info = load_frame_models(cfg)
    assert calls and calls[0][0] == "abc"
    assert {"device", "dtype", "seed", "oracle", "expect", "weights"} <= set(calls[0][1])
    assert info["frontend_random"] and info["codec"] == "embedded" and info["oracle_stream"] == "random"
    assert factory(1).stepper.batch_size == 1


def test_a_built_in_scheme_replaced_is_used(scratch):
    def create(arg=None, **kw):
        raise RuntimeError("PLUGIN FRONTEND USED")

    registry.register("frontend", "random", create, replace=True)
    # (was: ignored, kame's own random:tiny loaded)
    with pytest.raises(KameError, match=r"frontend.spec = 'random:tiny': .*PLUGIN FRONTEND USED"):
        load_frame_models(load_config(None, ["frontend.spec=random:tiny", *ALONE]))


def test_a_plugin_front_end_gets_the_codec_fit_check(scratch):
    registry.register("frontend", "myfe", lambda arg=None, **kw: Frontend(*load_frontend("random:tiny", card=1024, **kw)))
    with pytest.raises(ConfigError, match=r"codec.spec = 'auto': codec 'embedded' has 2048 codes per codebook, the "
                                          r"front-end 'myfe' expects 1024"):
        load_frame_models(load_config(None, ["frontend.spec=myfe", *ALONE]))


def test_a_factory_that_returns_no_front_end_is_named(scratch):
    registry.register("frontend", "myfe", lambda arg=None, **kw: object())
    with pytest.raises(ConfigError, match=r"frontend 'myfe': its factory returned object, not a front-end: return "
                                          r"kame.model.loaders.Frontend\(model, info\)"):
        load_frame_models(load_config(None, ["frontend.spec=myfe", *ALONE]))


def test_an_unknown_scheme_is_still_refused_at_config_load():
    with pytest.raises(ConfigError, match=r"frontend.spec: 'nofe:abc' is not a front-end spec"):
        load_config(None, ["frontend.spec=nofe:abc"])


def _checkpoint(tmp_path, **edit):
    """A tiny saved front-end (embedded codec, kame's default tokenizer) whose config.json gets ``edit``
    (None: the key removed; kame.tokenizer and its sha256 removed too)."""
    import json

    from kame.model.loaders import save_frontend

    model, _ = load_frontend("random:tiny", text_card=4000)
    ck = save_frontend(model, tmp_path / "ck", codec="embedded", tokenizer="default")
    raw = json.loads((ck / "config.json").read_text())
    for key in ("tokenizer", "tokenizer_sha256"):
        raw["kame"].pop(key, None)
    for key, value in edit.items():
        raw.pop(key, None) if value is None else raw.__setitem__(key, value)
    (ck / "config.json").write_text(json.dumps(raw))
    return ck


def _own(arg=None, device="cpu", dtype=None, seed=0, ck=None):  # a factory that passes none of the checks on
    return Frontend(*load_frontend(str(ck), device=device, dtype=dtype, seed=seed))


@pytest.mark.parametrize("passes_kwargs", [True, False])
def test_a_plugin_front_end_missing_its_tokenizer_is_said_as_kames_own(scratch, tmp_path, passes_kwargs):
    from kame.errors import CheckpointError

    ck = _checkpoint(tmp_path, tokenizer_name="gone.model")
    looked = rf"its text tokenizer 'gone.model' \(config.json tokenizer_name\) was not found: looked for {ck}/gone.model\."
    with pytest.raises(CheckpointError, match=looked):  # kame's own loader
        load_frame_models(load_config(None, [f"frontend.spec={ck}", *ALONE]))
    if passes_kwargs:
        registry.register("frontend", "myfe", lambda arg=None, **kw: Frontend(*load_frontend(str(ck), **kw)))
    else:
        registry.register("frontend", "myfe", lambda arg=None, device="cpu", dtype=None, seed=0: _own(
            arg, device, dtype, seed, ck=ck))
    # (was: AttributeError: 'NoneType' object has no attribute 'is_file', the plugin's form had no folder)
    with pytest.raises(CheckpointError, match=r"frontend.spec = 'myfe': front-end 'myfe': " + looked):
        load_frame_models(load_config(None, ["frontend.spec=myfe", *ALONE]))


def test_a_plugin_front_end_missing_its_mimi_is_said_as_kames_own(scratch, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    from kame.errors import CheckpointError

    import shutil

    from kame.backend.tokenizer import DEFAULT_MODEL

    ck = _checkpoint(tmp_path, mimi_name="gone.safetensors", kame={}, tokenizer_name="spm.model")
    shutil.copy(DEFAULT_MODEL, ck / "spm.model")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # the published Mimi: not cached here
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    registry.register("frontend", "myfe", lambda arg=None, **kw: Frontend(*load_frontend(str(ck), **kw)))
    with pytest.raises(CheckpointError, match=rf"codec.spec 'auto' for the front-end 'myfe': its config.json mimi_name "
                                              rf"'gone.safetensors' was not found \(looked for {ck}/gone.safetensors\)"):
        load_frame_models(load_config(None, ["frontend.spec=myfe", *ALONE]))


def test_where_names_the_file_alone_without_a_folder():
    from kame.runtime.loading import _where

    class Info:
        missing_files = ["gone.model"]

    assert _where("gone.model", ("plugin", None, None), Info()) == "gone.model"


def _bench_args(module, *argv):
    import argparse

    p = argparse.ArgumentParser()
    module.add_arguments(p)
    return p.parse_args(list(argv))


def test_kame_bench_step_creates_a_plugin_front_end_through_its_factory(scratch, capsys):
    from kame.bench import step

    calls = []

    def create(arg=None, **kw):
        calls.append(kw)
        return Frontend(*load_frontend("random:tiny", **kw))

    registry.register("frontend", "myfe", create)
    # (was: "'myfe' is not a front-end spec", refused up front)
    assert step.main(_bench_args(step, "--frontend", "myfe", "--batch", "1", "--frames", "1", "--warmup", "0")) == 0
    assert calls and calls[0]["oracle"] is True and "| `myfe` |" in capsys.readouterr().out
    registry.register("frontend", "random", lambda arg=None, **kw: 1 / 0, replace=True)
    # (was: kame's own random:tiny benched, the replacement ignored)
    with pytest.raises(KameError, match=r"frontend 'random:tiny' could not be created: ZeroDivisionError"):
        step.main(_bench_args(step, "--frontend", "random:tiny", "--frames", "1"))


def test_kame_bench_sessions_takes_a_plugin_front_end(scratch, monkeypatch, capsys):
    from kame.bench import sessions

    registry.register("frontend", "myfe", lambda arg=None, **kw: Frontend(*load_frontend("random:tiny", **kw)))
    ran = []

    async def run_case(fe, codec, n, batched, *rest):  # (what runs it is the runtime's: kame run's path)
        ran.append(fe)
        return {"frontend": fe, "codec": codec, "params": 1e6, "batched": batched, "sessions": n, "frames": 1,
                "step_p50": 0.01, "step_p99": 0.01, "missed": 0, "missed_ratio": 0.0, "max_late": 0.0,
                "cpu_per_frame": 0.01, "cpu_share": 0.1}

    monkeypatch.setattr(sessions, "run_case", run_case)
    # (was: "'myfe' is not a front-end spec" from the up-front check, though the runtime takes it)
    assert sessions.main(_bench_args(sessions, "--frontend", "myfe", "--sessions", "1", "--mode", "batched")) == 0
    assert ran == ["myfe"]


def test_a_plugin_front_end_without_raw_config_is_not_said_to_lack_a_config_json(scratch, tmp_path):
    """The 'no config.json, Moshi 7B's config was assumed' note comes from the loader's word
    (FrontendInfo.assumed), not from an empty raw_config, which a plugin's FrontendInfo may have."""
    from dataclasses import replace

    from kame.codec.mimi import build_random, save_mimi

    ck = _checkpoint(tmp_path, kame={})
    save_mimi(build_random("tiny"), tmp_path / "mimi.safetensors")  # 128 codes per codebook: not the model's

    def create(arg=None, device="cpu", dtype=None, seed=0, **kw):  # (its own FrontendInfo: no raw_config)
        model, info = load_frontend(str(ck), device=device, dtype=dtype, seed=seed)
        return Frontend(model, replace(info, raw_config={}))

    registry.register("frontend", "myfe", create)
    with pytest.raises(ConfigError, match=r"has 128 codes per codebook") as err:
        load_frame_models(load_config(None, ["frontend.spec=myfe", f"codec.spec=mimi:{tmp_path / 'mimi.safetensors'}",
                                             *ALONE]))
    assert "no config.json" not in str(err.value) and "Moshi 7B" not in str(err.value), str(err.value)
