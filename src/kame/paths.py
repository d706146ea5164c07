"""Local paths as kame reads them, and checks of the files and folders a command will write,
made before its work (minutes of fitting, a whole conversation), not after it: each failure is a
ConfigError naming the option.

    path = local_path("file://~/ck")                                # a spec's or config's local name
    out = check_output_file(args.output, input=args.input)         # -o FILE
    out = check_output_file(args.output, suffix=".wav")             # ... of one type
    folder = check_output_folder(args.out)                          # --out FOLDER
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import ConfigError


def local_path(name: str | Path) -> Path:
    """A local file or folder as specs (``embedded:``, ``mimi:``, a front-end) and config.json's file
    names give it: PATH or file://PATH, ~ expanded. The one reading of such a name."""
    return Path(str(name).removeprefix("file://")).expanduser()


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


def _writable_folder(folder: Path, label: str, what: str) -> None:
    blocker = next((f for f in (folder, *folder.parents) if f.exists() and not f.is_dir()), None)
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
    except OSError as exc:
        raise ConfigError(f"{label}: cannot write into {folder}: {exc.strerror or exc}") from None


def check_output_file(path: str | Path, *, flag: str = "-o", suffix: str | None = None, why: str = "",
                      input: str | Path | None = None, file_type: Callable[[Path], object] | None = None) -> Path:
    """A file to write: with the ``suffix`` asked for (``why`` says why), not a folder, not the
    ``input`` file, of a type ``file_type`` accepts (it raises otherwise, e.g.
    kame.audio.output_format), in a folder that can be made and written into."""
    if not str(path).strip():
        example = f"answer{suffix}" if suffix else {"-o": "answer.wav", "--json": "answer.json"}.get(flag)
        raise ConfigError(f"{flag} is empty; give the file to write" + (f", e.g. {flag} {example}" if example else ""))
    out = Path(path)
    if out.is_dir() or str(path).endswith(("/", os.sep)):  # (before the suffix: "must be a .wav file" would
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


def file_sha256(path) -> str:
    """The sha256 of a file (hex), read in 1 MB pieces (a codec's fingerprint, a tokenizer's, a
    training dialogue's audio)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
