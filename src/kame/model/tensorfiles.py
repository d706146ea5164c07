"""Checkpoint files in the safetensors format: their header read without loading them (a
truncated download told apart from a wrong file), their tensors read with a clear error, a
training wrapper's key prefix stripped, and what kind of checkpoint a file is (Mimi, kame's
embedded codec, a Moshi/KAME front-end LM, a Kyutai STT LM) with where it goes in kame's config,
and whether a front-end config fits a file's tensors (from the header, before a model is built).
Weights are float16, bfloat16, float32 or float64 (WEIGHT_DTYPES): a file holding float8 (or
another sub-16-bit float: quantized) tensors is refused from its header, before they are read;
``check_finite`` refuses NaN/inf weights, ``cast_checked`` a cast that overflows (float16).
Shared by the front-end loader (kame.model.loaders) and the Mimi loader (kame.codec.mimi), as is
``save_tensors`` (the writer of the front-end, Mimi and embedded codec files).

    header, meta = safetensors_header(path)            # no tensors read, no torch needed
    state, meta = read_safetensors(path, "cpu", "LM weights")
    kind = checkpoint_kind(state, meta)                # "mimi" | "embedded" | "frontend" | "stt" | None
    why = config_conflict(cfg, header, "config.json")  # a front-end config against the header, or None
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..hub import cache_fix, cache_hint
from ..paths import default_mode, lfs_pointer

if TYPE_CHECKING:
    from .config import LMConfig

SAFETENSORS_SUFFIXES = (".safetensors", ".sft", ".sfts")
WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # the float dtypes kame loads and runs
_HEADER_WEIGHTS = ("F16", "BF16", "F32", "F64")  # their names in a safetensors header
_MAX_HEADER = 100_000_000  # safetensors' own limit on its JSON header


def safetensors_header(path: str | Path) -> tuple[dict[str, dict], dict[str, str]]:
    """(tensor entries, metadata) of a safetensors file, read without loading it (and without
    torch); CheckpointError if it is not one, or is truncated (an incomplete download or copy:
    its header describes more bytes than the file has), or has bytes its header does not describe."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little") if size >= 8 else 0
            text = f.read(n) if 0 < n <= _MAX_HEADER else b""
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    header, end = None, 0
    if text and len(text) == n:
        try:
            header = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
    if isinstance(header, dict):
        meta = header.pop("__metadata__", None) or {}
        ends = [e["data_offsets"][1] for e in header.values() if isinstance(e, dict)
                and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2]
        end = max([int(x) for x in ends if isinstance(x, int)], default=0)
        if size > 8 + n + end:  # safetensors refuses it ("file not fully covered")
            extra = size - 8 - n - end
            raise CheckpointError(f"{path} is corrupt: it has {extra} byte{'s' * (extra > 1)} more than the {8 + n + end} "
                                  f"its header describes (damaged, or written over another file): {_again(path)}")
        if size == 8 + n + end:
            return header, meta if isinstance(meta, dict) else {}
    if size < 8:  # not even the header's length
        raise CheckpointError(f"{path} has only {size} byte{'s' * (size != 1)}: not a safetensors file (or a copy "
                              f"cut short: {_again(path)})")
    if header is not None or (text[:1] == b"{" and len(text) < n):
        full = f"the {8 + n + end} bytes its header describes" if header is not None else "its header"
        raise CheckpointError(f"{path} is truncated: it has {size} bytes, fewer than {full} (an incomplete "
                              f"download or copy): {_again(path)}")
    raise CheckpointError(lfs_pointer(path) or f"cannot read {path}: not a readable safetensors file (no safetensors "
                          f"header){cache_hint(path)}")


def _again(path: Path) -> str:
    """What to do about a damaged file: get it again (from the Hugging Face cache: kame.hub.cache_fix)."""
    return cache_fix(path) or "download or copy it again"


def unsupported_float(dtype: torch.dtype | str) -> bool:
    """Whether ``dtype`` (a torch dtype, or a safetensors header's name: "F8_E4M3") is a float kame
    does not load or run: float8, float6, float4 (quantized formats); not WEIGHT_DTYPES."""
    if isinstance(dtype, str):
        return dtype.startswith("F") and dtype not in _HEADER_WEIGHTS
    return dtype.is_floating_point and dtype not in WEIGHT_DTYPES


def float8_error(where: str | Path, key: str, dtype: torch.dtype | str) -> CheckpointError:
    """The error for a tensor of an unsupported_float dtype (was: a NotImplementedError from the
    first operation on it, e.g. check_finite's sum)."""
    return CheckpointError(f"{where}: tensor {key!r} has dtype {dtype}: float8 (quantized) weights are not "
                           f"supported by kame; use a file saved in bfloat16, float16 or float32")


def check_header_dtypes(header: Mapping[str, Any], where: str | Path) -> None:
    """float8_error for the first tensor of a safetensors header (safetensors_header) whose dtype
    is an unsupported_float: refused before any tensor is read."""
    for key, entry in header.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if isinstance(dtype, str) and unsupported_float(dtype):
            raise float8_error(where, key, dtype)


def check_safetensors(path: Path, what: str = "weights") -> None:
    """CheckpointError naming the file ``path`` (``what``: "Mimi checkpoint") if it is not named
    .safetensors, is missing, not a file, not safetensors, truncated or holds float8 tensors
    (check_header_dtypes): its header read, not its tensors. read_safetensors' checks, and what a
    command checks up front (kame bench sessions' --codec mimi:FILE: was its header and dtypes
    only, so a FILE named .bin failed at its first case)."""
    path = Path(path)
    if path.suffix not in SAFETENSORS_SUFFIXES:
        raise CheckpointError(f"{path}: expected a .safetensors file ({what} in the published format)")
    if not path.exists():
        raise CheckpointError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{what} file {path} is not a file")
    check_header_dtypes(safetensors_header(path)[0], path)


def read_safetensors(path: Path, device: str | torch.device = "cpu", what: str = "weights"
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a .safetensors file; CheckpointError naming the file if it is
    missing, not a file, not safetensors, truncated or holds float8 tensors (check_safetensors,
    before they are read). Shared by the front-end and Mimi loaders."""
    check_safetensors(path, what)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as exc:
        safetensors_header(path)  # a truncated file (or no safetensors header) says so
        raise CheckpointError(f"cannot read {path}: not a readable safetensors file ({exc}){cache_hint(path)}") from exc


def strip_wrapper_prefix(state: dict[str, torch.Tensor], anchor: str) -> dict[str, torch.Tensor]:
    """``state`` without a training wrapper's prefix ("model.", "lm.", "module." ...), found from
    ``anchor``, a key every checkpoint of the kind holds (front-end: text_emb.weight). Shared by
    the front-end and Mimi loaders."""
    if anchor in state:
        return state
    pre = next((k[: -len(anchor)] for k in state if k.endswith("." + anchor)), None)
    if pre is None:
        return state
    return {(k[len(pre):] if k.startswith(pre) else k): v for k, v in state.items()}


def config_conflict(cfg: LMConfig, header: Mapping[str, dict], where: str, extra_steps: int = 0) -> str | None:
    """Why a front-end config does not fit its weights file, from the file's header alone (tensor
    names and shapes: safetensors_header), else None: the first of dim, text_card, card, n_q,
    num_layers, text_card_out, dep_q, depformer_dim, depformer_num_layers whose value
    disagrees with the file's tensors, naming ``where`` (the config.json), the key and both values.
    Checked before the model is built, so a config.json sizing it far above its weights (num_layers
    1e5: minutes of module building) fails at once. Tensors the file lacks are not judged here
    (convert_state names them); ``extra_steps``: the depformer steps of the user's stream a
    kame_finetune file holds beyond dep_q (dropped on load)."""
    header = strip_wrapper_prefix(dict(header), "text_emb.weight")

    def shape(name: str) -> tuple[int, ...] | None:
        s = header.get(name, {}).get("shape") if isinstance(header.get(name), dict) else None
        return tuple(s) if isinstance(s, list) and len(s) == 2 and all(type(x) is int for x in s) else None

    def count(stem: str) -> int:
        n = {int(m.group(1)) for k in header if (m := re.match(re.escape(stem) + r"\.(\d+)\.", k))}
        return len(n)

    def sized(key: str, want: Any, tensor: str, axis: int, to_key: Callable[[int], Any]) -> str | None:
        s = shape(tensor)
        if s is None or to_key(s[axis]) == want:
            return None
        return f"{where} has {key}={want}, but the file's {tensor} has shape {s}: {key}={to_key(s[axis])}"

    def counted(key: str, want: int, stem: str, what: str) -> str | None:
        n = count(stem)
        if not n or n == want:
            return None
        return f"{where} has {key}={want}, but the file holds {n} {what} ({stem}.0. to {stem}.{n - 1}.): {key}={n}"

    text_out = "text_card_out" if cfg.text_card_out is not None else "text_card"
    checks = [
        lambda: sized("dim", cfg.dim, "text_emb.weight", 1, int),
        lambda: sized("text_card", cfg.text_card, "text_emb.weight", 0, lambda n: n - 1),
        lambda: sized("card", cfg.card, "emb.0.weight", 0, lambda n: n - 1),
        lambda: counted("n_q", cfg.n_q, "emb", "audio embeddings"),
        lambda: counted("num_layers", cfg.num_layers, "transformer.layers", "layers"),
        lambda: sized(text_out, getattr(cfg, text_out), "text_linear.weight", 0, int),
    ]
    if cfg.dep_q:
        checks += [
            lambda: counted("dep_q", cfg.dep_q + extra_steps, "linears", "audio output heads"),
            lambda: sized("depformer_dim", cfg.depformer_dim, "depformer_in.0.weight", 0, int),
            lambda: counted("depformer_num_layers", cfg.depformer_num_layers, "depformer.layers", "depformer layers"),
        ]
    return next((msg for check in checks if (msg := check()) is not None), None)


def checkpoint_kind(keys: Iterable[str], metadata: Mapping[str, str] | None = None) -> str | None:
    """What a checkpoint file holds, from its tensor names (and metadata): "mimi" (a Mimi codec),
    "embedded" (kame's fitted embedded codec), "frontend" (a Moshi/KAME LM), "stt" (a Kyutai STT
    LM: no depformer) or None (none of these)."""
    keys = list(keys)
    meta = metadata or {}
    if "kame_mimi_config" in meta or any(".rvq_first." in k or "encoder_transformer." in k for k in keys):
        return "mimi"
    if {"codebooks", "proj", "correction"} <= set(keys):
        return "embedded"
    if any(k.endswith("text_emb.weight") for k in keys):
        return "frontend" if any("depformer" in k for k in keys) else "stt"
    return None


def file_kind(path: Path) -> str | None:
    try:
        header, meta = safetensors_header(path)
    except CheckpointError:
        return None
    return checkpoint_kind(header, meta)


def kind_hint(kind: str, path: Path) -> str:
    """What a checkpoint of ``kind`` at ``path`` is, and the spec it goes in (the caller's
    message names the path already)."""
    folder = path.parent if path.suffix in SAFETENSORS_SUFFIXES else path
    if kind in ("mimi", "embedded") and re.fullmatch(r"step-\d+", folder.name) \
            and not (folder / "config.json").exists():  # (kame train's step-N: a save stopped after its codec file)
        latest = folder.parent / "latest"
        pick = latest if (latest / "config.json").is_file() else f"{folder.parent}/latest or an earlier step-N"
        return (f"it is an unfinished kame train checkpoint (a save that was stopped: its codec file is there, "
                f"no config.json or weights): give {pick}, the last complete one (and remove {folder})")
    codec = _frontend_codec(folder) if kind == "frontend" else ""
    return {
        "mimi": f"it is a Mimi codec checkpoint; give it as the codec: mimi:{path} (codec.spec, or the "
                f"command's --codec)",
        "embedded": f"it is a fitted embedded codec; give it as the codec: embedded:{path} (codec.spec, or the "
                    f"command's --codec)",
        "frontend": f"it holds front-end LM weights (Moshi/KAME); give their folder as the front-end: "
                    f"frontend.spec={folder}{codec}",
        "stt": f"it holds Kyutai STT LM weights (text out, no audio); give their folder as the speech-to-text "
               f"back-end: backend.stt=kyutai:{folder}",
    }[kind]


def _frontend_codec(folder: Path) -> str:
    """kind_hint's note on the codec a front-end folder runs with, from its config.json: the one its
    kame.codec records (kame's own front-ends: no Mimi), the Mimi its mimi_name names or, for a
    Moshi one naming none, Moshi's default Mimi file; "" when it says nothing (was: always "its Mimi
    codec is the file its config.json names as mimi_name", wrong for kame's embedded-codec ones)."""
    from .meta import mimi_trained

    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(meta, dict):
        return ""
    kame = meta.get("kame")
    if isinstance(kame, dict) and isinstance(kame.get("codec"), str) and kame["codec"]:
        return f" (it runs with the codec its config.json records as kame.codec: {kame['codec']})"
    if isinstance(meta.get("mimi_name"), str) and meta["mimi_name"]:
        return f" (its Mimi codec is the file its config.json names as mimi_name: {meta['mimi_name']})"
    if mimi_trained(meta):
        from .loaders import MIMI_NAME

        return f" (its Mimi codec is Moshi's {MIMI_NAME} beside it)"
    return ""


def check_finite(tensors: Mapping[str, torch.Tensor], where: str | Path) -> None:
    """CheckpointError naming ``where`` (the file) and the first floating-point tensor holding NaN
    or inf: such weights would load and give NaN audio later; or one of a float8 dtype
    (float8_error: kame runs none). Shared by the front-end, Mimi and embedded codec loaders
    (through kame.model.loaders)."""
    for key, t in tensors.items():
        if t.is_floating_point() and unsupported_float(t.dtype):
            raise float8_error(where, key, t.dtype)
        if t.is_floating_point() and not _finite(t):
            raise CheckpointError(f"{where}: tensor {key!r} has NaN or infinite values (a corrupt or diverged "
                                  f"checkpoint)")


def _finite(t: torch.Tensor) -> bool:
    """Whether a float tensor holds no NaN or inf. One sum (a 7B load: ~1 s; an element-wise
    isfinite: ~40 s on 2 CPU cores); only a non-finite sum, which finite values can also give by
    overflowing, is confirmed element by element."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def cast_checked(tensors: dict[str, torch.Tensor], dtype: torch.dtype | Mapping[str, torch.dtype],
                 where: str | Path) -> dict[str, torch.Tensor]:
    """``tensors``, in place, with the floating ones cast to ``dtype`` (one for all, or per key; the
    others as they are): each original is freed as its cast replaces it, so a load's peak is one
    tensor over the weights, not a second copy of them. CheckpointError naming ``where``, the tensor
    and the dtype when a cast to a narrower range (float16's: 65504) made a finite weight infinite:
    it would run as inf and give NaN logits. Only narrowing casts are checked (one sum per tensor,
    _finite). The front-end loader's and save_frontend's cast, and the Mimi loader's."""
    for key in list(tensors):  # (the keys only: a list of the items would keep every original alive)
        t = tensors[key]
        to = dtype if isinstance(dtype, torch.dtype) else dtype[key]
        if not t.is_floating_point() or t.dtype == to:
            continue
        c = t.to(to)
        if torch.finfo(to).max < torch.finfo(t.dtype).max and not _finite(c) and _finite(t):
            name = str(to).removeprefix("torch.")
            wider = "float32" if to == torch.bfloat16 else "bfloat16 or float32"
            raise CheckpointError(f"{where}: tensor {key!r} has values beyond {name}'s range (largest "
                                  f"{torch.finfo(to).max:g}), which become infinite in {name}: use {wider} instead")
        tensors[key] = c
    return tensors


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, the file then given the permissions any new file gets here
    (safetensors writes it 0600, so a checkpoint or fitted codec could not be shared or served).
    Shared by the front-end, Mimi and embedded codec writers."""
    save_file(dict(tensors), str(path), metadata=metadata)
    default_mode(path)
