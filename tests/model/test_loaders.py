"""Loading/saving front-end checkpoints: published config keys, errors, oracle upgrade,
fused attention weights, dtype, hf:// through a local (offline) Hugging Face cache, registry."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from ._ref import make_checkpoint, moshi_kwargs, moshi_lm
from kame import registry
from kame.errors import CheckpointError, ConfigError, NotAvailableError
from kame.model.config import LMConfig, preset
from kame.model.loaders import build_meta, load_frontend, save_frontend


@pytest.fixture()
def ckpt(tmp_path):
    raw, state = make_checkpoint(tmp_path / "ck", "moshi")
    return tmp_path / "ck", raw, state


def test_published_configs_are_accepted():
    from moshi.models.loaders import _lm_kwargs

    meta = {"moshi_name": "model.safetensors", "mimi_name": "tokenizer-e351c8d8-checkpoint125.safetensors",
            "tokenizer_name": "tokenizer_spm_32k_3.model", "model_type": "moshi",
            "lm_gen_config": {"temp": 0.8}, "model_id": {"sig": "x", "epoch": 1}}
    cfg = LMConfig.from_dict({**_lm_kwargs, **meta})
    assert cfg.meta["mimi_name"].startswith("tokenizer-") and cfg.dim == 4096 and cfg.oracle
    n = build_meta(cfg.replace(oracle=False)).num_params()
    assert abs(n - 7.69e9) < 0.01e9  # the published Moshi size
    stt = dict(_lm_kwargs, n_q=32, dep_q=0, delays=[0] * 33, dim=2048, text_card=8000, num_heads=16,
               num_layers=16, context=375, max_period=100000, extra_heads_num_heads=4, extra_heads_dim=6,
               demux_second_stream=False, cross_attention=False, conditioners={}, existing_text_end_padding_id=0,
               model_type="stt", stt_config={"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.0},
               mimi_name="mimi-pytorch-e351c8d8@125.safetensors", tokenizer_name="tokenizer_en_fr_audio_8000.model",
               lm_gen_config={"temp": 0.0, "temp_text": 0.0})
    cfg = LMConfig.from_dict(stt)
    m = build_meta(cfg)
    assert len(m.extra_heads) == 4 and m.depformer is None and cfg.meta["stt_config"]["audio_delay_seconds"] == 0.5
    assert LMConfig.from_dict(cfg.to_dict()) == cfg  # round trip


def test_bad_config_keys():
    with pytest.raises(ConfigError, match="dimm"):
        LMConfig.from_dict({**moshi_kwargs(), "dimm": 3})
    with pytest.raises(NotAvailableError, match="cross_attention"):
        LMConfig.from_dict({**moshi_kwargs(), "cross_attention": True})
    with pytest.raises(ConfigError, match="delays"):
        LMConfig.from_dict({**moshi_kwargs(), "delays": [0, 1]})
    with pytest.raises(ConfigError, match="preset"):
        preset("huge")
    with pytest.raises(ConfigError, match=r"config key dim='64': expected int"):
        LMConfig.from_dict({**moshi_kwargs(), "dim": "64"})
    with pytest.raises(ConfigError, match="delays"):
        LMConfig.from_dict({**moshi_kwargs(), "delays": [0] * 16 + ["1"]})
    assert LMConfig.from_dict({**moshi_kwargs(), "hidden_scale": 4}).hidden_scale == 4  # JSON int for a float


def test_load_folder_info_and_oracle_upgrade(ckpt):
    folder, raw, state = ckpt
    (folder / "tokenizer.model").write_bytes(b"x")
    model, info = load_frontend(folder)
    assert model.has_oracle and info.oracle_upgraded
    assert torch.equal(model.oracle_emb.weight, model.text_emb.weight)
    assert model.oracle_emb.weight.data_ptr() != model.text_emb.weight.data_ptr()
    assert info.tokenizer == folder / "tokenizer.model" and info.mimi is None
    assert info.missing_files == ["mimi.safetensors"]
    assert info.lm_gen_config["top_k_text"] == 25 and info.sampling.top_k_text == 25
    assert info.weights == folder / "model.safetensors"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # also by config.json or weights path
    m2, _ = load_frontend(folder / "config.json", oracle=False)
    m3, _ = load_frontend(folder / "model.safetensors", oracle=False)
    assert torch.equal(m2.text_linear.weight, m3.text_linear.weight) and not m2.has_oracle


def test_save_load_roundtrip_and_kame_checkpoint(ckpt, tmp_path):
    folder, raw, _ = ckpt
    model, info = load_frontend(folder)
    with torch.no_grad():
        model.oracle_emb.weight.add_(1.0)  # as if trained
    out = save_frontend(model, tmp_path / "saved", mimi_name="m.safetensors", tokenizer_name="t.model",
                        lm_gen_config=info.lm_gen_config)
    keys = set(load_file(str(out / "model.safetensors")))
    assert "oracle_emb.weight" in keys and "transformer.layers.0.self_attn.in_projs.0.weight" in keys
    m2, info2 = load_frontend(out)
    assert not info2.oracle_upgraded and m2.cfg == model.cfg.replace(meta=m2.cfg.meta)
    for k, v in model.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    assert json.loads((out / "config.json").read_text())["mimi_name"] == "m.safetensors"
    with pytest.raises(CheckpointError, match="oracle_emb"):
        load_frontend(out, oracle=False)
    # bf16 on disk and in memory
    save_frontend(model, tmp_path / "bf16", dtype="bf16")
    m3, _ = load_frontend(tmp_path / "bf16", dtype="bf16")
    assert m3.text_emb.weight.dtype == torch.bfloat16
    assert torch.allclose(m3.text_emb.weight.float(), model.text_emb.weight, atol=1e-2)
    from kame.model.stepper import Sampling, Stepper  # a bf16 model steps (KV cache in bf16)

    st = Stepper(m3, 1, Sampling(greedy=True))
    assert st.state.lm.caches[0].k.dtype == torch.bfloat16
    outs = [st.step(torch.zeros(1, 8, dtype=torch.long)) for _ in range(3)]
    assert outs[-1].valid.all() and not outs[-1].text_logits.isnan().any()


def test_fused_attention_weights_load_in_both(ckpt, tmp_path):
    """Published checkpoints fuse the per-step attention weights (in_proj_weight)."""
    folder, raw, state = ckpt
    fused = {}
    for k, v in state.items():
        for name in ("in_projs", "out_projs"):
            if f".self_attn.{name}." in k:
                prefix = k.split(f"{name}.")[0]
                dst = prefix + ("in_proj_weight" if name == "in_projs" else "out_proj.weight")
                n = len([x for x in state if x.startswith(prefix + name + ".")])
                fused[dst] = torch.cat([state[f"{prefix}{name}.{i}.weight"] for i in range(n)])
                break
        else:
            fused[k] = v
    assert "depformer.layers.0.self_attn.in_proj_weight" in fused
    out = tmp_path / "fused"
    shutil.copytree(folder, out)
    save_file(fused, str(out / "model.safetensors"))
    model, _ = load_frontend(out, oracle=False)
    ref = moshi_lm(moshi_kwargs(), out / "model.safetensors")
    codes = torch.randint(0, 100, (1, 17, 6))
    with torch.no_grad():
        assert torch.allclose(model(codes).text_logits, ref(codes).text_logits, atol=1e-4)


def test_checkpoint_errors(ckpt, tmp_path):
    folder, raw, state = ckpt
    with pytest.raises(CheckpointError, match="does not exist"):
        load_frontend(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_frontend(tmp_path / "empty")

    def variant(name, mutate_state=None, mutate_cfg=None):
        d = tmp_path / name
        shutil.copytree(folder, d)
        if mutate_state:
            s = dict(state)
            mutate_state(s)
            save_file(s, str(d / "model.safetensors"))
        if mutate_cfg:
            c = dict(raw)
            mutate_cfg(c)
            (d / "config.json").write_text(json.dumps(c))
        return d

    d = variant("nofile", mutate_cfg=lambda c: c.update(moshi_name="other.safetensors"))
    with pytest.raises(CheckpointError, match="other.safetensors"):
        load_frontend(d)
    d = variant("shape", mutate_cfg=lambda c: c.update(card=101))
    # (checked against the file's header before the model is built: was "shape mismatch for emb.0.weight: ...")
    with pytest.raises(CheckpointError, match=r"config.json has card=101, but the file's emb\.0\.weight has shape "
                                              r"\(101, \d+\): card=100$"):
        load_frontend(d)
    d = variant("dtype", mutate_state=lambda s: s.update({"text_linear.weight": torch.zeros(300, 64, dtype=torch.int8)}))
    with pytest.raises(CheckpointError, match="text_linear.weight.*int8"):
        load_frontend(d)
    d = variant("unknown", mutate_state=lambda s: s.update({"foo.bar": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="foo.bar"):
        load_frontend(d)
    d = variant("missing", mutate_state=lambda s: s.pop("out_norm.alpha"))
    with pytest.raises(CheckpointError, match="out_norm.alpha"):
        load_frontend(d)
    d = variant("corrupt")
    (d / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_frontend(d)
    d = variant("badkey", mutate_cfg=lambda c: c.update(new_feature=1))
    with pytest.raises(ConfigError, match="new_feature"):
        load_frontend(d)
    with pytest.raises(ConfigError, match="dtype"):
        load_frontend(folder, dtype="int8")
    d = variant("badjson")
    (d / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json is not a readable JSON file"):
        load_frontend(d)


def test_hf_spec_from_offline_cache(ckpt, tmp_path, monkeypatch):
    """hf://org/repo resolves through huggingface_hub's cache (no network: HF_HUB_OFFLINE=1)."""
    import huggingface_hub.constants as hc

    folder, raw, _ = ckpt
    (folder / "tokenizer.model").write_bytes(b"spm")
    (folder / "mimi.safetensors").write_bytes(b"mimi")
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--acme--tiny-kame"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    model, info = load_frontend("hf://acme/tiny-kame")
    assert info.weights.name == "model.safetensors" and str(cache) in str(info.weights)
    assert info.mimi.read_bytes() == b"mimi" and info.tokenizer.read_bytes() == b"spm"
    fe = registry.create("frontend", "hf://acme/tiny-kame", oracle=False)
    assert not fe.model.has_oracle
    with pytest.raises(CheckpointError, match="acme/absent: config.json is not in the local Hugging Face cache"):
        load_frontend("hf://acme/absent")  # (not taken for a legacy repo without config.json)
    with pytest.raises(ConfigError, match="hf://ORG/REPO"):
        load_frontend("hf://acme")
    # A cached legacy repo without config.json is Moshi 7B (overrides apply: here the tiny shapes).
    legacy = cache / "models--acme--legacy"
    (legacy / "refs").mkdir(parents=True)
    (legacy / "refs" / "main").write_text(commit)
    (legacy / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(folder / "model.safetensors", legacy / "snapshots" / commit / "model.safetensors")
    m, info = load_frontend("hf://acme/legacy", oracle=False, **moshi_kwargs())
    assert not m.has_oracle and m.cfg.dim == 64 and info.raw_config == {}


def test_registry_random_and_path(ckpt):
    folder, _, _ = ckpt
    fe = registry.create("frontend", "random:tiny")
    fe2 = registry.create("frontend", "random:tiny")
    assert torch.equal(fe.model.text_linear.weight, fe2.model.text_linear.weight)  # seeded
    st = fe.stepper(batch_size=2)
    assert st.step(torch.zeros(2, 8, dtype=torch.long)).text.shape == (2,)
    assert st.seed is None and fe.stepper(seed=3).seed == 3  # (per-row streams, kame.model.stepper)
    fe3 = registry.create("frontend", str(folder))
    assert fe3.info.weights == folder / "model.safetensors"
    for spec in (f"path:{folder}", f"file://{folder}"):  # the forms the config's frontend.spec takes too
        assert registry.create("frontend", spec).info.weights == folder / "model.safetensors"


def test_wrapper_prefix_is_stripped(ckpt, tmp_path):
    folder, raw, state = ckpt
    d = tmp_path / "prefixed"
    shutil.copytree(folder, d)
    save_file({"model." + k: v for k, v in state.items()}, str(d / "model.safetensors"))
    m, _ = load_frontend(d, oracle=False)
    assert torch.equal(m.text_linear.weight, state["text_linear.weight"])


def test_parse_device_checks_the_cuda_index(monkeypatch):
    from kame.model.loaders import parse_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a (pretend) machine with 2 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_device("cuda") == torch.device("cuda") and parse_device("cuda:1") == torch.device("cuda", 1)
    assert parse_device(torch.device("cuda", 0)).index == 0
    with pytest.raises(ConfigError, match=r"device 'cuda:2' is not available here: this machine has 2 CUDA device\(s\)"):
        parse_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device 'cuda:0' is not available here"):
        parse_device("cuda:0")
    with pytest.raises(ConfigError, match="'gpu0' is not a torch device"):
        parse_device("gpu0")


def test_saved_files_get_the_usual_permissions(tmp_path):
    """safetensors writes 0600; kame's writers give their files what any new file gets (umask),
    so a saved checkpoint, Mimi file or fitted codec can be shared or served."""
    import os

    from kame.codec.mimi import build_random, save_mimi
    from kame.model.loaders import save_tensors

    umask = os.umask(0o022)
    try:
        save_tensors({"a": torch.zeros(2)}, tmp_path / "a.safetensors")
        save_mimi(build_random("tiny"), tmp_path / "m.safetensors")
        for name in ("a.safetensors", "m.safetensors"):
            assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o644), name
    finally:
        os.umask(umask)


def test_weights_false_builds_on_the_meta_device_and_reads_no_weights(ckpt, monkeypatch):
    """A sharded training run's processes but rank 0: the checkpoint's config and checks, no weights
    read (kame.train.parallel.prepare gives them their shards from rank 0)."""
    from kame.model import loaders

    folder, raw, _ = ckpt
    whole, info = load_frontend(folder)
    monkeypatch.setattr(loaders, "read_state", lambda *a: pytest.fail("weights read"))
    model, minfo = load_frontend(folder, weights=False)
    assert model.cfg == whole.cfg and minfo.weights == info.weights and minfo.tokenizer == info.tokenizer
    assert all(p.is_meta for p in model.parameters())
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in whole.state_dict().items()}
    assert all(p.is_meta for p in load_frontend("random:tiny", weights=False)[0].parameters())
    (folder / info.weights.name).unlink()  # (a missing weights file is still said, by every process)
    with pytest.raises(CheckpointError, match="do not exist"):
        load_frontend(folder, weights=False)


def test_save_frontends_temporaries_are_named_as_kames_others(tmp_path, monkeypatch):
    """A save killed midway leaves its temporary files: they are named .NAME.HEX.tmp, as
    kame.paths' writers name theirs, so kame train recognises (and removes) them (was: mkstemp's
    .NAME.RANDOM.tmp, recognised by nothing)."""
    import os
    import re
    import time

    from kame.model import loaders
    from kame.train.checkpoint import remove_stale_temporaries

    model = load_frontend("random:tiny")[0]
    seen = []

    def killed(state, path):  # the process killed while the weights were written
        seen.extend(p.name for p in path.parent.iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr(loaders, "save_tensors", killed)
    with pytest.raises(KeyboardInterrupt):
        save_frontend(model, tmp_path / "step-1")
    assert sorted(re.sub(r"\.[0-9a-f]{12}\.tmp$", ".HEX.tmp", n) for n in seen) == \
        [".config.json.HEX.tmp", ".model.safetensors.HEX.tmp"], seen
    (tmp_path / "step-1").mkdir()
    for name in seen:  # (as a SIGKILL would have left them, an hour ago)
        (tmp_path / "step-1" / name).write_bytes(b"x")
        os.utime(tmp_path / "step-1" / name, (time.time() - 3700,) * 2)
    assert sorted(p.name for p, _ in remove_stale_temporaries(tmp_path)) == sorted(seen)
