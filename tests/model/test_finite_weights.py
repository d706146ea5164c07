"""NaN / inf weights are refused when a checkpoint loads (they loaded and gave NaN audio later):
the front-end, Mimi and the embedded codec share kame.model.tensorfiles.check_finite, whose error
names the file and the first offending tensor."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kame.errors import CheckpointError
from kame.model import tensorfiles
from kame.model.loaders import check_finite, load_frontend, save_frontend


def _message(path, key) -> str:
    return rf"{re.escape(str(path))}: tensor '{re.escape(key)}' has NaN or infinite values"


def test_check_finite_names_the_first_bad_tensor():
    ok = torch.ones(3)
    state = {"a": ok, "b": torch.tensor([1.0, float("-inf")]), "c": torch.tensor([float("nan")])}
    with pytest.raises(CheckpointError, match=_message("w.safetensors", "b")):
        check_finite(state, "w.safetensors")
    check_finite({"a": ok, "ids": torch.tensor([1, 2], dtype=torch.int64), "empty": torch.empty(0)}, "w")


@pytest.mark.parametrize("dtype, value", [(torch.float16, 6e4), (torch.bfloat16, 3e38), (torch.float32, 3e38)])
def test_an_overflowing_sum_of_finite_weights_is_not_an_error(dtype, value):
    big = torch.full((4096,), value, dtype=dtype)  # each finite, their sum is not (the cheap test)
    assert not torch.isfinite(big.sum())
    check_finite({"big": big}, "w")
    big[17] = float("nan")
    with pytest.raises(CheckpointError, match=_message("w", "big")):
        check_finite({"big": big}, "w")


@pytest.mark.parametrize("dtype, bad", [("fp32", float("nan")), ("bf16", float("inf")), ("fp16", float("-inf"))])
def test_frontend_checkpoint_with_non_finite_weights(tmp_path, dtype, bad):
    model, _ = load_frontend("random:tiny")
    folder = save_frontend(model, tmp_path / "ck", dtype=dtype)
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    with safe_open(str(weights), "pt") as f:
        order = list(f.keys())
    keys = ["transformer.layers.1.gating.linear_out.weight", "text_emb.weight"]
    for k in keys:
        state[k].view(-1)[5] = bad
    save_file(state, str(weights))
    first = min(keys, key=order.index)  # the file's first bad tensor is the one named
    with pytest.raises(CheckpointError, match=_message(weights, first)):
        load_frontend(folder)
    with pytest.raises(CheckpointError, match="has NaN or infinite"):  # a .safetensors path as the spec
        load_frontend(weights)


def test_finite_frontend_checkpoint_loads(tmp_path):
    model, _ = load_frontend("random:tiny")
    folder = save_frontend(model, tmp_path / "ck", dtype="bf16")
    loaded, info = load_frontend(folder)
    assert info.weights == folder / "model.safetensors"
    assert all(torch.isfinite(p).all() for p in loaded.parameters())


def test_mimi_and_embedded_codec_use_the_shared_check(tmp_path, monkeypatch):
    from kame.codec.embedded import load as load_embedded
    from kame.codec.embedded.model import DEFAULT_PATH
    from kame.codec.mimi import build_random, load_mimi, save_mimi

    mimi = save_mimi(build_random("tiny", seed=1), tmp_path / "mimi.safetensors")
    state = load_file(str(mimi))
    with safe_open(str(mimi), "pt") as f:
        meta = f.metadata()
    key = "decoder.model.0.conv.conv.weight"
    state[key].view(-1)[0] = float("inf")
    save_file(state, str(mimi), metadata=meta)
    with pytest.raises(CheckpointError, match=_message(mimi, key)):
        load_mimi(mimi)

    with safe_open(str(DEFAULT_PATH), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["proj"][0, 0] = float("-inf")
    emb = tmp_path / "emb.safetensors"
    save_file(tensors, str(emb), metadata=meta)
    with pytest.raises(CheckpointError, match=_message(emb, "proj")):
        load_embedded(emb)

    seen = []  # one piece of code: both codecs go through kame.model.tensorfiles.check_finite
    monkeypatch.setattr(tensorfiles, "check_finite", lambda t, where: seen.append(str(where)))
    load_mimi(mimi)
    load_embedded(emb)
    assert seen == [str(mimi), str(emb)]
