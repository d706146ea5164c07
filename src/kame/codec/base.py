"""The codec interface shared by Mimi and the embedded CPU codec.

Token layout (what the front-end sees): frames of 80 ms (``frame_size`` = 1920 samples at
24 kHz), ``num_codebooks`` codes per frame, each in ``[0, cardinality)``; codebook 0 is the
coarse/semantic one, later codebooks refine it (coding with fewer codebooks degrades
gracefully: ``codec.set_num_codebooks(k)`` before encoding; Mimi's codes are then a prefix of
its 8-codebook ones, the embedded codec's are not, since its encoder tracks the decoder's F0).

Two ways to run a codec:
  * whole signal:  ``codes = codec.encode(pcm)``  pcm [B, T] float32 -> codes [B, K, F]
                   ``pcm = codec.decode(codes)``  codes [B, K, F]    -> pcm [B, F * frame_size]
  * streaming:     ``s = codec.stream(batch_size)`` then per 80 ms frame
                   ``s.encode_frame(pcm)``  [B, frame_size] -> [B, K]
                   ``s.decode_frame(codes)`` [B, K]        -> [B, frame_size]
                   ``s.reset(rows)`` clears the state of some rows (a session left / joined)
Streaming and whole-signal results must agree (tests check it per codec).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch


class CodecStream(ABC):
    """Per-batch streaming state of a codec: one row per session."""

    batch_size: int

    @abstractmethod
    def encode_frame(self, pcm: torch.Tensor) -> torch.Tensor:
        """pcm [B, frame_size] float32 in [-1, 1] -> codes [B, K] int64."""

    @abstractmethod
    def decode_frame(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K] int64 -> pcm [B, frame_size] float32."""

    @abstractmethod
    def reset(self, rows: Sequence[int] | torch.Tensor | None = None) -> None:
        """Reset the streaming state of ``rows`` (all rows when None)."""


class Codec(ABC):
    sample_rate: int = 24000
    frame_rate: float = 12.5
    frame_size: int = 1920
    num_codebooks: int = 8
    cardinality: int = 2048

    @abstractmethod
    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        """pcm [B, T] -> codes [B, K, F]; T is padded up to a whole number of frames."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, F] -> pcm [B, F * frame_size]."""

    @abstractmethod
    def stream(self, batch_size: int = 1) -> CodecStream:
        """A fresh streaming state for ``batch_size`` rows."""

    @abstractmethod
    def set_num_codebooks(self, n: int) -> None:
        """Encode with the first ``n`` codebooks from now on (ConfigError if out of range)."""
