"""The embedded LLM's model load, from a converted copy of its GGUF file kept in kame's cache.

    model, tok = load_model(gguf)     # in the LLM's child process (kame.backend.llm.embedded)

transformers reads a GGUF file slowly: its reader parses the file's metadata (a 49k-entry
vocabulary) value by value, three times, and maps every tensor's name anew; SmolLM2-135M took
~28 s on 2 cores, of which ~3 s is de-quantizing. So the first load saves what it made, the
de-quantized float32 weights (safetensors, ~520 MB), the model's config and its tokenizer, in

    $KAME_CACHE/llm/<file name>-<sha256 of the file, 16 hex>-transformers-<version>/
    (KAME_CACHE unset: ~/.cache/kame)

and every later load reads that copy (~1 s). The copy gives the same model: the same weights,
bit for bit, and the same tokenizer and chat template (tests/backend/test_llm_converted.py).
It is written whole or not at all (a temporary folder, renamed), so two processes converting at
once leave one copy. A copy that does not load, or loads with a missing or extra weight (a disk
fault, a transformers that reads it differently), is logged, removed and made again from the
GGUF file. Where the cache cannot be written (a read-only home), each load reads the GGUF file,
with one warning. Copies made for another transformers version or an older file of the same
name are removed when a new one is made. Deleting the folder is always safe.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ...errors import ConfigError, MissingPackageError, NotAvailableError, install_hint
from ...paths import kame_cache

log = logging.getLogger(__name__)
WEIGHTS = "model.safetensors"


def copy_dir(gguf: Path) -> Path:
    """The converted copy's folder for ``gguf`` (kame.paths.kame_cache("llm")): named by the file's
    name, the sha256 of its bytes (a replaced file of the same name gets its own copy) and the
    transformers version (a ConfigError where there is no home folder and KAME_CACHE is unset)."""
    with open(gguf, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    return kame_cache("llm") / f"{gguf.name}-{digest}-transformers-{importlib.metadata.version('transformers')}"


def has_copy(gguf: Path) -> bool:
    """Whether ``gguf`` has a converted copy (the parent's note before a child's start; no import
    of transformers)."""
    try:
        return (copy_dir(gguf) / WEIGHTS).is_file()
    except (ConfigError, OSError, importlib.metadata.PackageNotFoundError):
        return False


def load_model(gguf: Path):
    """(model, tokenizer) for a GGUF file in THIS process (the child calls it): from its converted
    copy, made first from the GGUF file where there is none."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise MissingPackageError("the embedded LLM needs: " + install_hint("llm")) from exc
    hf_logging.disable_progress_bar()
    try:
        folder = copy_dir(gguf)
    except ConfigError as exc:
        log.warning("no converted copy of the embedded LLM: %s; each start reads the GGUF file (~30 s)", exc)
        return _from_gguf(gguf)
    if (folder / WEIGHTS).is_file():
        try:
            return _from_copy(folder)
        except Exception as exc:  # noqa: BLE001 - any fault of the copy: made again below
            log.warning("the embedded LLM's converted copy %s does not load (%s: %s); converting %s again",
                        folder, type(exc).__name__, exc, gguf.name)
            shutil.rmtree(folder, ignore_errors=True)
    model, tok = _from_gguf(gguf)
    _save_copy(model, tok, folder, gguf.name)
    return model, tok


def _from_gguf(gguf: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (ImportError, ValueError) as exc:  # e.g. accelerate or gguf missing
        raise NotAvailableError(f"cannot load the embedded LLM: {exc} ({install_hint('llm')})") from exc
    model.eval()
    return model, tok


def _from_copy(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model, info = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, output_loading_info=True)
    wrong = {k: sorted(v) for k, v in info.items() if v}
    if wrong:  # (transformers would start such weights at random and only log it)
        raise ValueError(f"weights not as saved: {wrong}")
    model.eval()
    return model, tok


def _save_copy(model, tok, folder: Path, name: str) -> None:
    """Write the copy whole or not at all, then remove the other copies of the file ``name``; a
    failure to write is a warning (the GGUF file still works)."""
    from safetensors.torch import save_model

    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # (the GGUF reader's: the copy is plain float32)
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        save_model(model, str(tmp / WEIGHTS))  # (tied weights once: the embedding is the output layer)
        tok.save_pretrained(str(tmp))
        os.rename(tmp, folder)
    except Exception as exc:  # noqa: BLE001 - a full disk, a read-only home, ...: the load goes on
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if (folder / WEIGHTS).is_file():  # another process made it meanwhile (the rename found it)
            return
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        log.warning("cannot keep a converted copy of the embedded LLM in %s (%s): each start reads the GGUF "
                    "file (~30 s); set KAME_CACHE to a writable folder", folder.parent, why)
        return
    for old in folder.parent.glob(f"{glob.escape(name)}-*"):  # (not the temporary ".NAME..." folders)
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
