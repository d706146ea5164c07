"""Streaming causal convolutions, the SEANet encoder/decoder and the 25 <-> 12.5 Hz resampling
convolutions of Mimi.

Every streaming module has ``init_state(batch_size)`` returning a small state dataclass and
``forward(x, state)``; the same code runs a whole signal (a fresh state) or one frame at a time
(the state carried between calls), so both agree. Each state has ``reset(mask)`` which clears
the rows where ``mask`` [B] is True and leaves other rows untouched.

Submodule names reproduce the checkpoint's keys, e.g. ``encoder.model.0.conv.conv.weight``,
``decoder.model.2.convtr.convtr.weight``, ``downsample.conv.conv.conv.weight``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import MimiConfig


# ----------------------------------------------------------------------------- convolutions
_MM_MIN_REDUCTION = 2048  # use the matmul form when C_in * K (conv) or C_out * K (convtr) >= this
@dataclass
class ConvState:
    previous: torch.Tensor  # [B, C_in, K_eff - stride] the last input samples (left context)
    first: torch.Tensor  # [B] bool: row has seen no input yet (used by replicate padding)

    def reset(self, mask: torch.Tensor) -> None:
        self.previous = torch.where(mask.view(-1, 1, 1), 0.0, self.previous)
        self.first = self.first | mask


@dataclass
class ConvTrState:
    partial: torch.Tensor  # [B, C_out, K - stride] overlap-add tail of the last output (no bias)

    def reset(self, mask: torch.Tensor) -> None:
        self.partial = torch.where(mask.view(-1, 1, 1), 0.0, self.partial)


class _Holder(nn.Module):
    """Reproduces the checkpoint's extra naming level (``conv.conv`` / ``convtr.convtr``)."""

    def __init__(self, name: str, module: nn.Module):
        super().__init__()
        self.add_module(name, module)


class StreamingConv1d(nn.Module):
    """Causal Conv1d: left padding comes from the state (zeros, or the first sample when
    ``pad_mode='replicate'``). Input length must be a multiple of the stride."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = True, pad_mode: str = "constant"):
        super().__init__()
        assert pad_mode in ("constant", "replicate")
        self.pad_mode = pad_mode
        self.conv = _Holder("conv", nn.Conv1d(c_in, c_out, kernel_size, stride, dilation=dilation, groups=groups, bias=bias))
        self.stride = stride
        self.left = (kernel_size - 1) * dilation + 1 - stride  # samples of left context kept
        assert self.left >= 0, "stride larger than the kernel is not supported"
        # Wide, short convolutions (the low-rate layers) are faster as one matmul over unfolded
        # windows than through oneDNN on one thread; the choice is static so whole-signal and
        # streamed runs use the same arithmetic.
        self.use_mm = groups == 1 and dilation == 1 and c_in * kernel_size >= _MM_MIN_REDUCTION

    @property
    def inner(self) -> nn.Conv1d:
        return self.conv.conv

    def init_state(self, batch_size: int) -> ConvState:
        w = self.inner.weight
        return ConvState(
            torch.zeros(batch_size, self.inner.in_channels, self.left, device=w.device, dtype=w.dtype),
            torch.ones(batch_size, dtype=torch.bool, device=w.device),
        )

    def forward(self, x: torch.Tensor, state: ConvState) -> torch.Tensor:
        # x [B, C_in, T] -> [B, C_out, T // stride]
        assert x.shape[-1] % self.stride == 0, (x.shape, self.stride)
        if self.left:
            if self.pad_mode == "replicate":
                init = x[..., :1].expand(-1, -1, self.left)
                state.previous = torch.where(state.first.view(-1, 1, 1), init, state.previous)
                state.first = torch.zeros_like(state.first)
            x = torch.cat([state.previous, x], dim=-1)
            state.previous = x[..., x.shape[-1] - self.left:].clone()
        if self.use_mm:
            m = self.inner
            B, C, T = x.shape
            u = x.unfold(-1, m.kernel_size[0], self.stride)  # [B, C_in, T_out, K]
            u = u.permute(0, 2, 1, 3).reshape(B, u.shape[2], -1)  # [B, T_out, C_in * K]
            y = u @ m.weight.view(m.out_channels, -1).t()  # [B, T_out, C_out]
            if m.bias is not None:
                y = y + m.bias
            return y.transpose(1, 2)
        return self.inner(x)


class StreamingConvTranspose1d(nn.Module):
    """Causal ConvTranspose1d: the overlapping tail (K - stride samples) is kept in the state
    and added to the next call's head, so output length is exactly T * stride."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, groups: int = 1, bias: bool = True):
        super().__init__()
        self.convtr = _Holder("convtr", nn.ConvTranspose1d(c_in, c_out, kernel_size, stride, groups=groups, bias=bias))
        self.stride = stride
        self.tail = kernel_size - stride
        self.use_mm = groups == 1 and kernel_size % stride == 0 and c_out * kernel_size >= _MM_MIN_REDUCTION

    @property
    def inner(self) -> nn.ConvTranspose1d:
        return self.convtr.convtr

    def init_state(self, batch_size: int) -> ConvTrState:
        w = self.inner.weight
        return ConvTrState(torch.zeros(batch_size, self.inner.out_channels, self.tail, device=w.device, dtype=w.dtype))

    def forward(self, x: torch.Tensor, state: ConvTrState) -> torch.Tensor:
        # x [B, C_in, T] -> [B, C_out, T * stride]
        m = self.inner
        if self.use_mm:  # one matmul, then overlap-add of the K / S shifted blocks
            B, C, T = x.shape
            S, K, Co = self.stride, m.kernel_size[0], m.out_channels
            z = (x.transpose(1, 2) @ m.weight.view(C, Co * K)).view(B, T, Co, K // S, S)  # [B, T, C_out, K/S, S]
            y = x.new_zeros(B, Co, T + K // S - 1, S)
            for i in range(K // S):
                y[:, :, i: i + T] += z[:, :, :, i].permute(0, 2, 1, 3)
            y = y.flatten(2)  # [B, C_out, (T-1)*S + K]
        else:
            y = F.conv_transpose1d(x, m.weight, None, m.stride, groups=m.groups)  # [B, C_out, (T-1)*S + K]
        if self.tail:
            y = torch.cat([y[..., : self.tail] + state.partial, y[..., self.tail:]], dim=-1)
            state.partial = y[..., y.shape[-1] - self.tail:].clone()
            y = y[..., : y.shape[-1] - self.tail]
        if m.bias is not None:
            y = y + m.bias[:, None]
        return y


# ----------------------------------------------------------------------------- SEANet
def _run(layers: nn.Sequential, x: torch.Tensor, states: list) -> torch.Tensor:
    """Apply a Sequential whose streaming members take a state (states[i] is None otherwise)."""
    for layer, st in zip(layers, states):
        x = layer(x) if st is None else layer(x, st)
    return x


def _init(layers: nn.Sequential, batch_size: int) -> list:
    return [m.init_state(batch_size) if hasattr(m, "init_state") else None for m in layers]


@dataclass
class SeqState:
    states: list  # one entry per layer of a Sequential: a state, a nested SeqState, or None

    def reset(self, mask: torch.Tensor) -> None:
        for s in self.states:
            if s is not None:
                s.reset(mask)


class ResnetBlock(nn.Module):
    """x + conv1x1(elu(conv_k(elu(x)))), the hidden width is dim // compress."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int):
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(
            nn.ELU(), StreamingConv1d(dim, hidden, kernel_size, dilation=dilation),
            nn.ELU(), StreamingConv1d(hidden, dim, 1),
        )

    def init_state(self, batch_size: int) -> SeqState:
        return SeqState(_init(self.block, batch_size))

    def forward(self, x: torch.Tensor, state: SeqState) -> torch.Tensor:
        return x + _run(self.block, x, state.states)


class SEANetEncoder(nn.Module):
    """pcm [B, 1, T] -> latent [B, dimension, T / hop] (hop 960: 25 Hz at 24 kHz)."""

    def __init__(self, cfg: MimiConfig):
        super().__init__()
        mult = 1
        nf = cfg.n_filters
        layers: list[nn.Module] = [StreamingConv1d(1, nf, cfg.kernel_size)]
        for ratio in reversed(cfg.ratios):
            for j in range(cfg.n_residual_layers):
                layers.append(ResnetBlock(mult * nf, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.compress))
            layers += [nn.ELU(), StreamingConv1d(mult * nf, 2 * mult * nf, 2 * ratio, stride=ratio)]
            mult *= 2
        layers += [nn.ELU(), StreamingConv1d(mult * nf, cfg.dimension, cfg.last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def init_state(self, batch_size: int) -> SeqState:
        return SeqState(_init(self.model, batch_size))

    def forward(self, x: torch.Tensor, state: SeqState) -> torch.Tensor:
        return _run(self.model, x, state.states)


class SEANetDecoder(nn.Module):
    """latent [B, dimension, S] -> pcm [B, 1, S * hop]."""

    def __init__(self, cfg: MimiConfig):
        super().__init__()
        nf = cfg.n_filters
        mult = 2 ** len(cfg.ratios)
        layers: list[nn.Module] = [StreamingConv1d(cfg.dimension, mult * nf, cfg.kernel_size)]
        for ratio in cfg.ratios:
            layers += [nn.ELU(), StreamingConvTranspose1d(mult * nf, mult * nf // 2, 2 * ratio, stride=ratio)]
            for j in range(cfg.n_residual_layers):
                layers.append(ResnetBlock(mult * nf // 2, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.compress))
            mult //= 2
        layers += [nn.ELU(), StreamingConv1d(nf, 1, cfg.last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def init_state(self, batch_size: int) -> SeqState:
        return SeqState(_init(self.model, batch_size))

    def forward(self, z: torch.Tensor, state: SeqState) -> torch.Tensor:
        return _run(self.model, z, state.states)


# ----------------------------------------------------------------------------- 25 <-> 12.5 Hz
class ConvDownsample(nn.Module):
    """Learnt strided conv (kernel 2*stride, no bias, replicate left padding): 25 Hz -> 12.5 Hz."""

    def __init__(self, stride: int, dimension: int):
        super().__init__()
        self.conv = StreamingConv1d(dimension, dimension, 2 * stride, stride=stride, bias=False, pad_mode="replicate")

    def init_state(self, batch_size: int) -> ConvState:
        return self.conv.init_state(batch_size)

    def forward(self, x: torch.Tensor, state: ConvState) -> torch.Tensor:
        return self.conv(x, state)


class ConvTrUpsample(nn.Module):
    """Learnt depthwise transposed conv (kernel 2*stride, no bias): 12.5 Hz -> 25 Hz.
    Depthwise (groups = dimension) as in the published checkpoint."""

    def __init__(self, stride: int, dimension: int):
        super().__init__()
        self.convtr = StreamingConvTranspose1d(dimension, dimension, 2 * stride, stride=stride, groups=dimension, bias=False)

    def init_state(self, batch_size: int) -> ConvTrState:
        return self.convtr.init_state(batch_size)

    def forward(self, x: torch.Tensor, state: ConvTrState) -> torch.Tensor:
        return self.convtr(x, state)
