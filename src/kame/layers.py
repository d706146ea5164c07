"""Small torch building blocks shared by the front-end LM (kame.model) and Mimi (kame.codec.mimi):
rotary position embeddings, the positional attention mask of a causal window, LayerScale.

    from kame.layers import LayerScale, rope_tables, apply_rope, window_mask
    cos, sin = rope_tables(pos, head_dim, max_period)      # pos [B, T] absolute positions
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # [B, H, T, Dh], interleaved pairs
    mask = window_mask(pos_q, pos_k, context)              # [B, T, S] bool, for SDPA (add a head dim)

Both users keep keys with their absolute positions (-1 = empty slot), so one mask rule serves
whole-sequence passes, ring-buffer KV caches and per-row resets alike.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (parameter ``scale`` [dim], as in moshi's checkpoints)."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., dim]
        return self.scale * x


def rope_tables(pos: torch.Tensor, dim: int, max_period: float) -> tuple[torch.Tensor, torch.Tensor]:
    """pos [B, T] -> cos, sin [B, 1, T, dim / 2] (float32) for heads of size `dim`."""
    freqs = torch.exp(torch.arange(dim // 2, device=pos.device, dtype=torch.float32) * (-math.log(max_period) * 2 / dim))
    angle = pos.float()[:, None, :, None] * freqs  # [B, 1, T, dim/2]
    return torch.cos(angle), torch.sin(angle)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleave: bool = True) -> torch.Tensor:
    """Rotate x [B, H, T, D] by the tables of rope_tables, in float32. Pairs are (x[2i], x[2i+1])
    when `interleave` (moshi's "rope"), else (x[i], x[i + D/2]) ("rope_concat")."""
    D = x.shape[-1]
    if interleave:
        xr, xi = x.view(*x.shape[:-1], D // 2, 2).float().unbind(-1)  # each [B, H, T, D/2]
    else:
        xr, xi = x[..., : D // 2].float(), x[..., D // 2:].float()
    yr, yi = xr * cos - xi * sin, xr * sin + xi * cos
    if interleave:
        return torch.stack([yr.to(x.dtype), yi.to(x.dtype)], dim=-1).view(x.shape)
    return torch.cat([yr.to(x.dtype), yi.to(x.dtype)], dim=-1)


def window_mask(pos_q: torch.Tensor, pos_k: torch.Tensor, context: int | None) -> torch.Tensor:
    """pos_q [B, T], pos_k [B, S] (-1 = empty) -> [B, T, S] bool: key filled, not in the future,
    and fewer than `context` steps back (no limit when None)."""
    delta = pos_q[:, :, None] - pos_k[:, None, :]  # [B, T, S]
    mask = (pos_k[:, None, :] >= 0) & (delta >= 0)
    if context is not None:
        mask = mask & (delta < context)
    return mask
