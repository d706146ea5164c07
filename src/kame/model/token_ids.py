"""The int checks of what callers give the Stepper and its oracle feed: ``as_int`` (a row, a seed,
a batch size, a sampling value) and ``token_list`` (oracle token ids). Each refuses what is no int
with a TypeError saying what was given (a bool or a float too: int() would round them silently).
Moved here from kame.model.stepper, which still exports both."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Set as AbstractSet
from typing import Iterable, Sequence

import numpy as np
import torch


def as_int(x, what: str) -> int:
    """``x`` as an int: Python and numpy ints, integer 0-d tensors; a bool or a float is a TypeError
    (int() would take 5.9 for 5 and True for 1, silently)."""
    if not isinstance(x, bool) and not (isinstance(x, torch.Tensor) and x.dtype == torch.bool):
        try:
            return operator.index(x)
        except TypeError:
            pass
    raise TypeError(f"{what} must be an int, got {type(x).__name__} {x!r}")


def token_list(token_ids, where: str) -> list[int]:
    """Oracle token ids -> list[int]: a list, tuple, range or other sequence of ints, or a 1-d
    integer (signed or unsigned) numpy array or torch tensor; else a TypeError saying what was
    given (a set or dict has no defined order, an iterator or generator is refused too: give a
    list). The ids' range is not checked here."""
    if type(token_ids) is not list and type(token_ids) is not tuple:  # (the usual case skips the isinstance chain)
        if isinstance(token_ids, (torch.Tensor, np.ndarray)):  # (one type check, not one per id)
            if isinstance(token_ids, torch.Tensor):
                d = token_ids.dtype
                kind = not (d.is_floating_point or d.is_complex or d == torch.bool)
            else:
                kind = token_ids.dtype.kind in "iu"
            if not kind or token_ids.ndim != 1:
                raise TypeError(f"oracle token ids ({where}) must be a 1-d sequence of int ids, got a "
                                f"{type(token_ids).__name__} of dtype {token_ids.dtype} and shape "
                                f"{tuple(token_ids.shape)}")
            return token_ids.tolist()
        if isinstance(token_ids, (str, bytes, bytearray)) or not isinstance(token_ids, Sequence):
            why = ("" if isinstance(token_ids, (str, bytes, bytearray)) or not isinstance(token_ids, Iterable) else
                   ": its order is undefined" if isinstance(token_ids, (AbstractSet, Mapping)) else ": give a list")
            raise TypeError(f"oracle token ids ({where}) must be a sequence of int ids (from the text tokenizer: a "
                            f"list, tuple, range, or a 1-d integer array or tensor), got {type(token_ids).__name__} "
                            f"{token_ids!r}{why}")
    return [t if type(t) is int else as_int(t, f"oracle token id ({where})") for t in token_ids]  # (ints: no call)
