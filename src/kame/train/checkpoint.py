"""`kame train`'s checkpoints: OUT/step-N and OUT/latest, made to travel (docs/training.md).

    save_checkpoint(model, weights, optim, Path("runs/x"), step, tcfg, manifest, sha, codec=codec,
                    codec_spec="mimi:/data/moshi/tokenizer-e351c8d8-checkpoint125.safetensors",
                    tokenizer_spec="/data/moshi/tokenizer_spm_32k_3.model")

A checkpoint folder holds what it runs with, so it loads from any working directory, moved or
copied elsewhere, after the folder or Hugging Face cache it started from is gone: its tokenizer
file (kame's default tokenizer is recorded by name and sha256, not copied) and its Mimi are copied in (the Mimi hard-linked where it can be, under the name config.json
gives as ``mimi_name``, written there too), and kame.codec records the Mimi as ``mimi:NAME``, a
path relative to the checkpoint folder (kame.runtime.loading.recorded_codec resolves it there, or
in the hf repo the checkpoint is published in); an embedded codec's own fit likewise, as
``embedded:NAME``, and the shipped fit, recorded as ``embedded`` (a later kame may ship
another). Such a checkpoint (it has config.json's ``kame`` object) is kame's alone: the
moshi package's loader refuses it (docs/frontend.md). ``frontend_identity`` is how a run records
the front-end it started from and compares it on --resume: a checkpoint folder by its resolved
path. ``check_out`` (and ``check_overwrite``, ``clear_out``): what a run's OUT may already hold,
checked before the front-end is loaded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from .. import paths
from ..errors import CheckpointError
from ..paths import STALE_TEMPORARY_S
from .config import STATE, TrainConfig
from .parallel import SHARDED_OPTIMIZER, drop_sharded_optimizer


LOCK, LOG = ".lock", "log.jsonl"  # OUT/.lock: held by the run writing there (out_lock); OUT/log.jsonl: its log rows
RUN_FILES = (LOCK, LOG)  # what a run writes in OUT besides its checkpoints: not "files already" (check_out)


def step_folder(out: Path, step: int) -> Path:
    return out / f"step-{step}"


_UNLOCKED: set[Path] = set()  # the OUT folders whose .lock the file system refused (warned once each)


@contextlib.contextmanager
def out_lock(out: Path):
    """OUT/.lock held for the ``with`` (an flock, released by the kernel when the process ends,
    however it ends: a stale one never blocks): a second run into the same OUT is refused
    (ConfigError naming the first's pid), not left to replace its checkpoints. OUT is created.
    No lock where the system has no flock (Windows) or the file system refuses one (then warned)."""
    from ..errors import ConfigError

    try:
        import fcntl
    except ImportError:  # (Windows)
        yield
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                held = False  # (a file system without locks, e.g. some NFS: run unlocked, said once)
                if out.resolve() not in _UNLOCKED:
                    _UNLOCKED.add(out.resolve())
                    logging.getLogger(__name__).warning(
                        "train: cannot lock %s (%s: its file system refuses locks): a second kame train into -o %s "
                        "would not be refused; start no other run there until this one ends", out / LOCK,
                        exc.strerror or exc, out)
            else:
                f.seek(0)
                pid = f.read().strip() or "?"
                raise ConfigError(f"train: another kame train (pid {pid}) is writing to -o {out} (it holds "
                                  f"{out / LOCK}): two runs in one OUT replace each other's checkpoints. Wait for "
                                  f"it to end or stop it (a torchrun killed with SIGKILL leaves its workers "
                                  f"running), or give another -o") from None
        if held:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
        yield


# A save stopped by SIGKILL (or a crash) leaves its temporary files: kame.paths.write_replacing's and
# save_frontend's .NAME.HEX.tmp, safetensors' own .tmpXXXXXX (the weights, written there, then renamed
# onto kame's), a sharded save's .optimizer.new/.optimizer.old folders. Hidden, and as large as the
# checkpoint. Only those untouched for an hour are taken for a stopped save's (kame.paths.STALE_TEMPORARY_S).
_SAFETENSORS_TEMPORARY = re.compile(r"\.tmp[0-9A-Za-z]{6}")  # (only in step-N: a user's .tmpconfig may be in OUT)
_OPTIMIZER_TEMPORARIES = (f".{SHARDED_OPTIMIZER}.new", f".{SHARDED_OPTIMIZER}.old")


def remove_stale_temporaries(out: Path, older_than_s: float = STALE_TEMPORARY_S) -> list[tuple[Path, int]]:
    """Remove the temporary files a stopped save left in ``out`` (a kame train OUT) and its step-N
    folders, untouched for ``older_than_s`` seconds (kame.paths.remove_stale_temporaries; in
    step-N safetensors' too, and a sharded save's optimizer folders): [(path, bytes)] of those
    removed. Nothing else is looked at (not inside a step-N's subfolders, nor any other folder);
    one that cannot be removed is left."""
    out = Path(out)
    try:
        steps = [p for p in out.iterdir() if p.name.startswith("step-") and not p.is_symlink() and p.is_dir()]
    except OSError:  # (no OUT yet)
        return []
    removed = paths.remove_stale_temporaries(out, older_than_s=older_than_s)
    now = time.time()
    for folder in steps:
        removed += paths.remove_stale_temporaries(folder, also=_SAFETENSORS_TEMPORARY.fullmatch,
                                                  older_than_s=older_than_s)
        for p in (folder / name for name in _OPTIMIZER_TEMPORARIES):
            try:
                if not (p.is_dir() and not p.is_symlink() and (folder / SHARDED_OPTIMIZER).is_dir()):
                    continue  # (none beside it: a re-save stopped between its two renames, and these hold
                    # the optimizer state: left to be put back by hand)
                inside = [f.lstat() for f in p.rglob("*")]
                if now - max([p.lstat().st_mtime] + [f.st_mtime for f in inside]) >= older_than_s:
                    shutil.rmtree(p)
                    removed.append((p, sum(f.st_size for f in inside if stat.S_ISREG(f.st_mode))))
            except OSError:  # (gone meanwhile, or not ours to remove: left)
                continue
    return removed


def frontend_identity(spec: str | None) -> str | None:
    """A front-end spec as a run records it (kame.train.frontend) and compares it (--resume with
    --frontend): a checkpoint folder or file that exists by its resolved absolute path (the same
    folder under another spelling or from another working directory is the same); hf://,
    random: and a plugin's specs as given."""
    from ..config import frontend_spec_form
    from ..errors import ConfigError

    if spec is None:
        return None
    try:
        kind, _, path = frontend_spec_form(spec)
    except ConfigError:
        return str(spec)
    return str(path.resolve()) if kind == "path" and path.exists() else str(spec)


def check_overwrite(out, frontend: str | None, codec_spec: str | None, *, resume: str | None = None) -> None:
    """ConfigError for --overwrite when the front-end or codec a run starts from is inside OUT,
    whose step-N folders --overwrite removes before the first save copies their files (was: a
    FileNotFoundError traceback, and an empty step-N); with ``resume``, the checkpoint it goes
    on from stands for the front-end (--frontend is then not read)."""
    from .. import registry
    from ..config import frontend_spec_form
    from ..errors import ConfigError
    from ..paths import spec_local

    home = Path(out).resolve()
    given = [("--resume", resume, None) if resume is not None else ("--frontend", frontend, None)]
    try:
        path = spec_local(registry.parse_spec(codec_spec)[1]) if codec_spec else None
    except Exception:  # noqa: BLE001 - (a plugin's odd spec: not a local path)
        path = None
    if path is not None:
        given.append(("--codec", codec_spec, path))
    for flag, spec, path in given:
        if spec is None:
            continue
        if path is None:
            try:
                kind, _, path = frontend_spec_form(spec)
            except ConfigError:
                continue
            if kind != "path":
                continue
        if not (path.exists() and path.resolve().is_relative_to(home)):
            continue
        if flag == "--resume":
            raise ConfigError(f"train: --resume {spec} is inside -o {out}, whose step-N folders, latest and "
                              f"log.jsonl --overwrite removes: drop --overwrite to go on in the run's own folder (a "
                              f"step saved again is replaced), or give another -o")
        raise ConfigError(f"train: {flag} {spec} is inside -o {out}, whose step-N folders, latest and log.jsonl "
                          f"--overwrite removes before the new run saves: go on from it with --resume {spec}, or "
                          f"copy it out of {out} first and give that copy")


def check_out(out, overwrite: bool, resume=None) -> bool:
    """ConfigError unless a run's OUT is empty or new, or a resumed run's checkpoint's own folder (a
    step saved again is replaced; was: any OUT on resume, another run's step-N and latest replaced),
    or ``overwrite``: then True, OUT holds a run whose step-N, latest and log.jsonl are to be removed
    (clear_out; check_overwrite: not the resumed one's). Only the filesystem is read, so kame train
    checks it before the front-end loads (minutes for a large checkpoint) and train() again."""
    from ..errors import ConfigError

    out = Path(out)
    if out.exists() and not out.is_dir():  # (was: refused only at the first save, steps later)
        raise ConfigError(f"train: -o {out} is a file, not a folder: give a folder for the checkpoints")
    check_writable(out)
    if not out.is_dir() or all(p.name in RUN_FILES for p in out.iterdir()):
        return False
    own = Path(resume).resolve().parent if resume is not None else None
    if own is not None and out.resolve() == own:
        return False
    if overwrite:
        return True
    complete = (out / "latest" / STATE).is_file()
    if own is not None and complete and goes_on_from(out / "latest", Path(resume).resolve()):
        raise ConfigError(f"train: -o {out} holds this run's later checkpoints ({out}/latest goes on from --resume "
                          f"{resume}: the same command run again, e.g. a job requeued after a preemption?): go on "
                          f"from them with --resume {out}/latest (to redo those steps from {resume} instead, give "
                          f"another -o)")
    if own is not None:
        raise ConfigError(f"train: -o {out} holds files already (another run's?) and --resume {resume} is not "
                          f"one of its checkpoints (it is in {own}): this run's saves would replace {out}'s "
                          f"step-N folders of the same numbers and its latest. Give -o {own} to go on in the "
                          f"run's own folder, or an empty or new folder, or --overwrite to remove {out}'s step-N "
                          f"folders, latest and log.jsonl first")
    if complete:
        go_on = f"Go on from it with --resume {out}/latest, write elsewhere (another -o)"
    else:  # (a run killed in its first save: no complete checkpoint, so nothing to resume)
        go_on = (f"It holds no complete checkpoint ({out}/latest is missing: a run stopped before its first "
                 f"save ended?), so there is nothing to resume: write elsewhere (another -o)")
    raise ConfigError(f"train: {out} holds files already (another run's?): a new run there would mix its "
                      f"checkpoints with them. {go_on}, or --overwrite to remove its step-N folders, latest and "
                      f"log.jsonl")


def unfinished_note(folder: Path) -> str | None:
    """For --resume of a step-N with no train_state.pt (a save that was stopped, e.g. SIGKILL), what
    it is and what to give, in kind_hint's words (kame.model.tensorfiles, for loading one); else None."""
    folder = Path(folder).resolve()
    if not re.fullmatch(r"step-\d+", folder.name):
        return None
    latest = folder.parent / "latest"
    done = (latest / STATE).is_file() and latest.resolve() != folder
    pick = latest if done else f"{folder.parent}/latest or an earlier step-N"
    gone = "" if (folder / "config.json").is_file() else f" (and remove {folder})"  # (weights kept: not to be removed)
    return f"it is an unfinished kame train checkpoint (a save that was stopped): give {pick}, the last complete one{gone}"


def moved_back_note(out: Path, resume: Path) -> str | None:
    """For a run resumed in its own folder from a checkpoint older than OUT/latest: that its saves
    move latest back (the newer step-N stay until one of the same number is saved), else None."""
    def number(p: Path) -> int:
        name = p.resolve().name
        return int(name[5:]) if name.startswith("step-") and name[5:].isdigit() else -1

    latest = Path(out) / "latest"
    if Path(resume).resolve().parent != Path(out).resolve() or not latest.exists():
        return None
    newer, older = number(latest), number(Path(resume))
    if newer <= older or older < 0:
        return None
    return (f"--resume {resume} is older than {latest} (step-{newer}): this run redoes steps {older + 1}-{newer}, "
            f"its saves replacing the step-N of the same numbers, and latest then points at its last save; to go "
            f"on from the newest instead, stop it and give --resume {latest}")


def last_checkpoint(last: Path | None, out) -> Path | None:
    """The run's last checkpoint: ``last`` (this process saved it), else what OUT/latest points to
    (rank 0's last save, seen from another rank), else None."""
    latest = Path(out) / "latest" if out is not None else None
    return last or (latest.resolve() if latest is not None and latest.exists() else None)


def resume_note(last: Path | None, out, resumed, then: str = "", *, by_latest: bool = True) -> str:
    """Where a stopped run goes on from: its last checkpoint (``last``, else OUT/latest's) and the
    --resume to give, else the --resume it was given (``resumed``), else none yet; ``then``:
    what to do first ("free space"). ``by_latest`` False (OUT/latest may point at a step-N a
    failed save left mixed): ``last`` alone, named as the --resume, not OUT/latest."""
    first = f"{then}, then " if then else ""
    saved = last_checkpoint(last, Path(out) if out is not None else None) if by_latest else last
    if saved:
        return f"last checkpoint {saved}; {first}resume with --resume {Path(out) / 'latest' if by_latest else saved}"
    if resumed is not None:
        return f"no checkpoint written by this run yet: {first}resume again with --resume {resumed}"
    return f"no checkpoint written yet: {first}run the same command again (--save-every N saves every N steps)"


def restart_hint(saved: Path | None, tcfg: TrainConfig) -> str:
    """What to do after a diverged run, ``saved`` its last checkpoint (None: none yet): --resume
    keeps the run's --lr and --grad-clip (check_resume), so a new run with a lower --lr."""
    clip = "" if tcfg.grad_clip > 0 else " (or --grad-clip 1.0)"
    if saved is None:
        return f" before a checkpoint was saved: run again with a lower --lr{clip}"
    return (f". --resume keeps its --lr and --grad-clip: start a new run (another -o) with a lower --lr{clip} from "
            f"its last checkpoint (--frontend {saved}) or from the start")


def check_writable(out: Path) -> None:
    """ConfigError unless a file can be made in ``out``, or in its nearest existing parent when it
    is new (a probe file, made and removed): was a read-only -o found only at the first save,
    every step before it lost."""
    from ..errors import ConfigError

    here = Path(out)
    while not (here.exists() or here.is_symlink()) and here.parent != here:
        here = here.parent
    if not here.is_dir():
        raise ConfigError(f"train: -o {out}: {here} is not a folder: give a folder for the checkpoints")
    try:
        fd, probe = tempfile.mkstemp(prefix=".kame-probe.", dir=here)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"train: -o {out} cannot be written ({here}: {exc.strerror or exc}), so no checkpoint "
                          f"could be saved: give a folder you can write to (another -o), nothing was "
                          f"trained") from None


def goes_on_from(folder: Path, checkpoint: Path) -> bool:
    """Whether the run that saved checkpoint ``folder`` went on from ``checkpoint`` (a resolved
    path), at once or through earlier resumes: the kame.train.resumed_from its config.json
    records, followed while those checkpoints are there."""
    seen, here = set(), Path(folder).resolve()
    while here not in seen:
        seen.add(here)
        try:
            here = Path(json.loads((here / "config.json").read_text())["kame"]["train"]["resumed_from"])
        except (OSError, ValueError, TypeError, KeyError):  # (none recorded, or not a checkpoint of ours)
            return False
        if here == checkpoint:
            return True
    return False


def clear_out(out: Path) -> None:
    """Remove the step-N folders, latest and log.jsonl a run wrote in OUT (--overwrite; check_out)."""
    for p in Path(out).iterdir():
        if p.name in ("latest", ".latest.tmp", LOG):
            p.unlink()
        elif p.name.startswith("step-") and p.is_dir():
            shutil.rmtree(p)


def check_listed(manifest: Path, resume, warn=None) -> dict:
    """The manifest's dialogues must be those it lists (each line's meta_sha256: a `kame data
    oracle` stopped before it wrote the manifest again leaves it over dialogues with new oracles,
    and the manifest's own sha256 that check_resume compares is then the old set's): a resume and
    a new run are refused (ConfigError; a new run too, before any compute: it could never be resumed,
    its manifest being what it is). -> {folder: Dialogue (no samples)} of those checked, for
    load_examples (``listed``): each dialogue.json is read once. ``warn(line)`` (a resume's, on rank
    0): told when lines have no meta_sha256, whose dialogues' edits cannot be seen (unhashed_note)."""
    from ..errors import ConfigError
    from .manifest import changed_since_listed, read_manifest, unhashed_note

    entries = read_manifest(manifest)
    if resume is not None and warn is not None and (note := unhashed_note(entries, manifest)):
        warn(f"warning: {note}")
    read: dict = {}
    changed = changed_since_listed(entries, read)
    if not changed:
        return read
    names = ", ".join(str(e.path) for e in changed[:3]) + (", ..." if len(changed) > 3 else "")
    what = (f"{len(changed)} of the {len(entries)} dialogues {manifest} lists changed since it was written (their "
            f"dialogue.json is not the one its meta_sha256 names: {names}; a `kame data oracle` stopped before it "
            f"wrote the manifest again?)")
    fix = ("write its manifest anew: run the command that made the set again (`kame data oracle` or `kame data "
           "synth`: dialogues already done are rewritten or skipped), or kame.train.manifest.write_manifest(PATH, "
           "folders) for a list of your own")
    if resume is not None:
        raise ConfigError(f"train: --resume {resume}: {what}, so the set is not the one the run trained on: {fix}, "
                          f"then train a new run on it (another -o, or --overwrite)")
    raise ConfigError(f"train: {what}: {fix}, then train on it (a run on it now could never be resumed)")


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
                    fresh: bool | None = None) -> Path:
    """OUT/step-N: the front-end (save_frontend with ``weights``, the model's whole state dict;
    config.json's kame.train says how it was trained, ``extra``: the front-end it started from,
    what it was resumed from), its tokenizer file and, for a Mimi read from a file (``codec``, the
    codec it was trained with), that Mimi (portable_codec), and train_state.pt (``optim``, the
    optimizer's state keyed by parameter name, or where a sharded run wrote it:
    parallel.checkpoint_state; and the step); then OUT/latest -> step-N (a symlink, replaced
    atomically; none where the system makes none: _link_latest). A save that fails (a full
    disk: SaveFailed) or is stopped (Ctrl-C) removes the step-N it made (``fresh``: whether it was
    new, found out before a sharded run's processes wrote their optimizer shards there; None: now)."""
    folder = step_folder(out, step)
    fresh = not folder.exists() if fresh is None else fresh
    try:
        _save(model, weights, optim, out, folder, step, tcfg, manifest, manifest_sha, world=world,
              codec_spec=codec_spec, tokenizer_spec=tokenizer_spec, extra=extra, codec=codec)
    except BaseException as exc:
        if fresh:  # (a save stopped or failed: no step-N holding only some of its files, e.g. the codec's)
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, (OSError, CheckpointError)) or type(exc).__name__ == "SafetensorError":
            raise SaveFailed(step, folder, _why(exc, folder, (weights, optim)), fresh) from exc
        raise
    _link_latest(out, folder)
    return folder


class SaveFailed(CheckpointError):
    """A checkpoint that could not be written (save_checkpoint; ``full``: the disk is full). Its
    step-N is removed when the save made it (``fresh``); one that was there before (a step saved
    again) is left holding part of this save beside its earlier files, and the message says to
    remove it. kame train adds the checkpoint to resume from."""

    def __init__(self, step: int, folder: Path, why: tuple[bool, str], fresh: bool = True) -> None:
        self.step, self.folder, (self.full, reason), self.fresh = step, folder, why, fresh
        what = f"disk full while saving step {step} ({folder}: {reason})" if self.full else \
            f"cannot save step {step}: {reason}"
        kept = "nothing of it is kept" if fresh else (
            f"{folder} was there before and now holds part of this save mixed with its earlier files: remove it "
            f"(its weights and optimizer state are not one run's)")
        super().__init__(f"train: {what}; {kept}")


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
    """save_checkpoint's files in step-N ``folder``, all but OUT/latest."""
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
    write_replacing(folder / STATE, lambda tmp: torch.save({"step": step, "optimizer": optim, "train": train_rec}, tmp),
                    "training state", errors=(RuntimeError,), error=CheckpointError)  # (torch's writer: a full disk is a RuntimeError)
    if "sharded" not in optim:  # (an earlier sharded save of this step's files: not this one's)
        drop_sharded_optimizer(folder)


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
