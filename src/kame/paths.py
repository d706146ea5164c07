"""Local paths as kame reads them, and checks of the files and folders a command will write,
made before its work (minutes of fitting, a whole conversation), not after it: each failure is a
ConfigError naming the option.

    path = local_path("file://~/ck")                                # a spec's or config's local name
    path = expand_user(name, "backend.knowledge_dir")               # ~ expanded, or a ConfigError naming it
    out = check_output_file(args.output, input=args.input)         # -o FILE
    out = check_output_file(args.output, suffix=".wav")             # ... of one type
    folder = check_output_folder(args.out)                          # --out FOLDER
    check_replaceable(out.with_suffix(".json"), f"-o {args.output}")  # an existing file it replaces
    write_replacing(out.with_suffix(".json"), lambda tmp: tmp.write_text(text))  # whole, or not at all
    sweep_temporaries("kame data synth", [(out, ("train.jsonl", "synth.json"))])  # what a killed one left
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Collection, Iterable

from .errors import ConfigError, KameError


def expand_user(path: str | Path, what: str = "") -> Path:
    """``Path(path)`` with a leading ``~`` or ``~user`` expanded, or a ConfigError naming ``what``
    (the option or setting, e.g. "--config") where there is none to expand it to: HOME unset and a
    uid without a passwd entry (a container run with an arbitrary uid: docker run -u 4242,
    OpenShift), or no such user (was: pathlib's RuntimeError "Could not determine home directory")."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        head = Path(path).parts[0]
        if head == "~":
            uid = os.getuid() if hasattr(os, "getuid") else "?"
            why = f"no home directory (HOME is not set, and uid {uid} has no entry in the user database)"
            fix = "set HOME or give the full path"
        else:
            why, fix = f"there is no user {head[1:]!r}", "give the full path"
        raise ConfigError(f"{what + ': ' if what else ''}cannot expand {head} in {path}: {why}; {fix}") from None


def local_path(name: str | Path, what: str = "") -> Path:
    """A local file or folder as specs (``embedded:``, ``mimi:``, a front-end) and config.json's file
    names give it: PATH or file://PATH, ~ expanded (``expand_user``: ``what`` names the setting
    in its error). The one reading of such a name."""
    return expand_user(str(name).removeprefix("file://"), what)


def spec_local(arg: str | None) -> Path | None:
    """The local path a spec's argument (``mimi:ARG``, ``embedded:ARG``) names; None for an hf://
    name, a plugin's ``KEY=VALUE;...`` argument or none."""
    if not arg or arg.startswith("hf:") or ";" in arg:
        return None
    return local_path(arg)


def relative_local(arg: str | None) -> Path | None:
    """spec_local's path when it is relative (read from somewhere: a checkpoint's folder, the
    working directory), else None."""
    path = spec_local(arg)
    return None if path is None or path.is_absolute() else path


def form_folder(form) -> Path | None:
    """The folder of a front-end spec's form (kame.config.frontend_spec_form's ("path", None, PATH)):
    PATH, or the folder of the file PATH names; None for an hf repo, random weights or no form."""
    if form is None or form[0] != "path" or form[2] is None:
        return None
    path = form[2]
    return path.parent if path.is_file() else path


def lfs_pointer(path: str | Path) -> str | None:
    """If ``path`` is a Git LFS pointer rather than the file (a Hugging Face repo cloned without
    git-lfs), a sentence saying so and what to do; else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(200)
    except OSError:
        return None
    if not head.startswith(b"version https://git-lfs.github.com/spec/"):
        return None
    size = next((line.split()[1].decode() for line in head.splitlines() if line.startswith(b"size ")), "?")
    return (f"{path} is a Git LFS pointer to a file of {size} bytes, not the file itself (a repo cloned without "
            f"git-lfs): run `git lfs pull` in its folder, or download it with `hf download`")


# the errnos of a failed file creation whose text says why (the others, e.g. ENOENT in /proc, mislead)
_TELLING_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE}


def name_max(folder: str | Path) -> int:
    """The longest file name (in bytes) the file system of ``folder`` (or of its nearest existing
    parent) allows: PC_NAME_MAX, usually 255 (143 under eCryptfs); 255 where it cannot be asked."""
    for f in (Path(folder), *Path(folder).parents):
        try:
            limit = int(os.pathconf(f, "PC_NAME_MAX"))
            return limit if limit > 0 else 255  # (-1: none told)
        except OSError:  # (not there yet, or a name too long itself: its parent's file system)
            continue
        except (ValueError, AttributeError, TypeError):  # (no pathconf: Windows; an unknown limit)
            break
    return 255


def _check_name_lengths(path: Path, label: str, extra: tuple[str, ...] = ()) -> None:
    """ConfigError naming ``label`` if a part of ``path`` (or its name with one of the suffixes
    ``extra`` instead of its own: the files written next to it) is longer than the file system it
    is (or will be) on allows, found before the work (was: pathlib's OSError "File name too long"
    traceback, or the write failing after the whole run). Each part is held to the limit of the
    folder it is in (name_max: of its nearest existing one), so a folder on another file system
    (an eCryptfs mount's 143 bytes) is not held to the target's."""
    parts = [(p, "", Path(*path.parts[:i])) for i, p in enumerate(path.parts) if p not in (os.sep, "/")]
    parts += [(path.with_suffix(x).name, f" (the {x} file written next to it)", path.parent)
              for x in extra if path.name]
    for part, note, folder in parts:
        size, limit = len(os.fsencode(part)), name_max(folder)
        if size > limit:
            short = part if len(part) <= 40 else part[:20] + "..." + part[-12:]
            raise ConfigError(f"{label}: file name too long: {short}{note} is {size} bytes, more than the "
                              f"{limit} bytes a name may have there; give a shorter name")


def _writable_folder(folder: Path, label: str, what: str) -> None:
    _check_name_lengths(folder, label)
    try:
        blocker = next((f for f in (folder, *folder.parents) if f.exists() and not f.is_dir()), None)
    except OSError as exc:  # (a path longer than the system allows: ENAMETOOLONG)
        raise ConfigError(f"{label}: cannot create {what}: {exc.strerror or exc}") from None
    if blocker is not None:  # mkdir would say only "[Errno 17] File exists"
        raise ConfigError(f"{label}: cannot create {what}: {blocker} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot create {what}: {exc}") from exc
    # a file can really be made there: a temporary one, as the writers make (then rename); root
    # passes an os.access check even where none can be made (e.g. /proc)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".kame-", suffix=".check")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:  # (its errno's text only where it says why: /proc gives "No such file or directory")
        why = exc.strerror.lower() if exc.errno in _TELLING_ERRNOS and exc.strerror else "no file can be created there"
        raise ConfigError(f"{label}: cannot write into {folder}: {why}") from None


def check_replaceable(path: str | Path, label: str, flag: str = "-o") -> None:
    """An existing file at ``path`` can be replaced by a file renamed over it, as kame's writers do
    (a temporary file beside it, then renamed: write_wav, write_text), found before the work, not
    after it: ConfigError (``label``: the option as given, e.g. "-o answer.wav"; ``flag``: the one
    to change) when it is immutable or append-only (chattr), or another user's in a folder with
    the sticky bit (/tmp). Its folder's check (check_output_file) comes first; a file that is
    read-only, or another user's (say root's, after a `sudo kame run`), is replaced all the same.
    Where neither exists (Windows: no user ids, no non-blocking open), nothing is checked."""
    geteuid, nonblock = getattr(os, "geteuid", None), getattr(os, "O_NONBLOCK", None)
    if geteuid is None or nonblock is None:
        return
    path = Path(path)
    try:
        st, folder = os.lstat(path), os.stat(path.parent)
    except OSError:  # (none there, or the folder's check says what is wrong)
        return
    uid = geteuid()
    if folder.st_mode & stat.S_ISVTX and uid != 0 and uid not in (st.st_uid, folder.st_uid):
        raise ConfigError(f"{label}: cannot replace {path}: it is another user's, in a folder with the sticky bit "
                          f"(only its owner may replace it); remove it as its owner, or give another {flag}")
    if not stat.S_ISREG(st.st_mode):  # (a link is replaced, not written; opening a fifo would block)
        return
    # opened to write, not truncated: nothing changes; immutable and append-only say EPERM, even to
    # root. Not through a link, not waiting, not as a terminal: a link, fifo or device put there
    # since the lstat (ELOOP, ENXIO, ...) is replaced, not written, as one found by it is
    flags = os.O_WRONLY | nonblock | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        os.close(os.open(path, flags))
    except PermissionError as exc:
        if exc.errno == errno.EPERM:
            raise ConfigError(f"{label}: cannot replace {path}: the system does not allow changing it (immutable or "
                              f"append-only? see lsattr {path}); clear that (chattr -i -a), remove it, or give another "
                              f"{flag}") from None
    except OSError:  # (EACCES: its mode forbids writing it, but it is replaced, not written)
        pass


def write_replacing(path: str | Path, write: Callable[[Path], object], what: str = "file",
                    errors: tuple[type[BaseException], ...] = (OSError,),
                    error: type[KameError] = KameError) -> None:
    """Write ``path`` whole or not at all (kame's writers: write_wav, OUT.json, the timeline plot,
    a dialogue's files): ``write(tmp)`` writes a temporary file beside it (a name of its own, so
    two writers of one path, threads or processes, do not share it; a new file's permissions, the
    umask applied), which is then renamed over it, so the file appears only once written
    whole and a failed or interrupted write leaves an existing one as it was, and no temporary
    file. The folder is created. A file that cannot be written (OSError, and ``errors``: what
    ``write`` raises then) raises ``error`` (a KameError, e.g. DataError) naming it (``what``:
    what it is, e.g. "timeline plot"), not the error; anything else (a KeyboardInterrupt) is
    raised as it is. A link at ``path`` is replaced by the file, not written through."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temporary(path)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):  # (the writer may have removed it)
                tmp.unlink()
        if isinstance(exc, (OSError, *errors)):
            raise error(f"cannot write {what} {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        raise


def _new_temporary(path: Path) -> Path:
    """An empty file of a name of its own beside ``path``, made with a new file's permissions (the
    kernel applies the umask, as to any file a program creates; mkstemp's are 0600). Its name is
    ``.NAME.RANDOM.tmp``, 18 bytes longer than ``path``'s: where that is longer than the file
    system allows (a name of 238 to 255 bytes), a hash of NAME stands for it, so a name ``path``
    may have never fails for its temporary file's (was: "File name too long" after the whole run)."""
    name = _temporary_stem(path.name, path.parent)
    while True:
        tmp = path.with_name(f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _temporary_stem(name: str, folder: Path) -> str:
    """The NAME of the temporary files (.NAME.RANDOM.tmp) of a file ``name`` in ``folder``: the
    name itself, or a hash of it where the temporary's name would be too long there."""
    if len(os.fsencode(name)) + 18 > name_max(folder):
        return hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return name


# A writer stopped outright (SIGKILL, a crash, a power cut) leaves its temporary file (_new_temporary's
# .NAME.RANDOM.tmp), hidden, and as large as what it wrote. No command takes a lock on what it writes,
# so only those untouched this long are taken for a stopped writer's (a write under way writes its
# file; a second run writing the same place is not one's).
STALE_TEMPORARY_S = 3600.0
_TEMPORARY = re.compile(r"\.(.+)\.[0-9a-f]{12}\.tmp")


def remove_stale_temporaries(folder: str | Path, names: Collection[str] | None = None, *,
                             also: Callable[[str], object] | None = None,
                             older_than_s: float = STALE_TEMPORARY_S) -> list[tuple[Path, int]]:
    """Remove the temporary files stopped writers left in ``folder`` (not in its subfolders),
    untouched for ``older_than_s`` seconds: [(path, bytes)] of those removed. Kame's own
    (write_replacing's .NAME.RANDOM.tmp): with ``names``, only those of files of these names (a
    command's outputs, in a folder of the user's), else any; and those whose name ``also`` accepts
    (another writer's, in a folder of kame's own: safetensors'). Regular files only; one that
    cannot be removed is left."""
    folder = Path(folder)
    try:
        found = [(entry.name, _TEMPORARY.fullmatch(entry.name)) for entry in os.scandir(folder)]
    except OSError:  # (no folder yet)
        return []
    # (the names' own only where there is one of kame's: name_max asks the file system, in every folder)
    stems = {_temporary_stem(n, folder) for n in names} if names is not None and any(m for _, m in found) else None
    removed, now = [], time.time()
    for name, m in found:
        if not ((m and (names is None or m.group(1) in stems)) or (also is not None and also(name))):
            continue
        path = folder / name
        try:
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime >= older_than_s:
                path.unlink()
                removed.append((path, st.st_size))
        except OSError:  # (gone meanwhile, or not ours to remove: left)
            continue
    return removed


def sweep_temporaries(command: str, places: Iterable[tuple[Path, Collection[str] | None]]) -> list[tuple[Path, int]]:
    """remove_stale_temporaries at each (folder, names) of ``places`` (where ``command``, e.g.
    "kame data encode", writes: called as it starts), what it removed said in one line on stderr
    (they are hidden, and may be large). [(path, bytes)] of those removed."""
    removed = [r for folder, names in places for r in remove_stale_temporaries(folder, names)]
    if removed:
        listed = ", ".join(str(path) for path, _ in removed[:3]) + (", ..." if len(removed) > 3 else "")
        print(f"{command}: removed {len(removed)} temporary file{'s' * (len(removed) != 1)} of a write that was "
              f"stopped, untouched for an hour ({sum(n for _, n in removed) / 1e6:.1f} MB): {listed}",
              file=sys.stderr, flush=True)
    return removed


def default_mode(path: str | Path) -> None:
    """Give ``path`` the permissions a new file gets here (0666 less the umask; a folder: 0777 less
    the umask), as a file made by mkstemp (0600) or safetensors, or a folder made by mkdtemp
    (0700), is not."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


def _umask() -> int:
    """The process's umask, read without setting it (os.umask would change it for a moment, for
    every thread): Linux's /proc; elsewhere the usual 022."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0o022


def check_output_file(path: str | Path, *, flag: str = "-o", suffix: str | None = None, why: str = "",
                      input: str | Path | None = None, file_type: Callable[[Path], object] | None = None,
                      sidecars: tuple[str, ...] = ()) -> Path:
    """A file to write: with the ``suffix`` asked for (``why`` says why), not a folder, not the
    ``input`` file, of a type ``file_type`` accepts (it raises otherwise, e.g.
    kame.audio.output_format), in a folder that can be made and written into, each part of its
    name no longer than the file system allows (nor its name with the suffixes ``sidecars``, e.g.
    (".json",): the files written next to it)."""
    if not str(path).strip():
        example = f"answer{suffix}" if suffix else {"-o": "answer.wav", "--json": "answer.json"}.get(flag)
        raise ConfigError(f"{flag} is empty; give the file to write" + (f", e.g. {flag} {example}" if example else ""))
    out = Path(path)
    _check_name_lengths(out, f"{flag} {path}", sidecars)
    try:
        is_dir = out.is_dir()
    except OSError as exc:  # (a path longer than the system allows: ENAMETOOLONG)
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
    if is_dir or str(path).endswith(("/", os.sep)):  # (before the suffix: "must be a .wav file" would
        # hide that it is a folder; a name ending in / is one, made or not)
        example = f"such as {out / ('answer' + suffix)}" if suffix else "inside it"
        raise ConfigError(f"{flag} {path} is a folder, cannot write a file there; give a file name {example}")
    if suffix is not None and out.suffix.lower() != suffix:
        raise ConfigError(f"{flag} {path}: the output must be a {suffix} file{why}")
    if input is not None and out.resolve() == Path(input).resolve():
        raise ConfigError(f"{flag} {path} is the input file; give another {flag}")
    if file_type is not None:
        file_type(out)  # before any folder is made
    _writable_folder(out.parent, f"{flag} {path}", "its folder")
    return out


def check_output_folder(path: str | Path, *, flag: str = "--out") -> Path:
    """A folder to write into: made if missing."""
    if not str(path).strip():
        raise ConfigError(f"{flag} is empty; give the folder to write into")
    out = Path(path)
    _writable_folder(out, f"{flag} {path}", "the folder")
    return out


def kame_cache(part: str) -> Path:
    """kame's cache folder for ``part`` ("recordings", "llm"): ``$KAME_CACHE/part``, or
    ``~/.cache/kame/part`` (a ConfigError from expand_user where there is no home to expand ~ to)."""
    base = os.environ.get("KAME_CACHE") or expand_user("~/.cache/kame", "the cache folder (or set KAME_CACHE)")
    return Path(base) / part


def file_sha256(path) -> str:
    """The sha256 of a file (hex), read in 1 MB pieces (a codec's fingerprint, a tokenizer's, a
    training dialogue's audio)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class NotText(ValueError):
    """Why a file is no UTF-8 text (file_text): "cannot read it (permission denied)", "not UTF-8
    text (byte N)", ...; read_text's words without a name or a hint."""


def file_text(path: Path) -> tuple[bytes, str]:
    """``path``'s bytes and UTF-8 text, a leading BOM skipped (was: kept, so json refused line 1);
    NotText saying why not (not readable, a folder, "not UTF-8 text (byte N)", N counted from the
    file's start, or a NUL byte: a binary or UTF-16 file). For a caller that names several files
    in one error (knowledge notes); read_text for one file."""
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        why = "is a folder" if path.is_dir() else (exc.strerror or str(exc)).lower()
        raise NotText(f"cannot read it ({why})") from None
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # (as Notepad may write)
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotText(f"not UTF-8 text (byte {skip + exc.start})") from None
    if "\0" in text:  # (valid UTF-8, but no text holds one: UTF-16 without a BOM, a binary file)
        raise NotText(f"not text (a NUL byte at byte {data.index(0)}: a binary file, or UTF-16 text)")
    return data, text


def read_text(path: Path, name: str, hint: str, error: type[KameError] = ConfigError) -> tuple[bytes, str]:
    """``path``'s bytes and UTF-8 text (file_text), refused (``error``) as ``name`` (e.g.
    "--reference x.jsonl"), saying why (file_text's NotText), then ``hint`` (what to give). (kame
    eval's question and reference files, manifests, kame data's QA file.)"""
    try:
        return file_text(path)
    except NotText as exc:
        raise error(f"{name}: {exc}; {hint}") from None


def text_lines(text: str) -> list[str]:
    """``text``'s lines as an editor numbers them: split at \\n, \\r\\n and \\r only (was:
    str.splitlines, which also splits at \\x0b, \\x0c, \\x1c-\\x1e and at U+0085, U+2028 and
    U+2029, which JSON allows raw inside a string: a valid line refused as "Unterminated string",
    and the line numbers after one not an editor's), each without the white space at its end (a form
    feed there, which splitlines split off: was "Extra data"). For the JSONL readers that name a line
    by its number."""
    return [line.rstrip() for line in _LINE_BREAK.split(text)]


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
