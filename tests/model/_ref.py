"""Helpers shared by the front-end tests: tiny Moshi/STT-shaped configs built by both kame and the
moshi reference package from the same safetensors file."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import torch
from safetensors.torch import save_file

from kame.model.config import LMConfig
from kame.model.lm import LMModel

MOSHI_DELAYS = [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]


def moshi_kwargs(kind: str = "moshi") -> dict:
    """A tiny config in the published config.json format (moshi's _lm_kwargs keys)."""
    d = {
        "dim": 64, "text_card": 300, "existing_text_padding_id": 3, "n_q": 16, "dep_q": 8,
        "card": 100, "num_heads": 4, "num_layers": 2, "hidden_scale": 4.125, "causal": True,
        "layer_scale": None, "context": 12, "max_period": 10000, "gating": "silu",
        "norm": "rms_norm_f32", "positional_embedding": "rope", "depformer_dim": 32,
        "depformer_dim_feedforward": 132, "depformer_num_heads": 2, "depformer_num_layers": 2,
        "depformer_layer_scale": None, "depformer_multi_linear": True, "depformer_context": 8,
        "depformer_max_period": 10000, "depformer_gating": "silu", "depformer_pos_emb": "none",
        "depformer_weights_per_step": True, "delays": list(MOSHI_DELAYS),
    }
    if kind == "stt":
        d.update(n_q=8, dep_q=0, delays=[0] * 9, extra_heads_num_heads=2, extra_heads_dim=6)
    return d


def moshi_lm(kwargs: dict, weights: Path):
    from moshi.models.loaders import get_moshi_lm

    return get_moshi_lm(str(weights), lm_kwargs=dict(kwargs), device="cpu", dtype=torch.float32)


def make_checkpoint(folder: Path, kind: str = "moshi", oracle: bool = False, seed: int = 0,
                    extra: dict | None = None) -> tuple[dict, dict]:
    """Write config.json + model.safetensors of random weights (moshi key names).
    Returns (config dict, state dict). The moshi package can load it when oracle=False."""
    torch.manual_seed(seed)
    kw = moshi_kwargs(kind)
    kw.update(extra or {})
    cfg = LMConfig.from_dict(kw, oracle=oracle)
    model = LMModel(cfg)
    with torch.no_grad():  # larger random values than the init, for varied greedy outputs
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 1.5 / p.shape[-1] ** 0.5)
            elif p.dim() == 1:  # norms / LayerScale / biases: not exactly their init
                p.add_(0.1 * torch.randn_like(p))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    raw = dict(moshi_name="model.safetensors", mimi_name="mimi.safetensors",
               tokenizer_name="tokenizer.model", model_type="moshi",
               lm_gen_config={"temp": 0.8, "temp_text": 0.7, "top_k": 250, "top_k_text": 25})
    raw.update(kw)
    (folder / "config.json").write_text(json.dumps(raw))
    return raw, state
