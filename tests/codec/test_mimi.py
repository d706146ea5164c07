"""Mimi in kame, on its own: streaming == whole signal, batched rows with per-row reset ==
independent rows, codebook count, input/checkpoint errors, loading from files, folders and a
(fake, offline) Hugging Face cache, the registry entry and the bench. Tiny config, random weights.

    .venv/bin/python -m pytest tests/codec/test_mimi.py -q
"""

import math

import pytest
import torch

from kame import registry
from kame.codec.mimi import MIMI_NAME, MimiConfig, build_random, load_mimi, save_mimi
from kame.errors import AudioFormatError, CheckpointError, ConfigError

FS = 1920


def speechlike(B: int, F: int, seed: int = 0) -> torch.Tensor:
    """[B, F*1920] tones whose pitch and loudness change every frame, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(B):
        f = (100 + 400 * torch.rand(F, generator=g)).repeat_interleave(FS)
        amp = (0.05 + 0.5 * torch.rand(F, generator=g)).repeat_interleave(FS)
        phase = 2 * math.pi * torch.cumsum(f, 0) / 24000
        rows.append(amp * torch.sin(phase) + 0.02 * torch.randn(F * FS, generator=g))
    return torch.stack(rows)


@pytest.fixture(scope="module")
def codec():
    return build_random("tiny", seed=1)


def stream_encode(stream, pcm):
    F = pcm.shape[-1] // FS
    return torch.stack([stream.encode_frame(pcm[:, i * FS:(i + 1) * FS]) for i in range(F)], dim=-1)


def stream_decode(stream, codes):
    return torch.cat([stream.decode_frame(codes[:, :, i]) for i in range(codes.shape[-1])], dim=-1)


def test_shapes_and_codes_spread(codec):
    x = speechlike(2, 12)
    codes = codec.encode(x)
    assert codes.shape == (2, 8, 12) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < codec.cardinality
    assert all(len(set(codes[:, k].flatten().tolist())) > 3 for k in range(8))  # a meaningful test signal
    y = codec.decode(codes)
    assert y.shape == (2, 12 * FS) and y.dtype == torch.float32 and torch.isfinite(y).all()
    # a length that is not a whole number of frames is zero-padded up
    assert codec.encode(x[:, : 5 * FS - 7]).shape == (2, 8, 5)


def test_streaming_equals_whole_signal(codec):
    # 12 frames = 24 transformer steps: crosses the tiny config's 8-step attention window
    x = speechlike(2, 12, seed=3)
    whole = codec.encode(x)
    s = codec.stream(2)
    assert torch.equal(stream_encode(s, x), whole)
    y_whole = codec.decode(whole)
    y_stream = stream_decode(s, whole)
    assert torch.allclose(y_stream, y_whole, atol=1e-5)


def test_batched_rows_with_reset_equal_independent_rows(codec):
    F, R = 10, 4  # row 1 leaves after frame R-1 and a new session joins in its place at frame R
    x = speechlike(3, F, seed=5)
    x_new = speechlike(1, F - R, seed=9)[0]
    codes_in = torch.randint(0, codec.cardinality, (3, 8, F))
    s = codec.stream(3)
    enc, dec = [], []
    for i in range(F):
        if i == R:
            s.reset([1])
        frame = x[:, i * FS:(i + 1) * FS].clone()
        if i >= R:
            frame[1] = x_new[(i - R) * FS:(i - R + 1) * FS]
        enc.append(s.encode_frame(frame))
        dec.append(s.decode_frame(codes_in[:, :, i]))
    enc, dec = torch.stack(enc, -1), torch.cat(dec, -1)
    for row in (0, 2):  # untouched rows behave as if alone
        alone = codec.stream(1)
        assert torch.equal(enc[row:row + 1], stream_encode(alone, x[row:row + 1]))
        assert torch.allclose(dec[row:row + 1], stream_decode(alone, codes_in[row:row + 1]), atol=1e-5)
    before = codec.stream(1)  # row 1 before the reset
    assert torch.equal(enc[1:2, :, :R], stream_encode(before, x[1:2, : R * FS]))
    assert torch.allclose(dec[1:2, : R * FS], stream_decode(before, codes_in[1:2, :, :R]), atol=1e-5)
    fresh = codec.stream(1)  # row 1 after the reset = a fresh session
    assert torch.equal(enc[1:2, :, R:], stream_encode(fresh, x_new[None]))
    assert torch.allclose(dec[1:2, R * FS:], stream_decode(fresh, codes_in[1:2, :, R:]), atol=1e-5)


def test_reset_all_and_bool_mask(codec):
    x = speechlike(2, 3, seed=7)
    s = codec.stream(2)
    first = stream_encode(s, x)
    s.reset()
    assert torch.equal(stream_encode(s, x), first)
    s.reset(torch.tensor([False, True]))
    with pytest.raises(ConfigError):
        s.reset([5])


def test_num_codebooks_settable():
    codec = build_random("tiny", seed=1, num_codebooks=16)
    x = speechlike(1, 4)
    full = codec.encode(x)
    assert full.shape[1] == 16
    codec.set_num_codebooks(3)
    few = codec.encode(x)
    assert few.shape[1] == 3 and torch.equal(few, full[:, :3])  # residual: a prefix of the codes
    assert codec.bitrate == 3 * math.log2(128) * 12.5
    assert codec.stream(1).encode_frame(x[:, :FS]).shape == (1, 3)
    assert codec.decode(full[:, :5]).shape == (1, 4 * FS)  # fewer codebooks decode (coarser)
    for bad in (0, 17):
        with pytest.raises(ConfigError, match="num_codebooks"):
            codec.set_num_codebooks(bad)


def test_clear_input_errors(codec):
    s = codec.stream(2)
    with pytest.raises(AudioFormatError, match="16000 Hz"):
        s.encode_frame(torch.zeros(2, 1280))  # 80 ms at 16 kHz
    with pytest.raises(AudioFormatError, match=r"\[2, 1920\]"):
        s.encode_frame(torch.zeros(3, FS))
    with pytest.raises(AudioFormatError, match="mono"):
        s.encode_frame(torch.zeros(2, 2, FS))  # stereo
    with pytest.raises(AudioFormatError, match="float"):
        s.encode_frame(torch.zeros(2, FS, dtype=torch.int16))
    with pytest.raises(AudioFormatError, match=r"\[0, 128\)"):
        s.decode_frame(torch.full((2, 8), 128))
    with pytest.raises(AudioFormatError, match="integer codes"):
        s.decode_frame(torch.zeros(2, 8))
    with pytest.raises(AudioFormatError, match="rows"):
        s.decode_frame(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(AudioFormatError, match="empty"):
        codec.encode(torch.zeros(1, 0))
    bad = torch.zeros(2, FS)
    bad[1, 7] = float("nan")
    with pytest.raises(AudioFormatError, match="NaN"):
        s.encode_frame(bad)
    with pytest.raises(AudioFormatError, match="NaN"):
        codec.encode(bad.expand(2, FS).clone().fill_(float("inf")))


def test_save_load_file_folder_and_aliases(codec, tmp_path):
    path = save_mimi(codec, tmp_path / MIMI_NAME)
    x = speechlike(1, 3)
    ref = codec.encode(x)
    for src in (path, str(tmp_path), f"mimi:{path}"):
        c = registry.create("codec", src) if str(src).startswith("mimi:") else load_mimi(src)
        assert torch.equal(c.encode(x), ref)
    # older key names accepted by moshi's loader are renamed
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    k = "encoder_transformer.transformer.layers.0.self_attn.in_projs.0.weight"
    state[k.replace("in_projs.0.weight", "in_proj_weight")] = state.pop(k)
    save_file(state, str(tmp_path / "alias.safetensors"))
    assert torch.equal(load_mimi(tmp_path / "alias.safetensors", config=codec.cfg).encode(x), ref)


def test_checkpoint_errors_name_the_problem(codec, tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(CheckpointError, match="not found"):
        load_mimi(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="no Mimi checkpoint"):
        load_mimi(tmp_path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_mimi(tmp_path / "junk.safetensors")
    state = load_file(str(save_mimi(codec, tmp_path / "w.safetensors")))
    cfg = codec.cfg
    missing = dict(state)
    del missing["decoder.model.0.conv.conv.bias"]
    save_file(missing, str(tmp_path / "m.safetensors"))
    with pytest.raises(CheckpointError, match="missing key 'decoder.model.0.conv.conv.bias'"):
        load_mimi(tmp_path / "m.safetensors", config=cfg)
    shaped = dict(state)
    shaped["upsample.convtr.convtr.convtr.weight"] = torch.zeros(32, 2, 4)
    save_file(shaped, str(tmp_path / "s.safetensors"))
    with pytest.raises(CheckpointError, match=r"'upsample.convtr.convtr.convtr.weight' has shape \(32, 2, 4\)"):
        load_mimi(tmp_path / "s.safetensors", config=cfg)
    extra = dict(state, **{"encoder.model.99.weight": torch.zeros(1)})
    save_file(extra, str(tmp_path / "x.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected key 'encoder.model.99.weight'"):
        load_mimi(tmp_path / "x.safetensors", config=cfg)
    quant = dict(state)
    quant["decoder.model.0.conv.conv.weight"] = quant["decoder.model.0.conv.conv.weight"].to(torch.int8)
    save_file(quant, str(tmp_path / "q.safetensors"))
    with pytest.raises(CheckpointError, match="'decoder.model.0.conv.conv.weight' has dtype torch.int8"):
        load_mimi(tmp_path / "q.safetensors", config=cfg)
    with pytest.raises(CheckpointError):  # a tiny file under the published config
        load_mimi(tmp_path / "m.safetensors", config=MimiConfig())
    with pytest.raises(ConfigError, match="num_codebooks"):
        load_mimi(tmp_path / "w.safetensors", num_codebooks=99)
    with pytest.raises(ConfigError, match=r"num_codebooks must be an int in \[1, 16\], got '4' \(w\.safetensors"):
        load_mimi(tmp_path / "w.safetensors", num_codebooks="4")  # was a TypeError from a comparison
    with pytest.raises(ConfigError, match="unknown MimiConfig key"):
        MimiConfig.from_dict({"dimensions": 3})


@pytest.mark.parametrize("bad, message", [
    ({"ratios": [8, 6, 5, 0]}, r"ratios must be positive integers, got \[8, 6, 5, 0\]"),
    ({"ratios": [-8, 6, 5, 4]}, "ratios must be positive integers"),
    ({"ratios": []}, "ratios must be positive integers"),
    ({"num_heads": 0}, "num_heads must be positive"),
    ({"frame_rate": 0}, "frame_rate must be positive"),
    ({"compress": 0}, "compress must be positive"),
    ({"num_layers": -1}, "num_layers must be >= 0"),
])
def test_invalid_config_values_are_config_errors(bad, message):
    with pytest.raises(ConfigError, match=message):  # not ZeroDivisionError / a torch error
        MimiConfig.from_dict(bad)
    with pytest.raises(ConfigError, match=message):
        MimiConfig.tiny(**bad)


def test_hf_source_resolves_from_offline_cache(codec, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    # a fake Hugging Face cache holding one snapshot of org/mimi-repo
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--mimi-repo"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    save_mimi(codec, snap / MIMI_NAME)
    save_mimi(codec, snap / "other.safetensors")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    x = speechlike(1, 2)
    ref = codec.encode(x)
    assert torch.equal(load_mimi("hf://org/mimi-repo").encode(x), ref)  # default file name
    assert torch.equal(registry.create("codec", "mimi:hf://org/mimi-repo/other.safetensors").encode(x), ref)
    assert torch.equal(load_mimi(f"hf://org/mimi-repo@{sha}/other.safetensors").encode(x), ref)  # a revision
    with pytest.raises(CheckpointError, match="org/absent: tokenizer.*not in the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        load_mimi("hf://org/absent")
    with pytest.raises(ConfigError, match="hf://ORG/REPO"):
        load_mimi("hf://just-org")


def test_registry_entry():
    c = registry.create("codec", "mimi:random-tiny")
    assert (c.sample_rate, c.frame_size, c.frame_rate, c.num_codebooks) == (24000, FS, 12.5, 8)
    assert "mimi" in registry.schemes("codec")
    with pytest.raises(ConfigError, match="unknown option"):
        registry.create("codec", "mimi:random-tiny", bogus=1)
    with pytest.raises(CheckpointError):
        registry.create("codec", "mimi:/nonexistent/mimi.safetensors")
    with pytest.raises(ConfigError, match="unknown random Mimi 'random-huge'; use mimi:random"):  # was "not found"
        registry.create("codec", "mimi:random-huge")


def test_bench_prints_a_table(capsys):
    import argparse

    from kame.bench import codec as bench

    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    assert bench.main(p.parse_args(["--codec", "mimi:random-tiny", "--frames", "2", "--warmup", "1"])) == 0
    out = capsys.readouterr().out
    assert "| `mimi:random-tiny` | 8 × 128 | 0.70 |" in out


def _tiny_state(codec, tmp_path):
    from safetensors.torch import load_file

    return load_file(str(save_mimi(codec, tmp_path / MIMI_NAME)))


def _with_meta(state, path, **changes):
    """Write ``state`` with a kame_mimi_config metadata entry: the tiny config with ``changes``,
    or the raw string ``raw`` as given."""
    import json

    from safetensors.torch import save_file

    raw = changes.pop("raw", None)
    if raw is None:
        d = json.loads(MimiConfig.tiny().to_json())
        d.update(changes)
        raw = json.dumps(d)
    save_file(state, str(path), metadata={"kame_mimi_config": raw})
    return path


def test_broken_metadata_config_is_a_checkpoint_error(codec, tmp_path):
    state = _tiny_state(codec, tmp_path)
    p = _with_meta(state, tmp_path / "bad.safetensors", raw="{not json")
    with pytest.raises(CheckpointError, match=r"bad\.safetensors.*kame_mimi_config"):
        load_mimi(p)
    p = _with_meta(state, tmp_path / "big.safetensors", d_model="big")
    with pytest.raises(CheckpointError, match=r"big\.safetensors.*d_model.*'big'"):
        registry.create("codec", f"mimi:{p}")
    p = _with_meta(state, tmp_path / "list.safetensors", raw="[1, 2]")
    with pytest.raises(CheckpointError, match=r"list\.safetensors.*JSON object"):
        load_mimi(p)


def test_metadata_config_errors_name_the_file(codec, tmp_path):
    state = _tiny_state(codec, tmp_path)
    cases = [
        (dict(bogus_key=1), r"unknown MimiConfig key\(s\) \['bogus_key'\]"),
        (dict(sample_rate=16000), "frame_size 1280 is not a multiple of the SEANet hop 960"),
        (dict(num_codebooks=99), r"num_codebooks must be in \[1, 16\]"),
    ]
    for i, (changes, msg) in enumerate(cases):
        p = _with_meta(state, tmp_path / f"c{i}.safetensors", **changes)
        with pytest.raises(CheckpointError, match=rf"c{i}\.safetensors.*kame_mimi_config.*{msg}"):
            load_mimi(p)


def test_bad_folder_config_json_is_a_checkpoint_error(codec, tmp_path):
    save_mimi(codec, tmp_path / MIMI_NAME)
    cfg = tmp_path / "config.json"
    cfg.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"config\.json.*JSON object"):
        registry.create("codec", f"mimi:{tmp_path}")
    cfg.write_text('{"mimi_name": 5}')
    with pytest.raises(CheckpointError, match=r"config\.json.*mimi_name.*5"):
        load_mimi(tmp_path)
    cfg.write_text('{"mimi_name": "%s"}' % MIMI_NAME)
    assert load_mimi(tmp_path).num_codebooks == 8
    cfg.write_text('{"mimi_name": "renamed.safetensors"}')  # no silent fall back to the default name
    with pytest.raises(CheckpointError, match=r"config\.json names .*'renamed\.safetensors'.*does not exist"):
        load_mimi(tmp_path)


def test_folder_with_two_candidates_lists_them(codec, tmp_path):
    save_mimi(codec, tmp_path / "a_mimi.safetensors")
    save_mimi(codec, tmp_path / "b_mimi.safetensors")
    with pytest.raises(CheckpointError, match=r"2 candidate.*a_mimi\.safetensors.*b_mimi\.safetensors.*mimi_name") as e:
        load_mimi(tmp_path)
    assert "config.json" in str(e.value)
    (tmp_path / "config.json").write_text('{"mimi_name": "b_mimi.safetensors"}')  # the advertised way out
    assert load_mimi(tmp_path).num_codebooks == 8


def test_device_and_dtype_options_are_checked(codec, tmp_path):
    p = save_mimi(codec, tmp_path / MIMI_NAME)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device 'cuda'.*not available"):
            registry.create("codec", f"mimi:{p}", device="cuda")
        with pytest.raises(ConfigError, match="device 'cuda'.*not available"):
            registry.create("codec", "mimi:random-tiny", device="cuda")
    with pytest.raises(ConfigError, match="device 'nosuch'"):
        registry.create("codec", f"mimi:{p}", device="nosuch")
    with pytest.raises(ConfigError, match="dtype"):
        registry.create("codec", f"mimi:{p}", dtype="int8")
    with pytest.raises(ConfigError, match="dtype"):
        registry.create("codec", f"mimi:{p}", dtype=torch.int64)
    for dt, want in (("float16", torch.float16), ("bfloat16", torch.bfloat16), (torch.float32, torch.float32)):
        c = registry.create("codec", f"mimi:{p}", dtype=dt, device="cpu")
        assert next(c.model.parameters()).dtype == want


def test_non_finite_weights_are_a_checkpoint_error(codec, tmp_path):
    from safetensors.torch import save_file

    state = _tiny_state(codec, tmp_path)
    for i, bad in enumerate((float("nan"), float("inf"))):
        s = dict(state)
        k = "decoder.model.0.conv.conv.weight"
        s[k] = s[k].clone()
        s[k].view(-1)[3] = bad
        save_file(s, str(tmp_path / f"n{i}.safetensors"), metadata={"kame_mimi_config": codec.cfg.to_json()})
        with pytest.raises(CheckpointError, match=rf"n{i}\.safetensors.*'{k}'.*(NaN|inf)"):
            load_mimi(tmp_path / f"n{i}.safetensors")


def _offline_cache(monkeypatch, tmp_path, files: dict) -> None:
    """A fake, offline Hugging Face cache: {"org/repo": {filename: bytes | Path}}."""
    import huggingface_hub.constants as hc

    sha = "0123456789abcdef0123456789abcdef01234567"
    for repo, content in files.items():
        root = tmp_path / "hub" / ("models--" + repo.replace("/", "--"))
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(sha)
        (root / "snapshots" / sha).mkdir(parents=True)
        for name, data in content.items():
            (root / "snapshots" / sha / name).write_bytes(data if isinstance(data, bytes) else data.read_bytes())
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)


def test_folder_mimi_name_is_resolved_as_the_front_end_loader_does(codec, tmp_path, monkeypatch):
    """mimi_name hf://ORG/REPO/FILE (was: the folder joined with 'hf:/...'), file://, absolute and
    ~/ (was: a folder named '~' in the checkpoint's folder), and the front-end loader's info.mimi is
    the same file."""
    import json

    from kame.codec.mimi import resolve_source
    from kame.model.loaders import load_frontend, save_frontend

    mimi = save_mimi(codec, tmp_path / "m.safetensors")
    _offline_cache(monkeypatch, tmp_path, {"org/mimi-repo": {"other.safetensors": mimi}})
    x = speechlike(1, 2)
    ref = codec.encode(x)
    model, _ = load_frontend("random:tiny")
    monkeypatch.setenv("HOME", str(tmp_path))
    for i, name in enumerate(("hf://org/mimi-repo/other.safetensors", f"file://{mimi}", str(mimi), "~/m.safetensors")):
        folder = save_frontend(model, tmp_path / f"fe{i}", mimi_name=name)
        assert json.loads((folder / "config.json").read_text())["mimi_name"] == name
        _, info = load_frontend(folder)
        assert resolve_source(folder) == info.mimi and info.mimi.is_file(), name
        assert torch.equal(registry.create("codec", f"mimi:{folder}").encode(x), ref)
    (tmp_path / "fe0" / "config.json").write_text(json.dumps({"mimi_name": "hf://org/absent/x.safetensors"}))
    with pytest.raises(CheckpointError, match=r"config\.json names the Mimi checkpoint 'hf://org/absent/x\.safetensors' "
                                              r"\(mimi_name\): hf://org/absent: x\.safetensors is not in the local"):
        load_mimi(tmp_path / "fe0")


def test_hf_repo_follows_its_config_json_mimi_name(codec, tmp_path, monkeypatch):
    """mimi:hf://ORG/REPO takes the Mimi its config.json names, as a local folder does (was: always
    the default file name, so a Kyutai STT repo's Mimi was 'not in the cache')."""
    import json

    mimi = save_mimi(codec, tmp_path / "m.safetensors")
    stt_like = json.dumps({"mimi_name": "mimi-pytorch-e351c8d8@125.safetensors", "model_type": "stt"}).encode()
    _offline_cache(monkeypatch, tmp_path, {
        "org/stt-like": {"config.json": stt_like, "mimi-pytorch-e351c8d8@125.safetensors": mimi},
        "org/plain": {"config.json": b"{}", MIMI_NAME: mimi},  # no mimi_name: the default name
        "org/weights-only": {MIMI_NAME: mimi},  # no config.json cached (offline): the default name
        "org/nothing": {"model.safetensors": b"x"},
    })
    x = speechlike(1, 2)
    ref = codec.encode(x)
    for repo in ("org/stt-like", "org/plain", "org/weights-only"):
        assert torch.equal(registry.create("codec", f"mimi:hf://{repo}").encode(x), ref), repo
    with pytest.raises(CheckpointError, match=r"hf://org/nothing: tokenizer-\S+ is not in the local Hugging Face cache"
                                              r".*nor is the repo's config.json"):
        load_mimi("hf://org/nothing")


def test_wrapper_prefix_is_stripped_as_for_the_front_end(codec, tmp_path):
    """(was: "missing key 'encoder.model.0.conv.conv.weight' (+317 more); unexpected key 'model.decoder...'")"""
    from safetensors.torch import save_file

    state = _tiny_state(codec, tmp_path)
    for pre in ("model.", "module.mimi."):
        p = tmp_path / f"{pre}safetensors"
        save_file({pre + k: v for k, v in state.items()}, str(p), metadata={"kame_mimi_config": codec.cfg.to_json()})
        x = speechlike(1, 2)
        assert torch.equal(load_mimi(p).encode(x), codec.encode(x))
