"""Small audio helpers shared by every component: resampling (whole signals, and streams chunk
by chunk: ``ChunkResampler``), wav I/O with checks.

kame exchanges audio internally as float32 mono at 24 kHz (kame.backend.types.SAMPLE_RATE).
"""

from __future__ import annotations

import io
import logging
import math
import shlex
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np

from .errors import AudioFormatError, KameError
from .paths import write_replacing

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
# the sample rates read_wav accepts: a file that says it has fewer samples per second is not speech
# audio; more than the fastest audio interfaces record (768 kHz; studio rates end at 384 kHz) is a
# damaged or hand-made header, whose resampling would cost seconds and gigabytes for nothing
MIN_FILE_RATE, MAX_FILE_RATE = 4000, 768000
# the largest up/down factor of an exact resampling: scipy's filter has 20 taps per unit of it, so a
# ratio such as 24000/383999 (coprime) would need 7.7 million taps (and 1999999973 Hz, 298 GiB). Every
# common rate (8000 ... 384000 Hz, to 24 or 16 kHz) needs 441 at most; a rate beyond this is resampled
# at the nearest ratio whose factors fit, within 0.013% for the rates read_wav accepts (see _factors)
MAX_RESAMPLE_FACTOR = 4096
# the loudest sample accepted where float audio goes in (codecs, write_wav): float audio may go a
# little over full scale, but +24 dBFS is never audio scaled to [-1, 1] (int16 or uint8 values
# cast to float are, silently, garbage)
MAX_PEAK = 16.0


def peak_problem(samples) -> str | None:
    """Why these samples (an array, or already their largest |sample| as a number) are unusable,
    else None: NaN/inf samples (the peak is then NaN or inf), or samples beyond MAX_PEAK. The one
    check of sample values, made where audio comes in (a session's pushed audio, the server's
    Opus decoder, the codecs, write_wav)."""
    samples = np.asarray(samples)
    peak = float(np.abs(samples).max()) if samples.size else 0.0  # NaN if any sample is NaN
    if not math.isfinite(peak):
        return "audio contains NaN or infinite samples"
    if peak > MAX_PEAK:
        return f"samples reach {peak:.6g}, expected float audio in [-1, 1] (int16 samples? divide them by 32768)"
    return None


# the share of samples beyond full scale from which kame run's summary and kame client warn (a
# handful of clipped samples is inaudible)
CLIPPED_WARN_SHARE = 1e-4


def clipped_share(pcm) -> float:
    """The share of ``pcm``'s samples beyond full scale (|x| > 1): what a 16-bit file, or kame
    client's PCM and Opus encoders, clip (0.0 for no samples)."""
    pcm = np.asarray(pcm)
    return float(np.mean(np.abs(pcm) > 1.0)) if pcm.size else 0.0


def audio_problem(pcm) -> str | None:
    """Why a chunk of audio is unusable (None if fine): the check of user audio pushed to either
    agent and of a TTS's output. Integer PCM is refused, not guessed; so is a list."""
    if not isinstance(pcm, np.ndarray):  # (a numpy scalar's type name alone read as a dtype: "got float32")
        what = f"a numpy scalar ({pcm.dtype})" if isinstance(pcm, np.generic) else type(pcm).__name__
        return f"expected a float32 numpy array (mono, 24 kHz, in [-1, 1]), got {what}"
    if not np.issubdtype(pcm.dtype, np.floating):
        return f"expected float32 samples in [-1, 1], got dtype {pcm.dtype}"
    if pcm.ndim != 1 and not (pcm.ndim == 2 and 1 in pcm.shape):
        return f"expected mono audio (1-D), got shape {pcm.shape}"
    return peak_problem(pcm)  # NaN, or int16 values as floats


def check_rate(rate: float, what: str = "sample rate") -> int:
    """A sample rate: a positive whole number (24000 or 24000.0) -> int, else AudioFormatError."""
    try:
        ok = float(rate).is_integer() and rate > 0 and not isinstance(rate, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise AudioFormatError(f"{what} must be a positive whole number of Hz, got {rate!r}")
    return int(rate)


def _factors(src: int, dst: int) -> tuple[int, int]:
    """(up, down) of resampling ``src`` Hz to ``dst`` Hz: the exact ratio dst/src in lowest terms
    when both fit in MAX_RESAMPLE_FACTOR (every common rate: the result is as it always was), else
    the nearest ratio whose terms fit (an awkward rate such as 383999 Hz: 1/16 for 24 kHz, 2.6 ppm
    off; the output's length and pitch are off by as much). A ratio beyond MAX_RESAMPLE_FACTOR
    itself (24 kHz from 5 Hz) is an AudioFormatError."""
    g = gcd(src, dst)
    up, down = dst // g, src // g
    if max(up, down) <= MAX_RESAMPLE_FACTOR:
        return up, down
    if max(up, down) > MAX_RESAMPLE_FACTOR * min(up, down):  # (no ratio of bounded terms is near it)
        raise AudioFormatError(f"cannot resample {src} Hz to {dst} Hz: a ratio of more than {MAX_RESAMPLE_FACTOR} "
                               f"(is {src} Hz the audio's rate?)")
    small = Fraction(min(up, down), max(up, down)).limit_denominator(MAX_RESAMPLE_FACTOR)  # both terms fit
    return (small.numerator, small.denominator) if up < down else (small.denominator, small.numerator)


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Polyphase resampling of a float signal [T] or [T, C] (scipy) along its first axis (an
    awkward rate pair at a ratio a little off: ``_factors``)."""
    src_rate, dst_rate = check_rate(src_rate, "source sample rate"), check_rate(dst_rate, "target sample rate")
    if src_rate == dst_rate:
        return np.asarray(pcm, dtype=np.float32)
    from scipy.signal import resample_poly

    up, down = _factors(src_rate, dst_rate)
    return resample_poly(np.asarray(pcm, dtype=np.float64), up, down, axis=0).astype(np.float32)


class ChunkResampler:
    """Resamples a stream chunk by chunk exactly as ``resample`` (scipy's polyphase filter) would
    resample it whole: each output sample is computed once, with enough input on both sides
    (``last=True`` pads the end with zeros, as the whole-signal resampling does). Resampling each
    chunk on its own instead clicks at every chunk edge and drifts in length.

        rs = ChunkResampler(24000, 16000)
        out = [rs(chunk) for chunk in chunks] + [rs(tail, last=True)]   # == resample(whole, ...)

    Output is aligned with the input (no group delay: output sample k is at time k / dst) but
    comes out late: an output sample is emitted once ``pad`` input samples after it have arrived
    (24 -> 16 kHz: 16 samples, 0.7 ms), so the output length of a call varies around
    len(chunk) * dst / src. ``lag`` tells where the next output sample lies in time."""

    def __init__(self, src: int, dst: int) -> None:
        src, dst = check_rate(src, "source sample rate"), check_rate(dst, "target sample rate")
        self.up, self.down = _factors(src, dst)  # (as resample's: a bounded filter for any rates)
        half = 10 * max(self.up, self.down)  # scipy's filter design, made once (not per chunk)
        if self.up != self.down:
            from scipy.signal import firwin

            self.taps = firwin(2 * half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0))
        self.pad = -(-half // self.up) + 1  # input samples of filter half-width
        self.buf = np.zeros(0, np.float32)
        self.off = 0  # input index of buf[0]: a multiple of ``down`` (so outputs align)
        self.out = 0  # next output index

    @property
    def lag(self) -> float:
        """Input samples received but not yet resampled: the next output sample lies this many
        input sample periods before the end of the input so far (below ``pad`` + src / dst; 0
        when the rates are equal). For a stream on a clock, the output of ``rs(chunk)`` with
        chunk[0] at time t starts at ``t - rs.lag / src`` (``lag`` read before the call)."""
        return self.off + len(self.buf) - self.out * self.down / self.up

    def __call__(self, pcm: np.ndarray, last: bool = False) -> np.ndarray:
        if self.up == self.down:
            return pcm
        from scipy.signal import resample_poly

        self.buf = np.concatenate([self.buf, pcm])
        end = self.off + len(self.buf)  # input samples received
        ready = -(-end * self.up // self.down) if last else max(0, (end - self.pad) * self.up // self.down)
        if ready <= self.out:
            return np.zeros(0, np.float32)
        y = resample_poly(np.asarray(self.buf, np.float64), self.up, self.down, window=self.taps)
        first = self.off * self.up // self.down  # output index of y[0]
        chunk = y[self.out - first: ready - first].astype(np.float32)
        self.out = ready
        keep = max(0, (self.out * self.down // self.up - self.pad) // self.down * self.down)  # new off
        if keep > self.off:
            self.buf, self.off = self.buf[keep - self.off:], keep
        return chunk


def read_wav(path: str | Path, sample_rate: int | None = SAMPLE_RATE, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read an audio file as float32. With ``sample_rate`` set, resample to it.

    Returns (pcm [T] (mono) or [T, C], rate). Raises AudioFormatError for unreadable files.
    """
    import soundfile as sf

    if str(path) == "":  # Path("") is the current folder
        raise AudioFormatError("no audio file given (an empty path)")
    if sample_rate is not None:
        sample_rate = check_rate(sample_rate)
    path = Path(path)
    if not path.exists():
        raise AudioFormatError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioFormatError(f"{path} is a folder, not an audio file")
    source: str | io.BytesIO = str(path)
    raw = None  # (a pipe's bytes)
    if path.is_file():
        size = path.stat().st_size
    else:  # a pipe (/dev/stdin, <(...)): read into memory, then read as a file is (libsndfile reads
        try:  # no FLAC from a pipe, no Ogg of unknown length, and an MP3 without its start trimmed)
            raw = path.read_bytes()
        except OSError as exc:
            raise AudioFormatError(f"cannot read audio file {path}: {exc.strerror or exc}") from exc
        source, size = io.BytesIO(raw), len(raw)
    if size == 0:  # (soundfile: "Format not recognised")
        raise AudioFormatError(f"audio file {path} is empty (0 bytes)")
    check_wav_length(path, raw)
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError / RuntimeError
        said = getattr(exc, "error_string", None) or exc  # (libsndfile's words: "Error opening <BytesIO ...>" no more)
        raise AudioFormatError(f"cannot read audio file {path}: {said}{_read_hint(path, exc)}") from exc
    if data.size == 0:
        raise AudioFormatError(f"audio file {path} holds no samples")
    if rate < MIN_FILE_RATE:  # resampled, 100 samples "at 1 Hz" would become 100 s of noise
        raise AudioFormatError(f"audio file {path} says its sample rate is {rate} Hz (below {MIN_FILE_RATE}): "
                               f"a damaged header, or not audio")
    if rate > MAX_FILE_RATE:  # (2 s of samples "at 2 GHz" would become 1 ms, after seconds of filtering)
        raise AudioFormatError(f"audio file {path} says its sample rate is {rate} Hz (above {MAX_FILE_RATE}): "
                               f"a damaged header, or not audio")
    # float files only can hold NaN/inf or samples beyond full scale, which would reach the codec or
    # the STT: refused as the codecs refuse them, but naming the file (was: "encode: samples reach ...")
    problem = peak_problem(data)
    if problem:
        raise AudioFormatError(f"audio file {path}: {problem}")
    if mono:
        data = mix_to_mono(data, path)
        if sample_rate is not None and rate != sample_rate:
            data = resample(data, rate, sample_rate)
            rate = sample_rate
    return np.ascontiguousarray(data, dtype=np.float32), rate


# what read_wav reads (libsndfile's formats): said by the --help of every command reading audio and by
# _read_hint (the one list)
READ_FORMATS = "WAV, FLAC, Ogg (Vorbis or Opus), MP3, AIFF"
# libsndfile's error codes (sf_error_number) of a format or an encoding it does not read: not
# recognised (1), unsupported encoding (4), unimplemented format (18), a WAV's fmt chunk it cannot
# take (64: an AAC or WMA codec tag; a damaged fmt chunk too); a cut FLAC or Ogg header gives 18 too
_ENCODING_OR_DAMAGED = "an encoding kame does not read, or a damaged file"
FOREIGN_CODES = {1: "not audio, or a format kame does not read", 4: "not audio, or an encoding kame does not read",
                 18: _ENCODING_OR_DAMAGED, 64: _ENCODING_OR_DAMAGED}
# ... and those seen on files cut short or damaged: malformed (3), an MP3 decoder's failure (7,
# "not a regular file"), an AIFF header with no channels (32), seeking past the end (39), a WAV
# without its data chunk (71), a FLAC's bad header, lost sync, changed channels, decoder error
DAMAGED_CODES = {3, 7, 32, 39, 71, 155, 158, 160, 161}


def command_input(path, kind: str = "") -> tuple[str, str]:
    """How advice gives ``path`` to a shell command as its input: ("", the quoted path) for a
    regular file; for a pipe, read once already (/dev/stdin, <(...)), ("... | ", "-") preceded by
    ``kind`` (e.g. "-t wav ": sox must be told what it reads from stdin)."""
    path = Path(path)
    return ("", shlex.quote(str(path))) if path.is_file() else ("... | ", f"{kind}-")


def _read_hint(path: Path, exc: Exception) -> str:
    """What to do about libsndfile's error ``exc`` reading ``path`` (said after its own words), by
    its code: a format or an encoding it does not read (FOREIGN_CODES) -> the formats kame reads and
    how to convert (ffmpeg); a code seen on files cut short or damaged (DAMAGED_CODES) -> it may be
    truncated or damaged; another code (a system error, memory, ...) or exception -> nothing."""
    code = getattr(exc, "code", None)
    if code in FOREIGN_CODES:
        pipe, src = command_input(path)
        out = shlex.quote(str(path.with_name(f"{path.stem}{'-converted' if path.suffix.lower() == '.wav' else ''}.wav"))
                          ) if not pipe else "converted.wav"  # (a pipe: no folder of its own)
        return (f" ({FOREIGN_CODES[code]}: it reads {READ_FORMATS}; convert it first, e.g. {pipe}ffmpeg -i {src} {out}"
                f"{', then give converted.wav' if pipe else ''})")
    if code in DAMAGED_CODES:
        return f" ({path} may be truncated or damaged)"
    return ""


def mix_to_mono(channels: np.ndarray, path: str | Path) -> np.ndarray:
    """A file's samples [T, C] mixed to mono [T] (their mean), with a warning naming ``path``
    when the channels cancel out in the mix (one out of phase: the mix is near silence though
    each channel is not); the mix is returned either way."""
    mixed = channels.mean(axis=1)
    if channels.shape[1] < 2:
        return mixed
    n = len(mixed)  # (dot products: no float64 copy of a long file)
    each = float(np.sqrt(sum(float(np.dot(c, c)) for c in channels.T) / (n * channels.shape[1])))
    left = float(np.sqrt(float(np.dot(mixed, mixed)) / n))
    if each > 1e-4 and left < 0.1 * each:
        log.warning("%s: its %d channels cancel out when mixed to mono (%.0f dB quieter than the channels: one "
                    "is out of phase?); the mono mix is used: give one channel instead (e.g. sox IN.wav OUT.wav "
                    "remix 1)", path, channels.shape[1], 20 * np.log10(max(left, 1e-12) / each))
    return mixed


def check_wav_length(path: Path, raw: bytes | None = None) -> None:
    """A WAV file cut short (a copy or a download that stopped) reads without complaint as the
    samples that are left, so compare its data chunk's declared size with the bytes present:
    fewer is an AudioFormatError ("truncated"). More, where what follows the declared audio is no
    RIFF chunk (a LIST or id3 chunk after the data is normal) and at least 0.1 s of audio (4096
    bytes at least: less is an ID3v1 tag, padding or a cut chunk, not audio), is a recording whose
    header was never finished (a recorder killed before it closed the file): libsndfile reads the
    declared part only, so a warning names both lengths. A data size of 0 is libsndfile's
    placeholder only with a RIFF size of 8 too (its own piped output: read to the end of the
    file); with any other RIFF size it reads no samples, and the warning comes before read_wav's
    "holds no samples".
    Sizes from 0x7FFF0000 up (placeholders of writers that did not know the length: arecord, sox,
    streams; read to the end) are not checked, nor a file that cannot be opened (libsndfile then
    says why). ``raw``: the bytes of a path that is no regular file (a pipe, read once by read_wav),
    checked as the file would be; without them such a path is not checked."""
    if raw is None and not path.is_file():
        return
    byte_rate = 0  # the fmt chunk's bytes per second (0: none before the data)
    try:
        with open(path, "rb") if raw is None else io.BytesIO(raw) as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
                return  # not a RIFF/WAVE file: libsndfile judges it
            while len(chunk := f.read(8)) == 8:  # (no data chunk: libsndfile says what is wrong)
                n = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    start, size = f.tell(), path.stat().st_size if raw is None else len(raw)
                    have = size - start
                    break
                if chunk[:4] == b"fmt " and n >= 12:
                    byte_rate = int.from_bytes(f.read(12)[8:], "little")
                    f.seek(-12, 1)
                f.seek(n + (n & 1), 1)  # chunks are padded to an even size
            else:
                return
            if 0 < n < 0x7FFF0000 and have < n:
                raise AudioFormatError(f"audio file {path} is truncated: its header announces {n} bytes "
                                       f"of audio, the file holds {have}")
            riff_placeholder = n == 0 and int.from_bytes(head[4:8], "little") == 8  # (libsndfile's pipe)
            if n >= 0x7FFF0000 or riff_placeholder or have - n < max(4096, byte_rate // 10) or \
                    any(_chunks_to_end(f, start + end, size) for end in {n + (n & 1), n}):
                return
    except OSError:
        return

    def secs(nbytes: int) -> str:
        return f" ({nbytes / byte_rate:.2f} s)" if byte_rate else ""

    pipe, src = command_input(path, "-t wav ")
    fixed = shlex.quote(str(path.with_name(f"{path.stem}-fixed.wav"))) if not pipe else "fixed.wav"  # (a pipe: no folder)
    log.warning("audio file %s: its header declares %d bytes of audio%s, yet the file holds %d after the header%s, "
                "the rest no RIFF chunk: a recording that was never closed? Only the declared %d bytes are read; "
                "to read all of it, rewrite its header first: %ssox --ignore-length %s %s", path, n, secs(n), have,
                secs(have), n, pipe, src, fixed)


def _chunks_to_end(f, at: int, size: int) -> bool:
    """Whether the bytes of ``f`` from offset ``at`` to ``size`` are whole RIFF chunks (an id of
    4 printable ASCII characters, a size that fits), up to a few stray pad bytes at the end."""
    while size - at >= 8:
        f.seek(at)
        chunk = f.read(8)
        m = int.from_bytes(chunk[4:], "little")
        if not all(0x20 <= c < 0x7F for c in chunk[:4]) or at + 8 + m > size:
            return False
        at += 8 + m + (m & 1)
    return True


# what write_wav writes, by the file name's extension: (libsndfile format, subtype)
WRITE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
                 ".opus": ("OGG", "OPUS"), ".mp3": ("MP3", "MPEG_LAYER_III")}


def output_format(path: str | Path) -> tuple[str, str]:
    """The (format, subtype) write_wav uses for ``path``; KameError for another extension (check
    it before the work that makes the audio)."""
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise KameError(f"cannot write audio file {path}: unknown file type {path.suffix or '(no extension)'!r}; "
                        f"use one of {', '.join(WRITE_FORMATS)}")
    return fmt


MAX_CHANNELS = 16  # more "channels" than this is a [channels, T] array passed as [T, channels]


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float32 audio ([T] or [T, C]): 16-bit PCM .wav or .flac, or .ogg (Vorbis), .opus,
    .mp3 (by the extension); the folder is created. The file appears only once written whole
    (a temporary file beside it is renamed), so a failed write leaves an existing file as it was.
    Another extension, or a file that cannot be written, raises KameError naming it; audio of
    another shape ([channels, T]: transpose it) or with NaN/inf, AudioFormatError."""
    import soundfile as sf

    path = Path(path)
    fmt = output_format(path)
    sample_rate = check_rate(sample_rate)
    pcm = np.asarray(pcm)
    if not np.issubdtype(pcm.dtype, np.floating):
        raise AudioFormatError(f"cannot write audio file {path}: expected float samples in [-1, 1], got dtype "
                               f"{pcm.dtype}" + (" (int16 samples? divide them by 32768)" if pcm.dtype.kind in "iu" else ""))
    pcm = pcm.astype(np.float32, copy=False)
    if pcm.ndim not in (1, 2) or (pcm.ndim == 2 and pcm.shape[1] > MAX_CHANNELS):
        hint = " (channels first? transpose it)" if pcm.ndim == 2 else ""
        raise AudioFormatError(f"cannot write audio file {path}: expected samples [T] or [T, channels], "
                               f"got shape {pcm.shape}{hint}")
    # NaN would be written as full-scale clicks, int16 values as floats clipped to a square wave
    problem = peak_problem(pcm)
    if problem:
        raise AudioFormatError(f"cannot write audio file {path}: {problem}")
    write_replacing(path, lambda tmp: sf.write(str(tmp), np.clip(pcm, -1.0, 1.0), sample_rate, format=fmt[0],
                                               subtype=fmt[1]),
                    "audio file", errors=(RuntimeError, ValueError))  # (LibsndfileError is a RuntimeError)


def check_pcm(pcm: np.ndarray, expected_len: int | None = None) -> np.ndarray:
    """Validate one mono float frame; raise AudioFormatError with a precise reason."""
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise AudioFormatError(f"expected mono audio (1-D), got shape {arr.shape}")
    if expected_len is not None and arr.shape[0] != expected_len:
        raise AudioFormatError(f"expected {expected_len} samples per frame, got {arr.shape[0]}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise AudioFormatError(f"expected float audio in [-1, 1], got dtype {arr.dtype}")
    problem = peak_problem(arr)
    if problem:
        raise AudioFormatError(problem)
    return arr.astype(np.float32, copy=False)
