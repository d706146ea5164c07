"""`kame train`'s checkpoints: OUT/step-N and OUT/latest, made to travel (docs/training.md);
kame.train.saving writes them (save_checkpoint, importable from here too).

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
from pathlib import Path

from .. import paths
from ..paths import STALE_TEMPORARY_S
from .config import STATE, TrainConfig
from .parallel import SHARDED_OPTIMIZER
from . import saving
from .saving import STEP_TEMPORARY

# saving's, importable from here too (as names, not an __all__: that left checkpoint's own out of `import *`)
SaveFailed, portable_codec, save_checkpoint, step_folder = (saving.SaveFailed, saving.portable_codec,
                                                            saving.save_checkpoint, saving.step_folder)


LOCK, LOG = ".lock", "log.jsonl"  # OUT/.lock: held by the run writing there (out_lock); OUT/log.jsonl: its log rows
RUN_FILES = (LOCK, LOG)  # what a run writes in OUT besides its checkpoints: not "files already" (check_out)


def _run_own(p: Path) -> bool:
    """Whether ``p`` in OUT is not "files already" (check_out): a run's RUN_FILES, or a stopped
    save's OUT/.step-N.new (never a checkpoint: the next save of step N empties it, the sweep
    removes it; was: a requeued job killed in its first save refused for a folder `ls` hides)."""
    m = STEP_TEMPORARY.fullmatch(p.name)
    return p.name in RUN_FILES or (m is not None and m[2] == "new")


_UNLOCKED: set[Path] = set()  # the OUT folders whose .lock the file system refused (warned once each)


# kame train's words for out_lock's refusal (_locked): what two runs in one OUT do, how to stop the live one
_HARM, _HINT = "replace each other's checkpoints", " (a torchrun killed with SIGKILL leaves its workers running)"


@contextlib.contextmanager
def out_lock(out: Path, command: str = "train", harm: str = _HARM, hint: str = _HINT):
    """OUT/.lock held for the ``with`` (an flock, released by the kernel when the process ends,
    however it ends: a stale one never blocks): a second run into the same OUT is refused
    (ConfigError naming the first's pid), not left to replace its checkpoints. OUT is created.
    No lock where the system has no flock (Windows) or the file system refuses one (then warned).
    ``command`` ("train", "eval mtbench") says both, ``harm`` what two runs in one OUT do, ``hint``
    (after "stop it") how to stop one (_locked)."""
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
                        "%s: cannot lock %s (%s: its file system refuses locks): a second kame %s into -o %s "
                        "would not be refused; start no other run there until this one ends", command, out / LOCK,
                        exc.strerror or exc, command, out)
            else:
                raise _locked(out, f, command, harm, hint) from None
        if held:  # (its pid; under torchrun its job, torchrun_job: check_restarted refuses only a restart of it)
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n" + (f"{job}\n" if (job := torchrun_job()) else ""))
            f.flush()
        yield


def _locked(out: Path, f, command: str = "train", harm: str = _HARM, hint: str = _HINT):
    """out_lock's ConfigError for an OUT whose .lock (``f``, open) another run holds, in ``command``'s
    words (out_lock's): the pid read through ``f``, the file the flock was refused on (was, for kame
    eval: the file read again by its path, "pid ?" once the live run had ended and removed it)."""
    from ..errors import ConfigError

    f.seek(0)
    pid = (f.read().split() or ["?"])[0]
    return ConfigError(f"{command}: another kame process (pid {pid}) is writing to -o {out} (it holds {out / LOCK}): "
                       f"two runs in one folder {harm}. Wait for it to end or stop it{hint}, or give another -o")


def torchrun_job() -> str | None:
    """The torchrun job this process is one of, the same across its --max-restarts restarts:
    TORCHELASTIC_RUN_ID (--rdzv-id; --standalone's uuid), with MASTER_ADDR:MASTER_PORT when it is
    torchrun's default "none"; None outside torchrun."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    if job == "none":
        job += f"@{os.environ.get('MASTER_ADDR', '')}:{os.environ.get('MASTER_PORT', '')}"
    return job or None


def _written_by(out: Path) -> str | None:
    """The torchrun job recorded in OUT/.lock by the run that wrote there last (out_lock), or None."""
    try:
        recorded = (Path(out) / LOCK).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return recorded[1] if len(recorded) > 1 else None


def check_unlocked(out) -> None:
    """out_lock's ConfigError when another run holds OUT/.lock, else nothing: a probe that writes
    nothing (a shared lock, taken and let go: every process of a run may probe at once), so a
    second run changes nothing in a live run's OUT (not even put_back_stopped_saves) before it
    is refused. Nothing is checked without flock (Windows) or with no OUT/.lock."""
    try:
        import fcntl
    except ImportError:  # (Windows)
        return
    try:
        f = open(Path(out) / LOCK)
    except OSError:  # (none yet; or unreadable: out_lock says so)
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise _locked(Path(out), f) from None


# A save stopped by SIGKILL (or a crash) leaves its temporary files: kame.paths.write_replacing's and
# save_frontend's .NAME.HEX.tmp, safetensors' own .tmpXXXXXX (the weights, written there, then renamed
# onto kame's), its folder OUT/.step-N.new (kame.train.saving) and one killed between its two renames
# OUT/.step-N.old beside the new step-N (an older kame's sharded save: step-N/.optimizer.new/.old). Hidden,
# and as large as the checkpoint. Only those untouched for an hour are taken for a stopped save's
# (kame.paths.STALE_TEMPORARY_S).
_SAFETENSORS_TEMPORARY = re.compile(r"\.tmp[0-9A-Za-z]{6}")  # (only in step-N: a user's .tmpconfig may be in OUT)
_OPTIMIZER_TEMPORARIES = (f".{SHARDED_OPTIMIZER}.new", f".{SHARDED_OPTIMIZER}.old")


def remove_stale_temporaries(out: Path, older_than_s: float = STALE_TEMPORARY_S) -> list[tuple[Path, int]]:
    """Remove the temporary files a stopped save left in ``out`` (a kame train OUT) and its step-N
    folders, untouched for ``older_than_s`` seconds (kame.paths.remove_stale_temporaries; in
    step-N safetensors' too), and its temporary folders: [(path, bytes)] of those removed. A
    .step-N.old (or an older kame's step-N/.optimizer.old or .new) is removed only beside the
    step-N (optimizer) that replaced it: alone, it is the only copy (saving.put_back_stopped_saves).
    Nothing else is looked at (not inside a step-N's subfolders, nor any other folder); one that
    cannot be removed is left."""
    out = Path(out)
    try:
        found = list(out.iterdir())
    except OSError:  # (no OUT yet)
        return []
    removed = paths.remove_stale_temporaries(out, older_than_s=older_than_s)
    # (each with the folder that must be beside it, else it is left; None: none)
    temporaries = [(p, out / m[1] if m[2] == "old" else None) for p in found
                   if (m := STEP_TEMPORARY.fullmatch(p.name))]
    for folder in (p for p in found if p.name.startswith("step-") and not p.is_symlink() and p.is_dir()):
        removed += paths.remove_stale_temporaries(folder, also=_SAFETENSORS_TEMPORARY.fullmatch,
                                                  older_than_s=older_than_s)
        temporaries += [(folder / name, folder / SHARDED_OPTIMIZER) for name in _OPTIMIZER_TEMPORARIES]
    now = time.time()
    for p, replaced_by in temporaries:
        try:
            if not p.is_dir() or p.is_symlink() or not (replaced_by is None or replaced_by.is_dir()):
                continue
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
    if not out.is_dir() or all(_run_own(p) for p in out.iterdir()):
        return False
    own = Path(resume).resolve().parent if resume is not None else None
    if own is not None and out.resolve() == own:
        return False
    check_restarted(out, resume)
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


def check_restarted(out, resume=None) -> None:
    """ConfigError when torchrun's --max-restarts started kame train again (TORCHELASTIC_RESTART_COUNT
    above 0: the same command) and OUT holds a run's files written by this torchrun job (its
    torchrun_job recorded in OUT/.lock), unless it is the resumed checkpoint's own: the command
    cannot go on from its first start's checkpoints, and with --overwrite would remove them (was:
    "holds files already (another run's?)"). Files of another run, or of a first start that failed
    before it locked OUT, are left to check_out; a run that holds OUT/.lock is said first
    (check_unlocked; was: "give --resume" / "--overwrite" of a live run's checkpoints). Only the
    filesystem and the environment are read: kame train checks it before its processes join their
    group (check_out again)."""
    from ..errors import ConfigError

    out, count = Path(out), os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if not count.isdigit() or int(count) == 0 or not out.is_dir() or all(_run_own(p) for p in out.iterdir()):
        return
    if resume is not None and Path(resume).resolve().parent == out.resolve():
        return
    check_unlocked(out)
    job = torchrun_job()
    if job is None or _written_by(out) != job:
        return
    most = os.environ.get("TORCHELASTIC_MAX_RESTARTS", "")
    restarted = f"restart {count}" + (f" of {most}" if most.isdigit() else "")
    then = f"give --resume {out}/latest to go on from its last checkpoint" if (out / "latest" / STATE).is_file() \
        else "it saved no checkpoint, so run it again with --overwrite"
    raise ConfigError(f"train: torchrun restarted kame train ({restarted}) with the same command, and -o {out} holds "
                      f"what its first start wrote: {then}. torchrun cannot add that itself: run with "
                      f"--max-restarts 0 and restart by hand (docs/training.md)")


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


def last_checkpoint(last: Path | None, out, saved_at: int | None) -> Path | None:
    """The run's last checkpoint: ``last`` (this process saved it), else OUT/step-``saved_at``
    (``saved_at``: the run's last due save, which every process knows; rank 0's, seen from
    another) once its train_state.pt is there, else None (was: what OUT/latest pointed at, which
    could be another run's)."""
    if last is not None or out is None or saved_at is None:
        return last
    folder = step_folder(Path(out), saved_at)
    return folder if (folder / STATE).is_file() else None


def resume_note(last: Path | None, out, resumed, then: str = "") -> str:
    """Where a stopped run goes on from (rank 0's words: ``last``, its last save, None if it saved
    none): that checkpoint and the --resume to give (OUT/latest when it points there), else the
    --resume it was given (``resumed``: OUT/latest may point at a newer step-N it went back from),
    else none yet; ``then``: what to do first ("free space")."""
    first = f"{then}, then " if then else ""
    if last is not None:
        latest = Path(out) / "latest"
        given = latest if latest.exists() and latest.resolve() == Path(last).resolve() else last
        return f"last checkpoint {last}; {first}resume with --resume {given}"
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
    except OSError as exc:  # (ENOENT in a folder that is there: one of the system's, /proc: was "/proc: No such file")
        what, why = ("cannot be created", "no file or folder can be made there") if exc.errno == errno.ENOENT else (
            "cannot be written", exc.strerror or exc)
        raise ConfigError(f"train: -o {out} {what} ({here}: {why}), so no checkpoint could be saved: give a folder "
                          f"you can write to (another -o), nothing was trained") from None


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
    """Remove the step-N folders (and their temporary ones), latest and log.jsonl a run wrote in OUT
    (--overwrite; check_out)."""
    for p in Path(out).iterdir():
        if p.name in ("latest", ".latest.tmp", LOG):
            p.unlink()
        elif (p.name.startswith("step-") or STEP_TEMPORARY.fullmatch(p.name)) and p.is_dir():
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
