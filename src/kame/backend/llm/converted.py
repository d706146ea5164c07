"""The embedded LLM's model load, from a converted copy of its GGUF file kept in kame's cache.

    model, tok = load_model(gguf)     # in the LLM's child process (kame.backend.llm.embedded)

transformers reads a GGUF file slowly: its reader parses the file's metadata (a 49k-entry
vocabulary) value by value, three times, and maps every tensor's name anew; SmolLM2-135M took
~28 s on 2 cores, of which ~3 s is de-quantizing. So the first load saves what it made, the
de-quantized float32 weights (safetensors: 4 bytes per parameter, ~520 MB for SmolLM2-135M), the
model's config and its tokenizer, in

    $KAME_CACHE/llm/<file name>-<sha256 of the file, 16 hex>-transformers-<version>/
    (KAME_CACHE unset: ~/.cache/kame)

and every later load reads that copy (~1 s; a child's whole start, its imports of torch and
transformers included, ~6-10 s on 2 cores: BENCHMARKS.md). The copy gives the same model: the same weights,
bit for bit, and the same tokenizer and chat template (tests/backend/test_llm_converted.py).
It is written whole or not at all (a temporary folder, renamed; one a killed writer left is
removed an hour later), so two processes converting at once leave one copy, with the
permissions of any new file (other users of a shared cache can read it). A copy that does not
load, or loads with a missing or extra weight (a disk fault, a transformers that reads it
differently), is logged, removed and made again from the GGUF file. Where there is no copy and
none can be made (a cache folder kame cannot write or read, no home folder, less free space than
the copy and RESERVE_BYTES), each load reads the GGUF file, with a warning. A new copy removes
the copies of the same file made for other transformers versions (two environments with other
transformers versions sharing one cache convert again each time the other ran). Deleting the folder is always
safe; a GGUF file replaced at its path leaves the old file's copy, to delete by hand.
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ...errors import ConfigError, MissingPackageError, NotAvailableError, install_hint
from ...paths import STALE_TEMPORARY_S, default_mode, file_sha256, kame_cache

log = logging.getLogger(__name__)
WEIGHTS = "model.safetensors"
RESERVE_BYTES = 1 << 30  # free space a copy leaves on its disk (a copy that would take it is not made)
_SLOW = "each start reads the GGUF file (~30 s)"


def copy_dir(gguf: Path) -> Path:
    """The converted copy's folder for ``gguf`` (kame.paths.kame_cache("llm")): named by the file's
    name, the sha256 of its bytes (a replaced file of the same name gets its own copy) and the
    transformers version (a ConfigError where there is no home folder and KAME_CACHE is unset)."""
    digest = file_sha256(gguf)[:16]
    return kame_cache("llm") / f"{gguf.name}-{digest}-transformers-{importlib.metadata.version('transformers')}"


def has_copy(gguf: Path) -> bool:
    """Whether ``gguf`` has a converted copy that can be read (the parent's note before a child's
    start; no import of transformers)."""
    try:
        return os.access(copy_dir(gguf) / WEIGHTS, os.R_OK)
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
        present = (folder / WEIGHTS).is_file()
    except (ConfigError, OSError) as exc:  # (no home folder; a cache folder this user cannot read)
        log.warning("no converted copy of the embedded LLM: %s; %s", _why(exc), _SLOW)
        return _from_gguf(gguf)
    _sweep(folder)  # (what killed writers left: at every load, a restart after a kill finds the copy made)
    if present:
        try:
            return _from_copy(folder)
        except Exception as exc:  # noqa: BLE001 - any fault of the copy: made again below
            log.warning("the embedded LLM's converted copy %s does not load (%s: %s); converting %s again",
                        folder, type(exc).__name__, exc, gguf.name)
            shutil.rmtree(folder, ignore_errors=True)
    model, tok = _from_gguf(gguf)
    _save_copy(model, tok, folder)
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


def _save_copy(model, tok, folder: Path) -> None:
    """Write the copy whole or not at all, then remove the copies of the same file made for other
    transformers versions; a copy that cannot be made is a warning (the GGUF file still works)."""
    from safetensors.torch import save_model

    parent, tmp = folder.parent, None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _sweep(folder, versions=True)
        need = sum({t.data_ptr(): t.numel() * t.element_size() for t in model.state_dict().values()}.values())
        free = shutil.disk_usage(parent).free
        if free < need + RESERVE_BYTES:
            log.warning("no converted copy of the embedded LLM in %s: it takes %d MB and leaves less than %d MB free "
                        "(%d MB free); %s", parent, need >> 20, RESERVE_BYTES >> 20, free >> 20, _SLOW)
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # (the GGUF reader's: the copy is plain float32)
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        save_model(model, str(tmp / WEIGHTS))  # (a tensor shared by two weights once: SmolLM2's tied embedding)
        tok.save_pretrained(str(tmp))
        for path in (tmp, *tmp.iterdir()):  # (mkdtemp's 0700, safetensors' 0600: a shared cache's other users read it)
            default_mode(path)
        if (folder / WEIGHTS).is_file():  # another process made it meanwhile: it stays (it may be read now)
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if folder.exists():  # a copy without its weights (its removal was cut short): the rename needs its name
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except Exception as exc:  # noqa: BLE001 - a full disk, a read-only cache, ...: the load goes on
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if (folder / WEIGHTS).is_file():  # another process made it meanwhile (the rename found it)
            return
        log.warning("cannot keep a converted copy of the embedded LLM in %s (%s); %s", parent, _why(exc), _SLOW)


def _sweep(folder: Path, versions: bool = False) -> None:
    """Remove the temporary folders killed writers of this file's copies left (an hour old), and with
    ``versions`` its copies for other transformers versions (``folder``: the copy's,
    ``NAME-DIGEST-transformers-VERSION``)."""
    stem = folder.name.rsplit("-transformers-", 1)[0] + "-transformers-"
    try:
        entries = list(os.scandir(folder.parent))
    except OSError:  # (no cache folder yet)
        return
    for entry in entries:
        try:
            if entry.name.startswith(f".{stem}") and time.time() - entry.stat().st_mtime >= STALE_TEMPORARY_S:
                shutil.rmtree(entry.path)
            elif versions and entry.name.startswith(stem) and entry.name != folder.name:
                shutil.rmtree(entry.path)
        except OSError:  # (gone meanwhile, or another user's: left)
            continue


def _why(exc: BaseException) -> str:
    """An error in a warning: its reason, and what to do where kame may not write or read."""
    if isinstance(exc, OSError):
        why = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            why += "; set KAME_CACHE to a folder of your own"
        return why
    return str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
