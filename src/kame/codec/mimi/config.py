"""The Mimi configuration: one dataclass holding the published defaults, plus a tiny preset.

The published Mimi (Kyutai, arXiv 2410.00037; checkpoint
``tokenizer-e351c8d8-checkpoint125.safetensors``) is ``MimiConfig()``; ``MimiConfig.tiny()`` keeps
the same ratios (so the same 24 kHz / 12.5 Hz / 1920-sample frame layout) with small widths, for
tests and benchmarks.

    from kame.codec.mimi.config import MimiConfig, PRESETS
    cfg = MimiConfig()             # published shapes, 32 codebooks stored, 8 used
    cfg = PRESETS["tiny"]()        # a few thousand parameters

Invalid values (non-positive ratios or sizes, a frame that is not a whole number of hops ...)
raise ConfigError naming the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from ...errors import ConfigError

MIMI_NAME = "tokenizer-e351c8d8-checkpoint125.safetensors"  # file name in Kyutai's HF repos
DEFAULT_REPO = "kyutai/moshiko-pytorch-bf16"  # a repo holding it
_POSITIVE = ("sample_rate", "frame_rate", "dimension", "n_filters", "kernel_size", "last_kernel_size",
             "residual_kernel_size", "dilation_base", "compress", "d_model", "num_heads", "dim_feedforward",
             "max_period", "codebook_dim", "n_q", "n_q_semantic", "bins")  # sizes and rates (> 0)


@dataclass
class MimiConfig:
    # --- audio / frames
    sample_rate: int = 24000  # Hz, mono
    frame_rate: float = 12.5  # codec frames per second (80 ms, 1920 samples)
    # --- SEANet encoder/decoder (causal convolutions, ELU, true skip, constant padding)
    dimension: int = 512  # latent channels at the SEANet output (25 Hz)
    n_filters: int = 64  # channels of the first conv; doubled at each downsampling
    ratios: tuple[int, ...] = (8, 6, 5, 4)  # decoder order; the encoder uses them reversed
    n_residual_layers: int = 1  # residual blocks per resolution
    kernel_size: int = 7  # first conv
    last_kernel_size: int = 3  # last conv
    residual_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2  # residual branch width = channels // compress
    # --- transformers after the encoder / before the decoder (25 Hz, causal, RoPE)
    d_model: int = 512
    num_heads: int = 8
    num_layers: int = 8
    dim_feedforward: int = 2048  # plain GELU MLP, no biases
    context: int = 250  # attention span in 25 Hz steps (10 s)
    max_period: float = 10000.0  # RoPE
    layer_scale: float | None = 0.01  # LayerScale init value; None disables LayerScale
    # --- split residual vector quantizer (12.5 Hz)
    codebook_dim: int = 256  # the quantizer works in this projected space
    n_q: int = 32  # codebooks stored in the checkpoint (semantic + acoustic)
    n_q_semantic: int = 1  # the first codebook(s), distilled from WavLM
    bins: int = 2048  # entries per codebook (the token cardinality)
    num_codebooks: int = 8  # codebooks actually used (Moshi uses 8); <= n_q

    def __post_init__(self) -> None:
        self.ratios = tuple(int(r) for r in self.ratios)
        self.validate()

    # ---- derived sizes
    @property
    def hop_length(self) -> int:
        """Samples per encoder (25 Hz) step: the product of the ratios (960)."""
        n = 1
        for r in self.ratios:
            n *= r
        return n

    @property
    def frame_size(self) -> int:
        """Samples per codec frame (1920 = 80 ms)."""
        return int(round(self.sample_rate / self.frame_rate))

    @property
    def encoder_frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def resample_stride(self) -> int:
        """Encoder steps per codec frame (2: 25 Hz -> 12.5 Hz)."""
        return self.frame_size // self.hop_length

    def validate(self) -> None:
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ConfigError(f"ratios must be positive integers, got {list(self.ratios)}")
        for name in _POSITIVE:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("n_residual_layers", "num_layers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.frame_size * self.frame_rate != self.sample_rate:
            raise ConfigError(f"sample_rate {self.sample_rate} is not a whole number of frames at {self.frame_rate} Hz")
        if self.frame_size % self.hop_length:
            raise ConfigError(
                f"frame_size {self.frame_size} is not a multiple of the SEANet hop {self.hop_length} (ratios {self.ratios})"
            )
        if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
            raise ConfigError(f"d_model {self.d_model} must split into {self.num_heads} heads of even size (RoPE)")
        if not self.n_q_semantic < self.n_q:
            raise ConfigError(f"n_q ({self.n_q}) must exceed n_q_semantic ({self.n_q_semantic})")
        if not self.n_q_semantic <= self.num_codebooks <= self.n_q:
            raise ConfigError(
                f"num_codebooks must be in [{self.n_q_semantic}, {self.n_q}] (codebooks in the checkpoint), got {self.num_codebooks}"
            )
        if self.context < 1:
            raise ConfigError(f"context must be >= 1, got {self.context}")

    # ---- (de)serialisation, used for the safetensors metadata of kame-written checkpoints
    def to_json(self) -> str:
        d = asdict(self)
        d["ratios"] = list(self.ratios)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MimiConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a MimiConfig must be a JSON object, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown MimiConfig key(s) {unknown}; known: {sorted(known)}")
        for k, v in d.items():  # the types of the defaults (JSON has no tuples: ratios is a list)
            default = known[k].default
            if isinstance(default, tuple):
                ok, want = isinstance(v, (list, tuple)) and all(type(r) is int for r in v), "a list of ints"
            elif isinstance(default, float):
                ok, want = type(v) in (int, float) or (v is None and k == "layer_scale"), "a number"
            else:
                ok, want = type(v) is int, "an int"
            if not ok:
                raise ConfigError(f"MimiConfig key {k!r} must be {want}, got {v!r}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "MimiConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def tiny(cls, **overrides: Any) -> "MimiConfig":
        """Same frame layout as Mimi, tiny widths; context 8 so short tests cross the window."""
        d: dict[str, Any] = dict(
            dimension=32, n_filters=4, d_model=32, num_heads=2, num_layers=2, dim_feedforward=64,
            context=8, codebook_dim=16, n_q=16, bins=128, num_codebooks=8,
        )
        d.update(overrides)
        return cls(**d)


PRESETS = {"mimi": MimiConfig, "tiny": MimiConfig.tiny}

__all__ = ["MimiConfig", "PRESETS", "MIMI_NAME", "DEFAULT_REPO"]
