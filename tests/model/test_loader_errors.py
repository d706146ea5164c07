"""Broken front-end checkpoints and specs fail with a kame error naming what is wrong (not a
KeyError / TypeError / ZeroDivisionError from deep inside torch, nor a 30 GB allocation)."""

import json
import sys

import pytest
import torch

from kame import registry
from kame.errors import CheckpointError, ConfigError, NotAvailableError
from kame.model.loaders import check_frontend_spec, load_frontend, save_frontend


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fe") / "ck"
    model, _ = load_frontend("random:tiny")
    save_frontend(model, folder, tokenizer_name="tok.model", lm_gen_config={"temp": 0.8, "top_k": 250})
    return folder, json.loads((folder / "config.json").read_text())


def _with_config(folder, raw, tmp_path, **changes):
    d = tmp_path / "variant"
    d.mkdir()
    (d / "model.safetensors").symlink_to(folder / "model.safetensors")
    (d / "config.json").write_text(json.dumps({**raw, **changes}))
    return d


@pytest.mark.parametrize("changes, message", [
    ({"gating": "relu6x"}, r"gating='relu6x' is not 'none' or one of \["),
    ({"depformer_gating": "swish"}, "depformer_gating='swish'"),
    ({"num_heads": 0}, "num_heads=0 must be >= 1"),
    ({"dim": -64}, "dim=-64 must be >= 1"),
    ({"card": -5}, "card=-5 must be >= 1"),
    ({"hidden_scale": float("nan")}, "hidden_scale=nan must be a finite number > 0"),
    ({"existing_text_end_padding_id": 5000}, r"existing_text_end_padding_id=5000 outside the text vocabulary \[0, 1000\)"),
    ({"meta": [1]}, "config key meta=.1.: expected an object"),
    ({"moshi_name": 5}, "config key moshi_name=5: expected a non-empty string"),
    ({"moshi_name": ""}, "config key moshi_name='': expected a non-empty string"),
    ({"mimi_name": None}, "config key mimi_name=None"),
    ({"lm_gen_config": [1]}, "config key lm_gen_config=.1.: expected an object"),
    ({"lm_gen_config": {"temp": "hot"}}, r"lm_gen_config.temp='hot': expected a number >= 0"),
    ({"lm_gen_config": {"top_k": 2.5}}, r"lm_gen_config.top_k=2.5: expected an integer >= 0"),
    # (were accepted: the docs say unknown keys are errors)
    ({"lm_gen_config": {"temperature": 0.8}}, r"unknown lm_gen_config key\(s\): temperature \(known: temp, "),
    ({"lm_gen_config": {"use_sampling": 1}}, r"lm_gen_config.use_sampling=1: expected true or false"),
    ({"model_type": "foo"}, r"config key model_type='foo': expected one of moshi, kame, hibiki, stt, tts"),
    # (was: "delays has 17 entries, expected n_q + 1 = 1")
    ({"n_q": 0}, "n_q=0 must be >= 1"),
    ({"delays": [0, 1]}, r"delays has 2 entries, expected one per stream: n_q \+ 1 = 17 \(text \+ n_q=16 audio"),
    # (were accepted, then every step failed / "coroutine raised StopIteration")
    ({"text_card_out": 6000}, r"text_card_out=6000 must be within \[1, 1001\]: each text id the model writes is fed back"),
    ({"num_layers": 0}, "num_layers=0 must be >= 1"),
])
def test_bad_config_values_are_config_errors(saved, tmp_path, changes, message):
    folder, raw = saved
    d = _with_config(folder, raw, tmp_path, **changes)
    with pytest.raises(ConfigError, match=message) as e:
        load_frontend(d)
    assert str(e.value).startswith(f"{d / 'config.json'}: ")  # names the file (was: the key only)


def test_use_sampling_false_is_greedy(saved, tmp_path):
    folder, raw = saved
    _, info = load_frontend(_with_config(folder, raw, tmp_path, lm_gen_config={"use_sampling": False, "temp": 0.8}))
    assert info.sampling.greedy and info.sampling.temp == 0.8


def test_lm_gen_config_extra_keys_are_kept(saved, tmp_path):
    folder, raw = saved
    _, info = load_frontend(_with_config(folder, raw, tmp_path, lm_gen_config={"temp_text": 0, "cfg_coef": 1.5}))
    assert info.sampling.temp_text == 0 and info.lm_gen_config["cfg_coef"] == 1.5


def test_weights_and_tokenizer_paths_that_are_folders(saved, tmp_path):
    folder, raw = saved
    d = tmp_path / "dirs"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(raw))
    (d / "model.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="model.safetensors is not a file"):
        load_frontend(d)
    (d / "model.safetensors").rmdir()
    (d / "model.safetensors").symlink_to(folder / "model.safetensors")
    (d / "tok.model").mkdir()  # a folder is not the tokenizer: a missing companion file
    _, info = load_frontend(d)
    assert info.tokenizer is None and "tok.model" in info.missing_files


@pytest.mark.parametrize("spec, error, message", [
    ("random:nonsense", ConfigError, r"unknown random front-end 'random:nonsense'; use random:tiny\|small"),
    ("random:7b", ConfigError, "random 7B weights do not fit in memory"),  # (was: built, 30 GB)
    ("random:tiny:x", ConfigError, "unknown random front-end"),
    ("random:small;bogus=1", ConfigError, "config key 'bogus' is not a front-end config key"),
    ("random:small;dim", ConfigError, "'dim' is not KEY=VALUE"),
    ("random:small;dim=1,dim=2", ConfigError, "config key 'dim' given twice"),
    ("random:nonsense;dim=8", ConfigError, "unknown random front-end"),
    ("random:tiny;dim=abc", ConfigError, r"random:tiny;dim=abc: config key dim='abc': expected int"),  # (no load)
    ("random:tiny;causal=True", ConfigError, "expected bool .JSON's spelling: true, false, null"),
    ("randomfoo", CheckpointError, "'randomfoo' does not exist"),  # (was: random:tiny)
    ("", ConfigError, "front-end spec ''"),
    ("path:", ConfigError, "front-end spec 'path:'"),
    ("nonsense:x", CheckpointError, "'nonsense:x' does not exist .a front-end spec is hf://ORG/REPO"),
    ("hf://acme/x/y", ConfigError, "expected hf://ORG/REPO"),
])
def test_bad_frontend_specs(spec, error, message):
    with pytest.raises(error, match=message):
        check_frontend_spec(spec)
    with pytest.raises(error, match=message):
        load_frontend(spec)


def test_random_specs():
    assert check_frontend_spec("random") == ("random", "tiny", None)
    # a preset with config keys: another size to train or bench, each value checked as config.json's
    spec = "random:tiny;dim=32,depformer_num_layers=1,layer_scale=null,delays=[0,0,1,1,1,1,1,1,1,0,1,1,1,1,1,1,1]"
    model, info = load_frontend(spec)
    cfg = model.cfg
    assert (cfg.dim, cfg.depformer_num_layers, cfg.layer_scale, cfg.num_heads) == (32, 1, None, 4)  # (the rest: tiny's)
    assert model.text_emb.weight.shape[1] == 32 and info.config == cfg
    assert registry.create("frontend", spec).model.cfg == cfg
    assert check_frontend_spec("random;dim=32") == ("random", "tiny;dim=32", None)  # (the registry's form too)
    assert registry.create("frontend", "random;dim=32").model.cfg.dim == 32
    # a key the caller sets too (the codec's card, kame train's text_card, the oracle switch) must agree
    with pytest.raises(ConfigError, match=r"random:tiny;card=512: card=512 in the spec, but 2048 here"):
        load_frontend("random:tiny;card=512", card=2048)
    with pytest.raises(ConfigError, match=r"oracle=True in the spec, but False here"):
        load_frontend("random:tiny;oracle=true", oracle=False)
    assert load_frontend("random:tiny;card=2048", card=2048)[0].cfg.card == 2048
    with pytest.raises(ConfigError, match="random:tiny;dim=30: .*dim"):  # (30 is not a multiple of 4 heads)
        load_frontend("random:tiny;dim=30")
    assert check_frontend_spec("random:stt-tiny") == ("random", "stt-tiny", None)
    assert check_frontend_spec("hf://acme/x@v1")[:2] == ("hf", "acme/x@v1")


def test_hf_spec_fails_fast_offline(monkeypatch):
    import time

    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match="acme/never-cached: config.json is not in the local Hugging Face cache"):
        registry.create("frontend", "hf://acme/never-cached")
    assert time.monotonic() - t0 < 5


def test_registry_spec_checks():
    with pytest.raises(ConfigError, match="a component spec is a string"):
        registry.create("frontend", None)
    with pytest.raises(ConfigError, match="unknown component kind 'bogus'"):
        registry.create("bogus", "x")
    with pytest.raises(ConfigError, match=r"unknown frontend spec 'nope:x': scheme 'nope' is not one of \['file', 'hf', 'path', 'random'\]"):
        registry.create("frontend", "nope:x")
    with pytest.raises(ConfigError, match="unknown front-end config key.s.: bogus"):
        registry.create("frontend", "random:tiny", bogus=1)
    # an option the component's constructor does not take (was a bare TypeError)
    with pytest.raises(registry.UnknownOptionError, match="stt 'openai:m' has no option 'bogus'") as e:
        registry.create("stt", "openai:m", bogus=1, base_url="http://127.0.0.1:9/v1")
    assert e.value.option == "bogus" and isinstance(e.value, ConfigError)


def test_optional_context_is_passed_only_where_taken():
    """create_with_optional leaves out what a component does not take (the OpenAI LLM has no
    ``nice``: it runs no process of its own) and passes what it does."""
    llm = registry.create_with_optional("llm", "openai:m", nice=5, base_url="http://127.0.0.1:9/v1")
    assert type(llm).__name__ == "OpenAIChat" and llm.base_url.startswith("http://127.0.0.1:9")


def test_missing_package_is_an_import_error_naming_the_extra(monkeypatch):
    """Both a missing package imported by the factory's module and one the factory imports lazily."""
    registry.register("stt", "_needs_pkg", "kame_test_no_such_module:create", extra="stt")
    registry.register("codec", "_lazy", f"{__name__}:_lazy_factory", extra="codec-x")
    try:
        with pytest.raises(ImportError, match=r"stt '_needs_pkg' needs a package .* pip install 'kame-tandem\[stt\]'") as e:
            registry.create("stt", "_needs_pkg")
        assert isinstance(e.value, NotAvailableError)
        monkeypatch.setitem(sys.modules, "kame_test_lazy_pkg", None)
        with pytest.raises(ImportError, match=r"codec '_lazy' needs a package .*kame_test_lazy_pkg.*kame-tandem\[codec-x\]"):
            registry.create("codec", "_lazy")
    finally:
        del registry._ENTRIES["stt"]["_needs_pkg"], registry._ENTRIES["codec"]["_lazy"]


def _lazy_factory(arg, **kwargs):
    import kame_test_lazy_pkg  # noqa: F401

    return torch.zeros(1)


def test_one_load_checks_the_spec_once(saved, monkeypatch):
    """load_frontend checked the spec up to 3 times (itself, _find_config, and its caller)."""
    from kame.model import loaders

    folder, _ = saved
    real, calls = loaders.check_frontend_spec, []
    monkeypatch.setattr(loaders, "check_frontend_spec", lambda spec: calls.append(spec) or real(spec))
    for spec in ("random:tiny", folder, folder / "config.json", folder / "model.safetensors"):
        calls.clear()
        load_frontend(spec)
        assert calls == [spec]
    calls.clear()
    _, info = load_frontend(folder, spec_form=real(folder))  # a caller that has checked it already
    assert calls == [] and info.weights == folder / "model.safetensors"



# --- save_frontend: refuses what load_frontend would refuse, before writing anything -------------
@pytest.mark.parametrize("meta, error, message", [
    ({"bogus": 1}, ConfigError, "unknown front-end config key.s.: bogus .load_frontend would refuse"),
    ({"mimi_name": 5}, ConfigError, "config key mimi_name=5: expected a non-empty string"),
    ({"lm_gen_config": {"temperature": 0.8}}, ConfigError, "unknown lm_gen_config key.s.: temperature"),
    ({"lm_gen_config": {"top_k": "many"}}, ConfigError, "lm_gen_config.top_k='many'"),
    ({"lm_gen_config": {...}}, ConfigError, r"lm_gen_config=\{Ellipsis\} \(set\) cannot be written to config.json"),
    ({"model_id": {"when": object()}}, ConfigError, r"model_id.when=<object .*cannot be written"),
    ({"model_id": {"loss": float("nan")}}, ConfigError, "model_id.loss=nan .float. cannot be written"),
    ({"model_type": "foo"}, ConfigError, "model_type='foo'"),
    ({"moshi_name": "weights.bin"}, ConfigError, "moshi_name='weights.bin': expected the name of a .safetensors file"),
    ({"moshi_name": "../x.safetensors"}, ConfigError, "moshi_name='../x.safetensors'"),
    ({"moshi_name": "/abs/x.safetensors"}, ConfigError, "moshi_name='/abs/x.safetensors'"),
    ({"moshi_name": "hf://a/b/x.safetensors"}, ConfigError, "moshi_name='hf://a/b/x.safetensors'"),
    ({"dim": 128}, ConfigError, r"dim=128 is an LM config key: config.json gets the model's own value \(64\)"),
    ({"conditioners": {"x": 1}}, NotAvailableError, "conditioners"),
    ({"dtype_": 1, "lm_gen_config": {"temp": 1}}, ConfigError, "dtype_"),
])
def test_save_frontend_refuses_before_writing(tmp_path, meta, error, message):
    model, _ = load_frontend("random:tiny")
    out = tmp_path / "new" / "ck"
    with pytest.raises(error, match=message):
        save_frontend(model, out, **meta)
    assert not (tmp_path / "new").exists()  # (was: model.safetensors written, then the error)
    old = tmp_path / "old"  # an existing checkpoint is left as it was
    save_frontend(model, old, tokenizer_name="t.model")
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    with pytest.raises(error, match=message):
        save_frontend(model, old, **meta)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before


def test_save_frontend_bad_dtype_writes_nothing(tmp_path):
    model, _ = load_frontend("random:tiny")
    with pytest.raises(ConfigError, match="dtype"):
        save_frontend(model, tmp_path / "ck", dtype="int8")
    assert not (tmp_path / "ck").exists()  # (was: an empty folder)


def test_save_frontend_converts_paths_and_tuples(tmp_path):
    from pathlib import Path

    model, _ = load_frontend("random:tiny")
    tok = tmp_path / "spm.model"
    tok.write_bytes(b"x")
    out = save_frontend(model, tmp_path / "ck", mimi_name=Path("m.safetensors"), tokenizer_name=tok,
                        lm_gen_config={"temp": 0.5, "cfg_is_masked_until": (1, 2)}, moshi_name=Path("w.safetensors"))
    raw = json.loads((out / "config.json").read_text())
    assert raw["mimi_name"] == "m.safetensors" and raw["tokenizer_name"] == str(tok)
    assert raw["lm_gen_config"]["cfg_is_masked_until"] == [1, 2]
    _, info = load_frontend(out)
    assert info.tokenizer == tok and info.weights == out / "w.safetensors" and info.sampling.temp == 0.5


def test_save_frontend_failure_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    """A failure while writing (here: the disk fills up in the middle of the weights) leaves the
    folder as it was: no new folder, no temporary files, an older checkpoint intact."""
    from kame.model import loaders

    model, _ = loaders.load_frontend("random:tiny")
    old = tmp_path / "old"
    save_frontend(model, old)
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    real = loaders.save_tensors

    def disk_full(tensors, path, metadata=None):
        real(tensors, path, metadata)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise OSError(28, "No space left on device")

    from pathlib import Path

    monkeypatch.setattr(loaders, "save_tensors", disk_full)
    with torch.no_grad():
        model.text_emb.weight.add_(1.0)
    for folder in (old, tmp_path / "new" / "ck"):
        with pytest.raises(OSError, match="No space left"):
            save_frontend(model, folder, tokenizer_name="t.model")
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(loaders, "save_tensors", real)
    save_frontend(model, old, tokenizer_name="t.model")  # the same call, with room: the new checkpoint
    m2, info = load_frontend(old)
    assert torch.equal(m2.text_emb.weight, model.text_emb.weight) and info.config.meta["tokenizer_name"] == "t.model"
    assert sorted(p.name for p in old.iterdir()) == ["config.json", "model.safetensors"]


def test_docs_save_snippet_runs(tmp_path, monkeypatch):
    """docs/frontend.md's save_frontend line, with real values for its placeholders."""
    monkeypatch.chdir(tmp_path)
    model, _ = load_frontend("random:tiny")
    save_frontend(model, "out/", dtype="bf16", mimi_name="tokenizer-e351c8d8-checkpoint125.safetensors",
                  tokenizer_name="tokenizer_spm_32k_3.model", lm_gen_config={"temp": 0.8, "top_k": 250})
    m2, info = load_frontend("out/", dtype="bf16")
    assert info.sampling.top_k == 250 and m2.text_emb.weight.dtype == torch.bfloat16


def test_a_streamed_model_needs_a_finite_context(saved, tmp_path):
    """context null (accepted for a config) is refused before the weights when the model is to be
    streamed, and by the stepper otherwise (was: a ValueError traceback from init_state)."""
    from kame.model.stepper import Stepper

    folder, raw = saved
    d = _with_config(folder, raw, tmp_path, context=None)
    for expect in ("frontend", "stt"):
        with pytest.raises(ConfigError, match=r"context null \(no attention limit\), but a streamed model needs a finite"):
            load_frontend(d, expect=expect, before_weights=lambda info: pytest.fail("read on"))
    model, _ = load_frontend(d)  # a training forward takes it
    with pytest.raises(ConfigError, match=r"set \"context\" in its config.json"):
        Stepper(model, batch_size=1)


def test_missing_weights_say_which_name_and_what_is_there(saved, tmp_path):
    folder, raw = saved
    d = tmp_path / "renamed"
    d.mkdir()
    (d / "consolidated.safetensors").symlink_to(folder / "model.safetensors")
    (d / "config.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "moshi_name"}))
    with pytest.raises(CheckpointError, match=r"model.safetensors \(the default name: .*config.json has no moshi_name\) "
                                              r"do not exist; .* holds consolidated.safetensors: set moshi_name"):
        load_frontend(d)


def test_shape_mismatch_names_the_size_keys_config_json_lacks(saved, tmp_path):
    folder, raw = saved
    d = _with_config(folder, {k: v for k, v in raw.items() if k not in ("text_card", "dim")}, tmp_path)
    with pytest.raises(CheckpointError, match=r"config.json has no text_card, dim, so Moshi 7B's text_card=32000, "
                                              r"dim=4096 were assumed: give the values the weights were saved with"):
        load_frontend(d)


def test_git_lfs_pointers_are_named(saved, tmp_path):
    """A Hugging Face repo cloned without git-lfs holds pointers (was: "no safetensors header")."""
    from kame.backend.tokenizer import TextTokenizer

    folder, raw = saved
    d = tmp_path / "lfs"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(raw))
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 15441873\n"
    (d / "model.safetensors").write_text(pointer)
    (d / "tok.model").write_text(pointer)
    with pytest.raises(CheckpointError, match=r"model.safetensors is a Git LFS pointer to a file of 15441873 bytes, "
                                              r"not the file itself .* run `git lfs pull`"):
        load_frontend(d)
    with pytest.raises(CheckpointError, match=r"tok.model is a Git LFS pointer"):
        TextTokenizer(d / "tok.model")
