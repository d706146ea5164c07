"""How `kame train` writes a checkpoint: OUT/step-N, then OUT/latest (kame.train.checkpoint says
what a checkpoint folder holds, and checks what OUT may hold before a run).

    save_checkpoint(model, weights, optim, Path("runs/x"), step, tcfg, manifest, sha, codec=codec,
                    codec_spec="mimi:/data/moshi/tokenizer-e351c8d8-checkpoint125.safetensors",
                    tokenizer_spec="/data/moshi/tokenizer_spm_32k_3.model")

A step's files are written into a hidden sibling folder, OUT/.step-N.new (a sharded run's
processes write their optimizer shards there first: parallel.checkpoint_state), then swapped in:
a step-N there before (a run resumed in its own OUT from an older step saves those numbers again)
is renamed aside to OUT/.step-N.old, the new one renamed in, the old one removed; only then does
OUT/latest point at it. A save that fails or is stopped leaves the step-N there before whole (or
none) and removes its temporary folder; one killed between the two renames leaves OUT/.step-N.old
alone in step-N's place, which the next run puts back (put_back_stopped_saves; till then --resume
and load_frontend of it say where it is: stopped_save_note).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from ..errors import CheckpointError
from .config import STATE, TrainConfig
from .parallel import SHARDED_OPTIMIZER


def step_folder(out: Path, step: int) -> Path:
    return out / f"step-{step}"


def staging_folder(out: Path, step: int) -> Path:
    """Where step ``step``'s files are written before they are swapped in (every process of a
    sharded run names the same one)."""
    return Path(out) / f".step-{step}.new"


def aside_folder(folder: Path) -> Path:
    """Where a step-N saved before is put while its new files are renamed in."""
    return folder.parent / f".{folder.name}.old"


STEP_TEMPORARY = re.compile(r"\.(step-\d+)\.(new|old)")  # (their names)


def portable_codec(codec, codec_spec: str | None, model_meta: dict,
                   taken: tuple[str, ...] = ()) -> tuple[str | None, Path | None, str | None]:
    """How a checkpoint records its codec -> (spec, Mimi file to put in the folder, its name there).
    A Mimi read from a file (a folder's, a Hugging Face cache's, mimi:PATH) goes into the folder:
    under the checkpoint's own ``mimi_name`` when that is a plain name, else its file's name, and is
    recorded as ``mimi:NAME`` (relative to the folder); a name that is another of the folder's
    files (``taken``: its weights, tokenizer, config.json, training state) becomes
    mimi-SHA8.safetensors. An embedded codec's own fit (embedded:PATH) goes in too, as
    ``embedded:NAME``; the shipped fit too (embedded_codec.safetensors), recorded as ``embedded``
    (the runtime runs it with the shipped fit while its sha256 is the recorded one; a later kame's
    other fit leaves the copy to run it with). Another codec spec naming a local file or
    folder by a relative path is recorded by its absolute path; any other spec as it is."""
    from .. import registry
    from ..paths import relative_local, spec_local

    if codec_spec is None:
        return None, None, None
    try:
        scheme, arg = registry.parse_spec(codec_spec)
    except Exception:  # noqa: BLE001 - (a plugin's odd spec: recorded as it is)
        return codec_spec, None, None
    source = getattr(codec, "source", None) if scheme == "mimi" else None
    if source is not None and Path(source).is_file():
        named = model_meta.get("mimi_name")
        plain = isinstance(named, str) and named and not named.startswith(("hf:", "file:", "/", "~")) \
            and ".." not in Path(named).parts
        name = named if plain else Path(source).name
        if Path(name).as_posix() in {Path(t).as_posix() for t in taken}:  # (was: overwritten by the LM weights)
            name = f"mimi-{(codec.fingerprint or '0' * 8)[:8]}.safetensors"
        return f"mimi:{name}", Path(source), name
    from ..codec.embedded.model import DEFAULT_PATH, DEFAULT_SHA256

    path = spec_local(arg) if scheme == "embedded" else None
    if scheme == "embedded" and not arg and getattr(codec, "fingerprint", None) == DEFAULT_SHA256:
        path = DEFAULT_PATH  # (the shipped fit by the plain spec; not a plugin's codec in its place)
    if path is not None and path.is_file():
        name = path.name  # a fit (~2 MB) goes with the checkpoint, as its Mimi does
        if Path(name).as_posix() in {Path(t).as_posix() for t in taken}:
            name = f"embedded-{(getattr(codec, 'fingerprint', None) or '0' * 8)[:8]}.safetensors"
        # the shipped fit is recorded as `embedded` (this kame's, by its sha256), and carried too: a
        # later kame that ships another fit refuses the checkpoint by its sha256, and the fit it
        # was trained with is still at hand (codec.spec=embedded:CHECKPOINT/embedded_codec.safetensors)
        return ("embedded" if path.resolve() == DEFAULT_PATH else f"embedded:{name}"), path, name
    rel = relative_local(arg)
    if rel is not None and rel.exists():
        return f"{scheme}:{rel.resolve()}", None, None
    return codec_spec, None, None


_SHA: dict[tuple[int, int, int, int], str] = {}  # (device, inode, size, mtime) -> sha256 of a placed file


def _sha256(path: Path) -> str:
    """A file's sha256, remembered by its inode, size and time (a Mimi is hashed once a run)."""
    from ..paths import file_sha256

    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = file_sha256(path)
    return _SHA[key]


def _place(src: Path, dst: Path, *, placed: Path | None = None, sha256: str | None = None) -> None:
    """``src`` at ``dst``: hard-linked (no second copy of a large file), else copied; written whole
    or not at all (kame.paths.write_replacing). Nothing is done if ``dst`` is that file already, or
    a file of ``sha256`` (the codec's: the same step saved again).
    ``placed``: the run's own earlier copy (OUT/latest's), linked from when it is that file (the
    same inode, or ``sha256``'s): a source on another file system is copied once a run, not once a
    save."""
    from ..paths import write_replacing

    src = src.resolve()  # (a Hugging Face snapshot's link: its blob)
    if dst.exists() and os.path.samefile(src, dst):
        return
    if sha256 and dst.is_file() and dst.stat().st_size == src.stat().st_size and _sha256(dst) == sha256:
        return  # (the same step saved again: its file is the codec's already, not copied again)
    origin = src
    if placed is not None and placed.is_file() and not (dst.exists() and os.path.samefile(placed, dst)):
        placed = placed.resolve()
        if os.path.samefile(placed, src) or (sha256 and placed.stat().st_size == src.stat().st_size
                                              and _sha256(placed) == sha256):
            origin = placed

    def put(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        try:
            os.link(origin, tmp)
        except OSError:  # (another file system, or links not allowed: a copy)
            shutil.copyfile(origin, tmp)

    write_replacing(dst, put, "codec file", error=CheckpointError)


def save_checkpoint(model, weights: dict, optim: dict, out: Path, step: int, tcfg: TrainConfig, manifest,
                    manifest_sha: str, *, world: int = 1, codec_spec: str | None,
                    tokenizer_spec: str | Path | None, extra: dict | None = None, codec=None,
                    staged: bool = False) -> Path:
    """OUT/step-N: the front-end (save_frontend with ``weights``, the model's whole state dict;
    config.json's kame.train says how it was trained, ``extra``: the front-end it started from,
    what it was resumed from), its tokenizer file and, for a Mimi read from a file (``codec``, the
    codec it was trained with), that Mimi (portable_codec), and train_state.pt (``optim``, the
    optimizer's state keyed by parameter name, or where a sharded run wrote it:
    parallel.checkpoint_state; and the step); then OUT/latest -> step-N (a symlink, replaced
    atomically; none where the system makes none: _link_latest). The files go to
    staging_folder first, then are swapped in (_swap_in); ``staged``: that folder holds a sharded
    run's optimizer shards already (begin_save emptied it before), else it is emptied here. A
    save that fails (a full disk: SaveFailed) or is stopped (Ctrl-C) removes that folder: the
    step-N there before, if any, is left as it was."""
    folder, staging = step_folder(out, step), staging_folder(out, step)
    if not staged:
        begin_save(out, step)
    try:
        _save(model, weights, optim, out, staging, step, tcfg, manifest, manifest_sha, world=world,
              codec_spec=codec_spec, tokenizer_spec=tokenizer_spec, extra=extra, codec=codec)
        _swap_in(staging, folder)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, (OSError, CheckpointError)) or type(exc).__name__ == "SafetensorError":
            raise SaveFailed(step, folder, _why(exc, folder, (weights, optim))) from exc
        raise
    _link_latest(out, folder)
    return folder


def save_step(model, opt, out: Path, step: int, rank: int, tcfg: TrainConfig, manifest, manifest_sha: str,
              **kw) -> Path | None:
    """kame train's save of step ``step``: the optimizer's state (parallel.checkpoint_state: every
    process of a sharded run calls this, else rank 0 alone), then rank 0's save_checkpoint (``kw``)
    -> the step-N saved (None on the other ranks). A sharded optimizer state that cannot be
    written is SaveFailed on rank 0, as any failed save (the others: parallel.ShardsNotSaved, one
    line); a sharded save that fails or is stopped leaves no staging folder on any machine."""
    from .parallel import ShardsNotSaved, checkpoint_state

    staging = begin_save(out, step) if rank == 0 else staging_folder(out, step)
    try:
        weights, optim = checkpoint_state(model, opt, staging)
    except BaseException as exc:  # (every process cleans up: on machines that do not share -o, each
        # wrote its shard to its own)
        if rank == 0:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            _remove_own_shards(staging, rank)
        if isinstance(exc, ShardsNotSaved) and exc.cause is not None:
            folder = step_folder(out, step)
            raise SaveFailed(step, folder, _why(exc.cause, folder, ())) from exc.cause
        raise
    if rank != 0:
        return None
    return save_checkpoint(model, weights, optim, out, step, tcfg, manifest, manifest_sha, staged=True, **kw)


def _remove_own_shards(staging: Path, rank: int) -> None:
    """A non-zero rank's part of removing a stopped sharded save's ``staging`` folder: its own
    optimizer shards (torch.distributed.checkpoint's __RANK_I.distcp), then the folders once empty
    (was: the whole folder, which a Ctrl-C of this process alone, handled once its collective had
    returned, took from under rank 0 still writing there). Rank 0 removes the rest."""
    where = staging / SHARDED_OPTIMIZER
    for f in where.glob(f"__{rank}_*.distcp"):
        f.unlink(missing_ok=True)
    for d in (where, staging):
        with contextlib.suppress(OSError):
            d.rmdir()


def begin_save(out: Path, step: int) -> Path:
    """Step ``step``'s staging_folder, emptied of an earlier save's (one stopped): rank 0's, before
    any process writes there."""
    staging = staging_folder(out, step)
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _swap_in(staging: Path, folder: Path) -> None:
    """``staging`` renamed to ``folder``; a ``folder`` there before is renamed aside first (a folder
    cannot replace another, on Windows not even an empty one), then removed. If the second rename
    fails, or is stopped, the earlier folder is put back."""
    old = aside_folder(folder)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)  # (a stopped swap's, folder whole beside it)
        os.replace(folder, old)
    try:
        os.replace(staging, folder)
    except BaseException:
        if old.exists() and not folder.exists():
            os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def put_back_stopped_saves(out: Path) -> list[Path]:
    """Put back each step-N a save killed between its two renames left aside (OUT/.step-N.old with
    no step-N: _swap_in), so OUT/latest and --resume OUT/step-N find it whole again -> those put
    back. Its new files (OUT/.step-N.new) are left to remove_stale_temporaries. Every process may
    call it at once: a rename is done once."""
    put = []
    with contextlib.suppress(OSError):  # (no OUT yet)
        for old in Path(out).iterdir():
            m = STEP_TEMPORARY.fullmatch(old.name)
            folder = Path(out) / m[1] if m and m[2] == "old" else None
            if folder is None or not old.is_dir() or old.is_symlink() or os.path.lexists(folder):
                continue
            try:
                os.replace(old, folder)
                put.append(folder)
            except OSError:  # (another process put it back first, or it cannot be: said by --resume)
                continue
    return put


def stopped_save_note(path) -> str | None:
    """For a checkpoint ``path`` that does not exist (OUT/step-N, or a link to it such as
    OUT/latest) whose step-N a save killed between its two renames left as OUT/.step-N.old: where
    it is and how to have it back, else None (--resume's and kame.model.loaders' "does not exist")."""
    path = Path(path)
    with contextlib.suppress(OSError):
        path = path.parent / os.readlink(path) if path.is_symlink() else path  # (OUT/latest: its step-N)
    old = aside_folder(path)
    if not re.fullmatch(r"step-\d+", path.name) or path.exists() or not old.is_dir():
        return None
    return (f"{path} is {old}, left aside by a kame train save killed while it replaced it: the next kame train "
            f"with -o {path.parent} puts it back, or rename {old} to {path}")


class SaveFailed(CheckpointError):
    """A checkpoint that could not be written (save_checkpoint; ``full``: the disk is full): none of
    its files are kept, a step-N there before is left as it was. kame train adds the checkpoint to
    resume from."""

    def __init__(self, step: int, folder: Path, why: tuple[bool, str]) -> None:
        self.step, self.folder, (self.full, reason) = step, folder, why
        what = f"disk full while saving step {step} ({folder}: {reason})" if self.full else \
            f"cannot save step {step}: {reason}"
        super().__init__(f"train: {what}; nothing of it is kept")


def _why(exc: BaseException, folder: Path, written) -> tuple[bool, str]:
    """(whether the disk is full, what went wrong) for a save that failed with ``exc``: ENOSPC in
    its chain, safetensors' "os error 28", or (torch's writer says only "unexpected pos") less
    free space left than the bytes of ``written`` (the weights and optimizer state)."""
    import torch

    chain, e = [], exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(str(e) for e in chain)
    full = any(getattr(e, "errno", None) == errno.ENOSPC for e in chain) or "os error 28" in text \
        or "No space left" in text
    if not full:
        def size(x) -> int:
            if isinstance(x, torch.Tensor):
                return x.nelement() * x.element_size()
            items = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else ()
            return sum(size(v) for v in items)
        here = folder
        while not here.exists() and here.parent != here:
            here = here.parent
        with contextlib.suppress(OSError):
            full = shutil.disk_usage(here).free < size(written)
    if full:
        return True, "No space left on device"
    if isinstance(exc, CheckpointError):  # (write_replacing's: names the file, then the error)
        return False, str(exc)[:400]
    return False, f"{folder}: {(getattr(exc, 'strerror', None) or str(exc))[:300]}"


def _save(model, weights: dict, optim: dict, out: Path, folder: Path, step: int, tcfg: TrainConfig, manifest,
          manifest_sha: str, *, world: int, codec_spec: str | None, tokenizer_spec, extra: dict | None,
          codec) -> None:
    """save_checkpoint's files in ``folder`` (step-N's staging_folder), all but OUT/latest."""
    import torch

    from ..model.loaders import MOSHI_NAME, save_frontend
    from ..paths import write_replacing

    tok = tokenizer_spec
    if tok is not None and tok != "default":  # a tokenizer file goes with the checkpoint (save_frontend names it)
        folder.mkdir(parents=True, exist_ok=True)
        src = Path(tok)
        if src.resolve() != (folder / src.name).resolve():
            shutil.copyfile(src, folder / src.name)
        tok = src.name
    taken = (model.cfg.meta.get("moshi_name") or MOSHI_NAME, "config.json", STATE, SHARDED_OPTIMIZER,
             *([tok] if tok is not None and tok != "default" else []))
    recorded, mimi, mimi_name = portable_codec(codec, codec_spec, dict(model.cfg.meta), taken)
    meta: dict = {}
    if mimi is not None:  # (its sha256 given: the spec, relative to the folder, need not load from the cwd)
        _place(mimi, folder / mimi_name, placed=out / "latest" / mimi_name, sha256=codec.fingerprint)
        meta = {"codec_sha256": codec.fingerprint}
        if recorded.startswith("mimi:"):
            meta["mimi_name"] = mimi_name
    train_rec = {"step": step, "world_size": world, "config": json.loads(json.dumps(asdict(tcfg))),
                 "manifest": str(Path(manifest).resolve()), "manifest_sha256": manifest_sha, **(extra or {})}
    save_frontend(model, folder, codec=recorded, tokenizer=tok, train=train_rec, state_dict=weights, **meta)
    def save_state(tmp: Path) -> None:  # (through a handle: torch names the records "archive/", not after the
        with open(tmp, "wb") as f:      # random temporary file, so equal states give equal bytes)
            torch.save({"step": step, "optimizer": optim, "train": train_rec}, f)

    write_replacing(folder / STATE, save_state, "training state", errors=(RuntimeError,),
                    error=CheckpointError)  # (torch's writer: a full disk is a RuntimeError)


_UNLINKED: set[Path] = set()  # the OUT folders whose latest could not be linked (warned once each)


def _link_latest(out: Path, folder: Path) -> None:
    """OUT/latest -> ``folder`` (a link to a directory, replaced atomically where the system can).
    Where no link can be made (Windows without the symlink privilege: OSError), the step is saved
    all the same: one warning a run says to resume from OUT/step-N, and no latest is left pointing
    at an older step."""
    link, tmp_link = out / "latest", out / ".latest.tmp"
    try:
        tmp_link.unlink(missing_ok=True)
        os.symlink(folder.name, tmp_link, target_is_directory=True)  # (Windows: a file link else, unresolved)
        try:
            os.replace(tmp_link, link)
        except OSError:  # (Windows: a link to a folder is not replaced over: removed first)
            link.unlink(missing_ok=True)
            os.replace(tmp_link, link)
    except OSError as exc:
        for stale in (tmp_link, link):
            with contextlib.suppress(OSError):
                stale.unlink(missing_ok=True)
        if out.resolve() not in _UNLINKED:
            _UNLINKED.add(out.resolve())
            logging.getLogger(__name__).warning(
                "train: cannot make %s, a link to %s (%s): the checkpoints are saved without it; resume with "
                "--resume %s (the last one saved), not --resume %s", link, folder.name, exc.strerror or exc,
                out / "step-N", link)
