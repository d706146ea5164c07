"""Test helpers for kame.train: a tiny exact codec and synthetic dialogues."""

from __future__ import annotations

import math

import numpy as np
import torch

from kame.codec.base import Codec, check_num_codebooks, check_pcm
from kame.train.data import FRAME_SIZE, Dialogue

LEVELS = 1000  # a frame's codes say its mean level in thousandths


class FakeCodec(Codec):
    """Codes each 80 ms frame by its mean level: codebook k's code is (round(1000 * mean) + 7k) mod
    2048; decode gives frames at that level. Frames of constant levels in [0, 1) round-trip
    exactly (through a 16-bit wav too)."""

    fingerprint = "ab" * 32

    def __init__(self, num_codebooks: int = 8) -> None:
        self.num_codebooks = num_codebooks
        self.calls = 0

    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        pcm = check_pcm(pcm, "encode")
        self.calls += 1
        B, N = pcm.shape
        F = math.ceil(N / FRAME_SIZE)
        pcm = torch.nn.functional.pad(pcm, (0, F * FRAME_SIZE - N))
        level = (pcm.view(B, F, FRAME_SIZE).mean(-1) * LEVELS).round().long().clamp(0, LEVELS - 1)
        k = torch.arange(self.num_codebooks)[None, :, None]
        return (level[:, None, :] + 7 * k) % self.cardinality

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        level = codes[:, 0].float() / LEVELS  # [B, F]
        return level.repeat_interleave(FRAME_SIZE, dim=1)

    def stream(self, batch_size: int = 1):
        raise NotImplementedError("training encodes whole signals")

    def set_num_codebooks(self, n: int) -> None:
        self.num_codebooks = check_num_codebooks(n, 1, 8)


def codes_of(levels, K: int = 8) -> torch.Tensor:
    """FakeCodec's codes [K, F] of frames at these levels."""
    lv = torch.as_tensor(levels)[None, :]
    return (lv + 7 * torch.arange(K)[:, None]) % 2048


def audio(user_levels, agent_levels, tail: int = 0) -> np.ndarray:
    """[N, 2] float32 of frames at these levels (thousandths); ``tail`` samples more of silence."""
    u = np.repeat(np.asarray(user_levels, np.float32) / LEVELS, FRAME_SIZE)
    a = np.repeat(np.asarray(agent_levels, np.float32) / LEVELS, FRAME_SIZE)
    return np.pad(np.stack([u, a], axis=1), ((0, tail), (0, 0)))


def levels(T: int, seed: int) -> list[int]:
    g = np.random.default_rng(seed)
    return [int(x) for x in g.integers(1, LEVELS - 1, T)]


def dialogue(T: int = 16, seed: int = 0, **kw) -> Dialogue:
    return Dialogue(audio(levels(T, seed), levels(T, seed + 100)), **kw)
