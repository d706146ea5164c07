"""Small audio helpers shared by every component: resampling, wav I/O with checks.

kame exchanges audio internally as float32 mono at 24 kHz (kame.backend.types.SAMPLE_RATE).
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

from .errors import AudioFormatError

SAMPLE_RATE = 24000


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D float signal (scipy)."""
    if src_rate == dst_rate:
        return np.asarray(pcm, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(src_rate, dst_rate)
    return resample_poly(np.asarray(pcm, dtype=np.float64), dst_rate // g, src_rate // g).astype(np.float32)


def read_wav(path: str | Path, sample_rate: int | None = SAMPLE_RATE, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read an audio file as float32. With ``sample_rate`` set, resample to it.

    Returns (pcm [T] (mono) or [T, C], rate). Raises AudioFormatError for unreadable files.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioFormatError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError / RuntimeError
        raise AudioFormatError(f"cannot read audio file {path}: {exc}") from exc
    if data.size == 0:
        raise AudioFormatError(f"audio file {path} holds no samples")
    if mono:
        data = data.mean(axis=1)
        if sample_rate is not None and rate != sample_rate:
            data = resample(data, rate, sample_rate)
            rate = sample_rate
    return np.ascontiguousarray(data, dtype=np.float32), rate


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float32 audio ([T] or [T, C]) as 16-bit PCM wav."""
    import soundfile as sf

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(pcm, -1.0, 1.0), sample_rate, subtype="PCM_16")


def check_pcm(pcm: np.ndarray, expected_len: int | None = None) -> np.ndarray:
    """Validate one mono float frame; raise AudioFormatError with a precise reason."""
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise AudioFormatError(f"expected mono audio (1-D), got shape {arr.shape}")
    if expected_len is not None and arr.shape[0] != expected_len:
        raise AudioFormatError(f"expected {expected_len} samples per frame, got {arr.shape[0]}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise AudioFormatError(f"expected float audio in [-1, 1], got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise AudioFormatError("audio contains NaN or infinite samples")
    return arr.astype(np.float32, copy=False)
