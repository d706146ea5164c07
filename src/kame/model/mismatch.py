"""Why a front-end checkpoint's weights do not load, said in kame.model.loaders' errors: the
weights file a config.json names is not there (``no_weights``), or its tensors do not fit the
config (``mismatch``: convert_state's error, with what the file is and which assumed config
values can explain it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import torch

from ..errors import CheckpointError
from .config import SHAPE_KEYS, LMConfig
from .formats import training_error
from .tensorfiles import checkpoint_kind, kind_hint

if TYPE_CHECKING:
    from .loaders import _Found as Found


def no_weights(wpath: Path, found: Found, named: bool) -> str:
    """The LM weights are not where config.json's moshi_name (or the default name) puts them: say
    which it was, what .safetensors files are there, and what to do."""
    why = f"named by {found.where} moshi_name" if named else f"the default name: {found.where} has no moshi_name"
    others = sorted(p.name for p in wpath.parent.glob("*.safetensors")) if wpath.parent.is_dir() else []
    there = f"; {wpath.parent} holds {', '.join(others)}" if others else ""
    return (f"LM weights {wpath} ({why}) do not exist{there}: set moshi_name in config.json to the weights file, "
            f"or give that file as the front-end spec")


def mismatch(exc: CheckpointError, wpath: Path, state: Mapping[str, torch.Tensor], cfg: LMConfig,
             found: Found) -> CheckpointError:
    """convert_state's error, naming the weights file and saying what they are when that explains it
    (a Mimi / embedded codec file, Kyutai STT weights under a Moshi config or the reverse, a Moshi 7B
    config assumed for a repo without config.json)."""
    kind = checkpoint_kind(state)
    if (err := training_error(wpath, state)) is not None:  # kame_finetune's, before clean_moshi
        return err
    if kind in ("mimi", "embedded"):
        return CheckpointError(f"{wpath} is not front-end LM weights: {kind_hint(kind, wpath)}")
    msg = f"{wpath}: {exc}"
    moshi = LMConfig()  # the defaults: Moshi 7B's
    absent = [k for k in SHAPE_KEYS if found.raw is not None and k not in found.raw and getattr(cfg, k) == getattr(moshi, k)
              and _could_explain(k, str(exc))]
    if absent:
        msg += (f" ({found.where} has no {', '.join(absent)}, so Moshi 7B's "
                f"{', '.join(f'{k}={getattr(cfg, k)}' for k in absent)} {'was' if len(absent) == 1 else 'were'} "
                f"assumed: give the values the weights were saved with)")
    if (kind == "stt") == bool(cfg.dep_q) and kind is not None and found.raw is not None:
        what = "Kyutai STT LM weights (no depformer)" if kind == "stt" else "Moshi/KAME LM weights (with a depformer)"
        msg += f" (the file holds {what}, which {found.where} (dep_q {cfg.dep_q}) does not describe)"
    if found.raw is None:
        get = ("download it once with network access (without HF_HUB_OFFLINE), or "
               if "not in the local" in found.assumed else "")
        msg = (f"{found.where.rsplit('/', 1)[0]}: its weights do not fit Moshi 7B ({exc}). Moshi 7B was assumed "
               f"because {found.assumed}; that assumption is the likely cause: {get}load a folder holding the "
               f"config.json the weights were saved with")
    return CheckpointError(msg)


# The shape keys that set how many tensors there are (layers, codebooks), not their sizes.
_COUNT_KEYS = ("n_q", "dep_q", "num_layers", "depformer_num_layers")


def _could_explain(key: str, error: str) -> bool:
    """Whether a wrong (assumed) value of the shape key ``key`` can give convert_state's ``error``,
    by the tensors it names: a depformer_* key, a depformer tensor's (depformer.*); num_layers and
    num_heads, a main transformer tensor's (transformer.*); kv_repeat (the depformer's too, unless
    depformer_kv_repeat is set), an attention tensor's shape; a count key, tensors numbered past (or
    short of) the model's of its kind (layers: num_layers / depformer_num_layers; the per-codebook
    embeddings and heads: n_q, dep_q), not a shape; any other, a tensor's shape. (Not an unknown
    tensor such as foo.bar or oracle_emb.)"""
    dep = re.search(r"\bdepformer[._]", error) is not None
    main = re.search(r"(?<![\w.])transformer\.", error) is not None
    if key.startswith("depformer_") and not dep:
        return False
    if key in ("num_layers", "num_heads") and not main:
        return False
    if "shape" in error and key in ("num_layers", "depformer_num_layers"):  # (how many layers, not their shapes)
        return False
    if "shape" not in error:  # missing / unknown keys: tensors numbered past the model's
        if key not in _COUNT_KEYS:
            return False
        if key == "num_layers":
            return re.search(r"(?<![\w.])transformer\.layers\.\d+\.", error) is not None
        if key == "depformer_num_layers":
            return re.search(r"\bdepformer\.layers\.\d+\.", error) is not None
        return re.search(r"(?<![\w.])(emb|linears|depformer_in|depformer_emb)\.\d+\.", error) is not None
    return "self_attn" in error if key == "kv_repeat" else True
