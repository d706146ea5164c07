"""Seed -> torch generator, the one way kame does it: every seed in [0, 2**64 - 1] gives its own
random stream, and a seed below 2**32 gives exactly what ``manual_seed`` gives.

    g = seed_generator(torch.Generator(device=dev), seed)   # a new generator
    seed_generator(g, seed)                                 # reseed one (a new session in a row)
    manual_seed(seed)                                       # torch.manual_seed's place (random weights)

Why not just ``manual_seed``: torch's CPU generator (mt19937) is seeded with the seed's low 32
bits only, so ``manual_seed(5)`` and ``manual_seed(2**32 + 5)`` give the same stream (CUDA's and
MPS's Philox generators take all 64 bits). For a seed of 2**32 or more on the CPU, the generator's
624-word mt19937 state is instead made by the reference 64-bit seeding of mt19937,
``init_by_array([low 32 bits, high 32 bits])`` (numpy's ``RandomState([lo, hi])`` computes it),
and written in with ``Generator.set_state``. Its ``initial_seed()`` is the whole seed. The state's
layout is checked against what ``manual_seed`` wrote before it is changed: a torch whose layout
differs gets a RuntimeError for such a seed, never a silently shared stream.

The seeds taken are torch's: an integer (a numpy one too) in [-2**63, 2**64 - 1], a negative one
counting as seed + 2**64 as in ``torch.manual_seed`` (so -1 is 2**64 - 1, and gets that seed's
stream, no longer the low 32 bits' one). Anything else is a ValueError naming that range.
(Callers that promise [0, 2**64 - 1], as frontend.seed, check first.)
"""

from __future__ import annotations

import operator

import numpy as np
import torch

_MT_WORDS = 624  # mt19937's state
_HEAD = 3  # uint64 fields before the state words in torch's CPU generator state: seed, left|seeded, next


def seed_generator(generator: torch.Generator, seed: int) -> torch.Generator:
    """Seed ``generator`` with ``seed`` (an int in [0, 2**64 - 1], or a negative one as torch takes it)
    and return it (see the module docstring: below 2**32 this is ``generator.manual_seed(seed)``)."""
    seed = _torch_seed(seed)
    generator.manual_seed(seed)
    if seed >> 32 and generator.device.type == "cpu":
        generator.set_state(_cpu_state(generator.get_state(), seed))
    return generator


def manual_seed(seed: int) -> None:
    """``torch.manual_seed(seed)`` (every device's global generator), with all 64 bits of the seed
    counting on the CPU one as well."""
    seed = _torch_seed(seed)
    torch.manual_seed(seed)
    seed_generator(torch.default_generator, seed)


def _torch_seed(seed: int) -> int:
    """``seed`` as torch's generators hold it, in [0, 2**64 - 1] (a negative seed + 2**64, as
    ``torch.manual_seed`` maps it), else a ValueError naming the range (torch's would be a raw
    "Overflow when unpacking long long", or a layout RuntimeError from _cpu_state)."""
    try:
        n = None if isinstance(seed, bool) else operator.index(seed)
    except TypeError:
        n = None
    if n is None or not -2**63 <= n < 2**64:
        raise ValueError(f"seed must be an integer in [-2**63, 2**64 - 1] (a negative seed counts as seed + 2**64, as in "
                         f"torch.manual_seed), got {seed!r}")
    return n % 2**64


def _cpu_state(state: torch.Tensor, seed: int) -> torch.Tensor:
    """The CPU generator's freshly seeded ``state`` (bytes) with its mt19937 words replaced by
    init_by_array([lo, hi]) of the 64-bit ``seed``."""
    raw = state.numpy().copy()
    head = raw[: (_HEAD + _MT_WORDS) * 8].view("<u8")
    lo, hi = seed & 0xFFFFFFFF, seed >> 32
    # what manual_seed wrote: the seed, left = 1 | seeded = 1 << 32, next = 0, then init_genrand(lo)
    if not (head[0] == seed and head[1] == 1 | 1 << 32 and head[2] == 0 and head[_HEAD] == lo):
        raise RuntimeError(f"seed {seed}: torch {torch.__version__}'s CPU generator state is not laid out as "
                           f"kame expects, so a seed of 2**32 or more cannot get its own stream here; use a "
                           f"seed below 2**32")
    head[_HEAD:] = np.random.RandomState([lo, hi]).get_state()[1]
    return torch.from_numpy(raw)
