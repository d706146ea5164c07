"""Is a file a whole GGUF model? Checked in the parent before the embedded LLM's child loads it.

    check_gguf(Path("model.gguf"))   # NotAvailableError naming the file and what is wrong

A junk or partly downloaded file used to fail in the child, ~20 s later, with transformers'
reader's words ("unpack_from requires a buffer of at least 24 bytes ...", "cannot reshape array
..."). This reads the GGUF layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
the header (magic, version, tensor and metadata counts), each metadata entry, the tensor table,
and checks the file is long enough for every tensor's data. It reads the metadata only (a few
MB, ~0.1 s for SmolLM2; memory-mapped), not the weights.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from ...errors import NotAvailableError
from ...hub import cache_fix

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # the versions transformers' reader (gguf-py) reads
MAX_DIMS = 8  # a tensor has at most 4 (GGML_MAX_DIMS); beyond 8 the table is garbage
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def _blocks() -> dict[int, tuple[int, int]]:
    """ggml tensor type -> (elements per block, bytes per block), from gguf-py (the llm extra, which
    the embedded LLM needs anyway); without it, or for a type it does not know, no data-size check."""
    try:
        from gguf.constants import GGML_QUANT_SIZES
    except ImportError:
        return {}
    return {int(kind): sizes for kind, sizes in GGML_QUANT_SIZES.items()}


class _Bad(Exception):
    """What is wrong with the file (the message completes "it ...")."""


class _Reader:
    def __init__(self, buf, order: str) -> None:
        self.buf, self.order, self.pos = buf, order, 0
        self.part = "header"  # where it is reading, for a file that ends there

    def take(self, fmt: str):
        try:
            (value,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        except struct.error:
            raise _Bad(f"ends at byte {len(self.buf)}, inside its {self.part}") from None
        self.pos += struct.calcsize(self.order + fmt)
        return value

    def skip(self, n: int) -> None:
        if n > len(self.buf) - self.pos:
            raise _Bad(f"ends at byte {len(self.buf)}, inside its {self.part}")
        self.pos += n

    def string(self) -> bytes:
        n = self.take("Q")
        start = self.pos
        self.skip(n)
        return bytes(self.buf[start:self.pos]) if n <= 256 else b""  # (only keys and names are looked at)

    def value(self, kind: int, depth: int = 0):
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY and depth < 4:
            item, count = self.take("I"), self.take("Q")
            if item in _SCALARS:  # (fixed size: skipped at once)
                self.skip(count * struct.calcsize(_SCALARS[item]))
            else:
                for _ in range(count):
                    self.value(item, depth + 1)
            return None
        raise _Bad(f"has a metadata value of unknown type {kind} (corrupt)")


def _layout(buf) -> None:
    """Walk a GGUF file's header, metadata and tensor table; _Bad says what is wrong."""
    if len(buf) < 24:
        raise _Bad(f"has {len(buf)} bytes, less than a GGUF header's 24")
    order = next((o for o in "<>" if struct.unpack_from(o + "I", buf, 4)[0] in VERSIONS), None)
    if order is None:
        raise _Bad(f"has GGUF version {struct.unpack_from('<I', buf, 4)[0]}; kame reads versions 2 and 3")
    r = _Reader(buf, order)
    r.pos = 8
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    if n_tensors == 0:
        raise _Bad(f"has no tensors (its header counts 0, and {n_kv} metadata entries): a GGUF file without "
                   "tensors is not a model")
    if n_tensors > len(buf) // 24 or n_kv > len(buf) // 13:  # (the smallest entries' sizes)
        raise _Bad(f"has a header that counts {n_tensors} tensors and {n_kv} metadata entries, which "
                   f"its {len(buf)} bytes cannot hold (cut short, or corrupt)")
    alignment, blocks = 32, _blocks()
    r.part = "metadata"
    for _ in range(n_kv):
        key = r.string()
        value = r.value(r.take("I"))
        if key == b"general.alignment" and isinstance(value, int) and value > 0:
            alignment = value
    r.part = "tensor table"
    end = 0
    for _ in range(n_tensors):
        name, n_dims = r.string(), r.take("I")
        if n_dims > MAX_DIMS:
            raise _Bad(f"has a tensor ({name.decode(errors='replace')!r}) of {n_dims} dimensions (corrupt)")
        count = 1
        for _ in range(n_dims):
            count *= r.take("Q")
        kind, offset = r.take("I"), r.take("Q")
        if kind not in blocks:  # a newer type: its size is unknown here
            end = None
        elif end is not None:
            per, size = blocks[kind]
            end = max(end, offset + -(-count // per) * size)
    data = -(-r.pos // alignment) * alignment
    if end is not None and data + end > len(buf):
        raise _Bad(f"has {len(buf)} bytes, but its tensors need {data + end} "
                   f"({_share(len(buf), data + end)} % is there: cut short, or corrupt)")


def _share(have: int, need: int) -> str:
    """have / need in % with one decimal, rounded down: a file a byte short is never "100 %"."""
    return f"{have * 1000 // need / 10:.1f}"


def check_gguf(gguf: Path) -> None:
    """NotAvailableError unless ``gguf`` is a whole GGUF file (no install hint: no package is
    missing, the file is not a usable model)."""
    try:
        with open(gguf, "rb") as f:
            head = f.read(4)
            if not head:
                raise NotAvailableError(f"embedded LLM weights {gguf} are empty (0 bytes): "
                                        + (cache_fix(gguf, spec=False) or "download the model again"))
            if head != MAGIC:
                raise NotAvailableError(f"embedded LLM weights {gguf} are not a GGUF file (it starts with {head!r}, "
                                        "not b'GGUF'): give embedded:/path/model.gguf")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                try:
                    _layout(buf)
                except _Bad as exc:
                    fix = cache_fix(gguf, spec=False)  # (one of the Hugging Face cache: got again as it is)
                    raise NotAvailableError(f"embedded LLM weights {gguf} are not a valid, complete GGUF file: it "
                                            f"{exc}. " + (fix[0].upper() + fix[1:] if fix else "Download it again (an "
                                            "interrupted download leaves a partial file) or check that it is the "
                                            "model you meant")) from None
    except OSError as exc:
        raise NotAvailableError(f"cannot read the embedded LLM weights {gguf}: {exc}") from exc
