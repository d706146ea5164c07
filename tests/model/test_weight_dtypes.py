"""Weights kame cannot run are refused when they load, with a CheckpointError naming the file, the
tensor and what to use: float8 tensors in a front-end, Mimi or embedded codec file (was: a
NotImplementedError traceback from check_finite's sum; refused now from the file's header, before
any tensor is read), float8 as the dtype asked for (was: accepted, then the first step failed), and
weights beyond float16's range cast to float16 at load or by save_frontend (was: loaded as inf,
then NaN logits; and written as inf, a file kame then refused as corrupt)."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kame.errors import CheckpointError, ConfigError
from kame.model import tensorfiles
from kame.model.loaders import check_finite, load_frontend, parse_dtype, save_frontend

FLOAT8 = [torch.float8_e4m3fn, torch.float8_e5m2]
BIG = "transformer.layers.0.gating.linear_in.weight"


def _recast(path, cast) -> None:
    """Rewrite a safetensors file with its float tensors cast by ``cast`` (metadata kept)."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    save_file({k: cast(k, v) if v.is_floating_point() else v for k, v in state.items()}, str(path), metadata=meta)


@pytest.fixture(scope="module")
def tiny():
    return load_frontend("random:tiny")[0]


@pytest.mark.parametrize("dtype", FLOAT8)
def test_a_float8_frontend_checkpoint_is_refused_from_its_header(tmp_path, tiny, monkeypatch, dtype):
    folder = save_frontend(tiny, tmp_path / "ck", dtype="bf16")
    weights = folder / "model.safetensors"
    _recast(weights, lambda k, v: v.to(dtype))
    monkeypatch.setattr(tensorfiles, "safe_open", None)  # no tensor is read: the header decides
    with pytest.raises(CheckpointError, match=rf"^{weights}: tensor '[^']+' has dtype F8_E[45]M[32]: float8 "
                                              r"\(quantized\) weights are not supported by kame; use a file saved "
                                              r"in bfloat16, float16 or float32$"):
        load_frontend(folder)


def test_float8_codec_files_are_refused(tmp_path):
    from kame.codec.embedded import load as load_embedded
    from kame.codec.embedded.model import DEFAULT_PATH
    from kame.codec.mimi import build_random, load_mimi, save_mimi

    mimi = save_mimi(build_random("tiny", seed=1), tmp_path / "mimi.safetensors")
    _recast(mimi, lambda k, v: v.to(torch.float8_e4m3fn))
    with pytest.raises(CheckpointError, match=rf"^{mimi}: tensor '[^']+' has dtype F8_E4M3: float8 \(quantized\)"):
        load_mimi(mimi)
    emb = tmp_path / "emb.safetensors"
    emb.write_bytes(DEFAULT_PATH.read_bytes())
    _recast(emb, lambda k, v: v.to(torch.float8_e5m2) if k == "codebooks" else v)
    with pytest.raises(CheckpointError, match=rf"^{emb}: tensor 'codebooks' has dtype F8_E5M2: float8 \(quantized\)"):
        load_embedded(emb)


@pytest.mark.parametrize("dtype", FLOAT8)
def test_check_finite_refuses_float8_tensors_in_memory(dtype):
    with pytest.raises(CheckpointError, match=rf"^w: tensor 'b' has dtype {dtype}: float8 \(quantized\)"):
        check_finite({"a": torch.ones(3), "b": torch.ones(3).to(dtype)}, "w")


@pytest.mark.parametrize("dtype", FLOAT8)
def test_float8_is_not_a_dtype_to_run_in(dtype):
    with pytest.raises(ConfigError, match=rf"^dtype {dtype} is not supported: kame runs in float32, bfloat16, "
                                          r"float16 or float64 \(float8 and other quantized formats are not\)$"):
        parse_dtype(dtype, torch.device("cpu"))
    with pytest.raises(ConfigError, match="is not supported"):
        load_frontend("random:tiny", dtype=dtype)
    for ok in (torch.float16, torch.bfloat16, torch.float32, torch.float64, "fp16", None):
        assert parse_dtype(ok, torch.device("cpu")).is_floating_point


@pytest.fixture()
def big(tmp_path, tiny):
    """A bf16 checkpoint with one finite weight (1e5) beyond float16's range (65504)."""
    folder = save_frontend(tiny, tmp_path / "big", dtype="bf16")

    def one_big(k, v):
        if k == BIG:
            v = v.clone()
            v[0, 0] = 1e5
        return v

    _recast(folder / "model.safetensors", one_big)
    return folder


OVERFLOW = (rf"tensor '{BIG}' has values beyond float16's range \(largest 65504\), which become infinite in float16: "
            r"use bfloat16 or float32 instead$")


def test_weights_beyond_float16s_range_are_refused_when_loaded_in_float16(big):
    with pytest.raises(CheckpointError, match=rf"^{big / 'model.safetensors'}: {OVERFLOW}"):
        load_frontend(big, dtype="fp16")
    for dtype in ("bf16", "fp32"):  # they hold it
        model, _ = load_frontend(big, dtype=dtype)
        assert model.state_dict()[BIG][0, 0] > 65504 and all(torch.isfinite(p).all() for p in model.parameters())


def test_save_frontend_refuses_a_float16_cast_that_overflows_and_writes_nothing(big, tmp_path):
    model, _ = load_frontend(big)
    out = tmp_path / "sv16"
    with pytest.raises(CheckpointError, match=rf"^{out / 'model.safetensors'}: {OVERFLOW}"):
        save_frontend(model, out, dtype="fp16")
    assert not out.exists()
    save_frontend(model, out, dtype="bf16")  # (and it loads back: kame's own save is never refused as corrupt)
    assert load_frontend(out)[0].state_dict()[BIG][0, 0] > 65504


def test_a_float16_mimi_refuses_weights_beyond_its_range(tmp_path):
    from kame.codec.mimi import build_random, load_mimi, save_mimi

    mimi = save_mimi(build_random("tiny", seed=1), tmp_path / "mimi.safetensors")
    key = "decoder.model.0.conv.conv.weight"

    def one_big(k, v):
        if k == key:
            v = v.clone()
            v.view(-1)[0] = 1e6
        return v

    _recast(mimi, one_big)
    load_mimi(mimi)  # float32: fine
    with pytest.raises(CheckpointError, match=rf"^{mimi}: tensor '{key}' has values beyond float16's range"):
        load_mimi(mimi, dtype=torch.float16)


def test_the_cast_replaces_each_weight_in_place_so_a_load_holds_one_copy():
    """cast_checked writes each cast into the caller's dict, the original then freed (was: a second
    dict while the first held every original: a bf16 7B load into float32 peaked ~15 GB higher)."""
    import weakref

    from kame.model.tensorfiles import cast_checked

    state = {"a": torch.ones(4, dtype=torch.bfloat16), "b": torch.ones(2, dtype=torch.int64)}
    original = weakref.ref(state["a"])
    out = cast_checked(state, torch.float32, "test")
    assert out is state and state["a"].dtype == torch.float32 and state["b"].dtype == torch.int64
    assert original() is None  # (nothing holds the bfloat16 original any more)
