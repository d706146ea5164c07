"""A published Moshi / KAME state dict onto kame's LMModel (the front-end loader's, kame.model.loaders):
moshi's fused attention weights split, a training wrapper's prefix stripped, ``oracle_emb``
cloned from ``text_emb`` when absent (KAME's initialisation), then every key, shape and dtype
checked against the model (CheckpointError), and the weights cast."""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from .lm import LMModel
from .tensorfiles import strip_wrapper_prefix


def convert_state(state: dict[str, torch.Tensor], model: LMModel, dtype: torch.dtype | None,
                  upgrade_oracle: bool = True) -> tuple[dict[str, torch.Tensor], bool]:
    """Map a published state dict onto `model`'s names, check keys/shapes/dtypes, cast (``dtype``
    None: not cast, the check alone, no weight copied). Returns (state, oracle_upgraded)."""
    state = dict(state)
    expected = model.state_dict()  # meta tensors: names and shapes only
    state = strip_wrapper_prefix(state, "text_emb.weight")  # a training wrapper's "model." / "lm."
    # Fused attention weights of published checkpoints: in_proj_weight [S * O, I] -> in_projs.S.weight.
    for key in [k for k in state if k.endswith(("self_attn.in_proj_weight", "self_attn.in_proj.weight",
                                                "self_attn.out_proj.weight"))]:
        prefix, name = key.rsplit("self_attn.", 1)
        dst = "in_projs" if name.startswith("in_proj") else "out_projs"
        n = sum(1 for k in expected if k.startswith(f"{prefix}self_attn.{dst}."))
        w = state.pop(key)
        if n == 0 or w.shape[0] % n:
            raise CheckpointError(f"checkpoint key {key} shape {tuple(w.shape)} does not fit the config")
        for i, part in enumerate(w.view(n, -1, *w.shape[1:])):
            state[f"{prefix}self_attn.{dst}.{i}.weight"] = part
    upgraded = False
    if model.has_oracle and "oracle_emb.weight" not in state and upgrade_oracle:
        for k in [k for k in state if k.startswith("text_emb.")]:
            state["oracle_emb." + k[len("text_emb."):]] = state[k].clone()
        upgraded = True
    missing = [k for k in expected if k not in state]
    unknown = [k for k in state if k not in expected]
    if unknown:
        raise CheckpointError(f"checkpoint has {len(unknown)} key(s) the config does not define: "
                              f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} key(s): {', '.join(missing[:8])}"
                              f"{' ...' if len(missing) > 8 else ''}")
    for k, v in state.items():
        want = expected[k]
        if tuple(v.shape) != tuple(want.shape):
            raise CheckpointError(f"shape mismatch for {k}: checkpoint {tuple(v.shape)}, config expects {tuple(want.shape)}")
        if not v.dtype.is_floating_point:
            raise CheckpointError(f"{k} has dtype {v.dtype} (quantized?); expected floating point weights")
        if dtype is not None:
            state[k] = v.to(dtype)
    return state, upgraded
