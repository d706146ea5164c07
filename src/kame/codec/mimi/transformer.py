"""Mimi's small causal transformers (one after the SEANet encoder, one before the decoder).

Pre-norm layers (LayerNorm), multi-head self-attention with interleaved RoPE and a causal
window of ``context`` steps, a GELU MLP without biases, LayerScale on both residual branches.
They run at 25 Hz on [B, C, T] tensors ("conv layout").

Streaming: ``AttnState`` keeps the last ``context - 1`` keys/values of each row and their
positions (-1 = empty), so one frame at a time gives exactly the whole-signal result, with
per-row offsets (a row reset starts again at position 0 without touching the others).
Parameter names reproduce the checkpoint's keys, e.g.
``encoder_transformer.transformer.layers.0.self_attn.in_projs.0.weight``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import LayerScale, apply_rope, rope_tables, window_mask
from .config import MimiConfig

_QUERY_CHUNK = 256  # whole-signal attention is computed in query blocks of this size


@dataclass
class AttnState:
    k: torch.Tensor  # [B, H, context - 1, Dh] keys of the most recent steps (RoPE applied)
    v: torch.Tensor  # [B, H, context - 1, Dh]
    pos: torch.Tensor  # [B, context - 1] long, position of each cached step, -1 = empty
    offset: torch.Tensor  # [B] long, position of the next step

    def reset(self, mask: torch.Tensor) -> None:
        # (k, v zeroed too: a masked slot's weight is 0, but 0 * NaN is NaN, so a NaN or inf left in
        # a reset row's cache would reach every later session of that row)
        self.k = torch.where(mask.view(-1, 1, 1, 1), 0.0, self.k)
        self.v = torch.where(mask.view(-1, 1, 1, 1), 0.0, self.v)
        self.pos = torch.where(mask.view(-1, 1), -1, self.pos)
        self.offset = torch.where(mask, 0, self.offset)


@dataclass
class TransformerState:
    layers: list[AttnState]

    def reset(self, mask: torch.Tensor) -> None:
        for s in self.layers:
            s.reset(mask)


class SelfAttention(nn.Module):
    def __init__(self, cfg: MimiConfig):
        super().__init__()
        d = cfg.d_model
        self.num_heads = cfg.num_heads
        self.context = cfg.context
        self.max_period = cfg.max_period
        # one projection each, kept in ModuleLists to match the checkpoint's key names
        self.in_projs = nn.ModuleList([nn.Linear(d, 3 * d, bias=False)])  # -> [q | k | v]
        self.out_projs = nn.ModuleList([nn.Linear(d, d, bias=False)])

    def init_state(self, batch_size: int) -> AttnState:
        w = self.in_projs[0].weight
        H = self.num_heads
        Dh = w.shape[1] // H
        L = self.context - 1
        z = torch.zeros(batch_size, H, L, Dh, device=w.device, dtype=w.dtype)
        return AttnState(
            z, z.clone(),
            torch.full((batch_size, L), -1, device=w.device, dtype=torch.long),
            torch.zeros(batch_size, device=w.device, dtype=torch.long),
        )

    def forward(self, x: torch.Tensor, state: AttnState) -> torch.Tensor:
        # x [B, T, C] -> [B, T, C]
        B, T, C = x.shape
        H = self.num_heads
        q, k, v = self.in_projs[0](x).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)  # each [B, H, T, Dh]
        pos_q = state.offset[:, None] + torch.arange(T, device=x.device)  # [B, T]
        cos, sin = rope_tables(pos_q, q.shape[-1], self.max_period)  # [B, 1, T, Dh/2]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # interleaved pairs, as moshi
        L = state.k.shape[2]
        keys = torch.cat([state.k, k], dim=2)  # [B, H, L + T, Dh]
        values = torch.cat([state.v, v], dim=2)
        pos_k = torch.cat([state.pos, pos_q], dim=1)  # [B, L + T]
        outs = []
        for s in range(0, T, _QUERY_CHUNK):
            e = min(T, s + _QUERY_CHUNK)
            # queries s..e-1 can only see keys s-(context-1).. e-1, i.e. indices [s, L + e)
            mask = window_mask(pos_q[:, s:e], pos_k[:, s: L + e], self.context)  # [B, Tq, Tk]
            outs.append(F.scaled_dot_product_attention(q[:, :, s:e], keys[:, :, s: L + e], values[:, :, s: L + e], mask[:, None]))
        y = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]  # [B, H, T, Dh]
        state.k = keys[:, :, T:].contiguous()
        state.v = values[:, :, T:].contiguous()
        state.pos = pos_k[:, T:].contiguous()
        state.offset = state.offset + T
        return self.out_projs[0](y.transpose(1, 2).reshape(B, T, C))


class TransformerLayer(nn.Module):
    def __init__(self, cfg: MimiConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn = SelfAttention(cfg)
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.linear1 = nn.Linear(d, cfg.dim_feedforward, bias=False)
        self.linear2 = nn.Linear(cfg.dim_feedforward, d, bias=False)
        ls = cfg.layer_scale
        self.layer_scale_1 = LayerScale(d, ls) if ls is not None else nn.Identity()
        self.layer_scale_2 = LayerScale(d, ls) if ls is not None else nn.Identity()

    def forward(self, x: torch.Tensor, state: AttnState) -> torch.Tensor:
        x = x + self.layer_scale_1(self.self_attn(self.norm1(x), state))
        return x + self.layer_scale_2(self.linear2(F.gelu(self.linear1(self.norm2(x)))))


class _Layers(nn.Module):
    def __init__(self, cfg: MimiConfig):
        super().__init__()
        self.layers = nn.ModuleList([TransformerLayer(cfg) for _ in range(cfg.num_layers)])


class ProjectedTransformer(nn.Module):
    """[B, dimension, T] -> [B, dimension, T]; linear projections only when d_model differs."""

    def __init__(self, cfg: MimiConfig):
        super().__init__()
        self.transformer = _Layers(cfg)
        self.input_proj = nn.Linear(cfg.dimension, cfg.d_model, bias=False) if cfg.d_model != cfg.dimension else None
        self.output_projs = nn.ModuleList(
            [nn.Linear(cfg.d_model, cfg.dimension, bias=False) if cfg.d_model != cfg.dimension else nn.Identity()]
        )

    def init_state(self, batch_size: int) -> TransformerState:
        return TransformerState([layer.self_attn.init_state(batch_size) for layer in self.transformer.layers])

    def forward(self, x: torch.Tensor, state: TransformerState) -> torch.Tensor:
        x = x.transpose(1, 2)  # [B, T, C]
        if self.input_proj is not None:
            x = self.input_proj(x)
        for layer, st in zip(self.transformer.layers, state.layers):
            x = layer(x, st)
        return self.output_projs[0](x).transpose(1, 2)
