"""Tiny checkpoints in SakanaAI/kame_finetune's layouts, written as its tools write them (the
weights built with the moshi reference package, plus the oracle_emb KAME's LMModel holds):
clean_moshi's cleaned folder (model.safetensors + moshi_lm_kwargs.json), zero_to_fp32's
MoshiForFinetuning folder, and a DeepSpeed ZeRO checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ._ref import moshi_kwargs

KWARGS = "moshi_lm_kwargs.json"


def moshi_model(kwargs: dict, seed: int = 0):
    """moshi's LMModel of ``kwargs`` with random weights (larger than its init, for varied outputs)."""
    from moshi.models.lm import LMModel

    torch.manual_seed(seed)
    model = LMModel(**kwargs)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 1.5 / p.shape[-1] ** 0.5)
            elif p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def finetune_kwargs(user_stream: bool = False, **extra) -> dict:
    """moshi_lm_kwargs.json's content (moshi's _lm_kwargs keys); ``user_stream``: as
    init_moshi_for_ft --extend_modules_for_user_stream leaves it (dep_q 16, depformer_context 16)."""
    kw = moshi_kwargs()
    if user_stream:
        kw.update(dep_q=16, depformer_context=16)
    kw.update(extra)
    return kw


def write_cleaned(folder: Path, kwargs: dict, seed: int = 0, oracle_emb: bool = True):
    """clean_moshi's output: model.safetensors (the LMModel state dict, with oracle_emb) and
    moshi_lm_kwargs.json. Returns (moshi reference model, the saved state dict)."""
    ref = moshi_model(kwargs, seed)
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    if oracle_emb:
        g = torch.Generator().manual_seed(seed + 100)
        state["oracle_emb.weight"] = torch.randn(kwargs["text_card"] + 1, kwargs["dim"], generator=g) * 0.2
    write_state(folder, state, kwargs)
    return ref, state


def write_state(folder: Path, state: dict, kwargs: dict | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    if kwargs is not None:
        (folder / KWARGS).write_text(json.dumps(kwargs, indent=4))


def removed_user_stream(ref, kwargs: dict):
    """What clean_moshi --remove_modules_for_user_stream makes of a dep_q 16 model (its module
    slicing, done here on the moshi model's modules): (moshi model of dep_q 8, its kwargs)."""
    import copy

    half = kwargs["dep_q"] // 2
    small = copy.deepcopy(ref)
    small.depformer_in = small.depformer_in[:half]
    small.depformer_emb = small.depformer_emb[:half - 1]
    small.linears = small.linears[:half]
    small.depformer_norms = small.depformer_norms[:half]
    for layer in small.depformer.layers:
        layer.self_attn.in_projs = layer.self_attn.in_projs[:half]
        layer.self_attn.out_projs = layer.self_attn.out_projs[:half]
        layer.gating = layer.gating[:half]
    kw = dict(kwargs, dep_q=half, depformer_context=half)
    out = moshi_model(kw)
    out.load_state_dict(small.state_dict(), strict=True)  # (the key sets of a dep_q 8 model)
    return out, kw


def training_state(state: dict) -> dict:
    """zero_to_fp32's MoshiForFinetuning state dict: the gating linears' weights exposed for
    ZeRO-3 (gating.linear_in.weight -> gating.linear_in_weight)."""
    return {k.replace("gating.linear_in.weight", "gating.linear_in_weight")
             .replace("gating.linear_out.weight", "gating.linear_out_weight"): v for k, v in state.items()}
