"""Streaming voice activity detection: speech probability per chunk + speech start/end events.

Used by the STTs (end of utterance -> final transcript) and by the cascade (end of turn,
barge-in). Two back-ends, both offline:
  - "silero": the Silero VAD v5 ONNX shipped in the `silero-vad` wheel, run with onnxruntime
    (16 kHz, 512-sample chunks, recurrent state). The package itself is never imported (it
    needs torch hubs); the file is located with importlib.
  - "webrtc": `webrtcvad-wheels` (30 ms frames, a 0/1 decision used as the probability).

    vad = StreamingVAD(min_silence=0.5)               # or backend="webrtc"
    for frame in frames:                              # 24 kHz float32, any length (80 ms usual)
        for ev in vad.push(frame.pcm, frame.t):       # VADEvent("start"|"end", t)
            ...
    vad.probs                                         # [(chunk start t, p)] of the last push

Times are on the caller's clock: the first sample of ``pcm`` is at ``t``. The 24 -> 16 kHz
resampling (``to_16k``) is kame.audio.ChunkResampler: no group delay (a 16 kHz sample is at the
time of the 24 kHz audio it comes from), output held back by 16 input samples (0.7 ms) of
look-ahead, which ``to_16k`` accounts for in the time it returns. ``push`` is cheap
(~1 ms per 80 ms frame) but is still model compute: call it from a worker thread.
Run this file to print the events of a wav: python -m kame.backend.vad IN.wav
"""

from __future__ import annotations

import importlib.util
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..audio import ChunkResampler
from ..errors import AudioFormatError, ConfigError, MissingPackageError, NotAvailableError, install_hint
from .types import SAMPLE_RATE

VAD_RATE = 16000


def silero_model_path() -> Path:
    """Path of silero_vad.onnx inside the installed `silero-vad` wheel (no import of it)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise NotAvailableError(
            "silero VAD needs the silero-vad wheel: pip install --no-deps silero-vad==6.2.3 (scripts/setup.sh "
            "does it; --no-deps: its declared dependencies would pull another torch)"
        )  # (neutral: its callers say what the VAD is for, with vad_used_as)
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    if not path.exists():
        raise NotAvailableError(f"silero VAD model not found at {path}")
    return path


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingPackageError("silero VAD needs onnxruntime: " + install_hint("stt")) from exc
    return onnxruntime


def _import_webrtcvad():
    try:
        import webrtcvad
    except ImportError as exc:
        raise MissingPackageError("webrtc VAD needs webrtcvad-wheels: " + install_hint("stt")) from exc
    return webrtcvad


@contextmanager
def vad_used_as(lead: str = "", tail: str = ""):
    """A VAD's missing package or model file (NotAvailableError) raised inside is said with what
    the caller uses the VAD for: ``lead`` before its message, ``tail`` after it."""
    try:
        yield
    except NotAvailableError as exc:
        said = f"{lead}{exc}{tail}"
        exc.args = (said,)
        if isinstance(exc, ImportError):  # (its str() is its msg)
            exc.msg = said
        raise


def check_vad(cfg: VADConfig) -> None:
    """The errors StreamingVAD(cfg) would raise for a missing package (MissingPackageError naming
    the extra), a missing model file or an unknown backend, without making one: an STT checks its
    VAD when it is created, not per stream (where it was a loop of worker crashes)."""
    if _backend(cfg) == "silero":
        _import_onnxruntime()
        silero_model_path()
    else:
        _import_webrtcvad()


def _backend(cfg: VADConfig) -> str:
    """cfg.backend if kame has it, else a ConfigError naming the ones it has."""
    if cfg.backend not in ("silero", "webrtc"):
        raise ConfigError(f"unknown VAD backend {cfg.backend!r}: use 'silero' or 'webrtc'")
    return cfg.backend


_SESSIONS: dict[tuple, object] = {}  # (model file, intra/inter-op threads) -> InferenceSession
_SESSIONS_LOCK = threading.Lock()


def _silero_session(path: Path, intra: int = 1, inter: int = 1):
    """The process's one onnxruntime session for the silero file ``path`` with these thread
    counts, made on first use. Shared by every SileroModel: the model keeps no state of its own
    (the recurrent state and the context go in and out of each run, held per SileroModel) and
    ``InferenceSession.run`` may be called from several threads at once. (Was: one session per
    VAD, i.e. per STT stream and per cascade session: ~0.1 s each, and memory the allocator kept.)"""
    key = (str(path.resolve()), intra, inter)
    with _SESSIONS_LOCK:  # (held while making it: two first users don't both pay for one)
        session = _SESSIONS.get(key)
        if session is None:
            ort = _import_onnxruntime()
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = intra
            opts.inter_op_num_threads = inter
            session = _SESSIONS[key] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return session


class SileroModel:
    """Silero VAD v5 under onnxruntime: ``prob(chunk[512] @ 16 kHz) -> float`` with state.
    The onnxruntime session is the process's shared one (``_silero_session``); only the
    recurrent state and the context are this instance's."""

    chunk = 512
    context = 64  # the model sees the previous 64 samples in front of each chunk

    def __init__(self) -> None:
        _import_onnxruntime()  # (a missing package is reported even once a session is cached)
        self.session = _silero_session(silero_model_path())
        self.reset()

    def reset(self) -> None:
        self.state = np.zeros((2, 1, 128), np.float32)
        self.ctx = np.zeros((1, self.context), np.float32)

    def prob(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self.ctx, chunk[None].astype(np.float32)], axis=1)  # [1, 64 + 512]
        out, self.state = self.session.run(None, {"input": x, "state": self.state, "sr": np.array(VAD_RATE, np.int64)})
        self.ctx = x[:, -self.context:]
        return float(out[0, 0])


class WebRtcModel:
    """webrtcvad on 30 ms frames (480 samples @ 16 kHz); probability is 0.0 or 1.0."""

    chunk = 480

    def __init__(self, aggressiveness: int = 2) -> None:
        self.vad = _import_webrtcvad().Vad(aggressiveness)

    def reset(self) -> None:
        pass

    def prob(self, chunk: np.ndarray) -> float:
        pcm16 = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).tobytes()
        return 1.0 if self.vad.is_speech(pcm16, VAD_RATE) else 0.0


@dataclass(frozen=True)
class VADEvent:
    kind: Literal["start", "end"]
    t: float  # "start": first speech chunk's start; "end": last speech chunk's end (clock s)
    detected_at: float  # audio time at which the event became certain (>= t)


@dataclass
class VADConfig:
    backend: str = "silero"  # "silero" | "webrtc"
    threshold: float = 0.5  # p >= threshold starts/continues speech
    neg_threshold: float = 0.35  # p < neg_threshold counts as silence (hysteresis)
    min_silence: float = 0.5  # silence (s) that ends speech
    min_speech: float = 0.1  # speech (s) needed before "start" is reported
    webrtc_aggressiveness: int = 2


def vad_options(threshold: float | None = None, min_silence: float | None = None) -> dict:
    """VADConfig overrides for a speech ``threshold`` and an end-of-speech ``min_silence``
    (None: the default), keeping the hysteresis: silence below 0.7 x the threshold (the
    defaults' 0.35 / 0.5)."""
    opts: dict = {} if min_silence is None else {"min_silence": min_silence}
    if threshold is not None:
        opts.update(threshold=threshold, neg_threshold=min(VADConfig.neg_threshold, 0.7 * threshold))
    return opts


@dataclass
class _VADState:
    in_speech: bool = False
    speech_start: float | None = None  # candidate/actual start of the current speech run
    speech_run: float = 0.0  # seconds of consecutive speech before "start" is confirmed
    last_speech_end: float | None = None
    silence: float = 0.0  # seconds of silence since last speech chunk
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # 16 kHz leftover
    pending_t: float = 0.0  # time of pending[0]


class StreamingVAD:
    """Speech probability per chunk and start/end-of-speech events on a 24 kHz stream."""

    def __init__(self, config: VADConfig | None = None, **overrides) -> None:
        cfg = config or VADConfig()
        for k, v in overrides.items():
            if not hasattr(cfg, k):
                raise ConfigError(f"unknown VAD option {k!r}; known: {sorted(VADConfig.__dataclass_fields__)}")
            setattr(cfg, k, v)
        self.cfg = cfg
        self.model = SileroModel() if _backend(cfg) == "silero" else WebRtcModel(cfg.webrtc_aggressiveness)
        self.resampler = ChunkResampler(SAMPLE_RATE, VAD_RATE)
        self.probs: list[tuple[float, float]] = []
        self.st = _VADState()

    @property
    def in_speech(self) -> bool:
        return self.st.in_speech

    @property
    def last_voice(self) -> float | None:
        """End time of the latest chunk heard as speech (None before any): unlike ``in_speech``
        it stops moving during the ``min_silence`` wait that ends a speech region."""
        return self.st.last_speech_end

    def reset(self) -> None:
        self.model.reset()
        self.resampler = ChunkResampler(SAMPLE_RATE, VAD_RATE)
        self.st = _VADState()

    def push(self, pcm: np.ndarray, t: float) -> list[VADEvent]:
        """Feed 24 kHz float32 audio starting at clock time ``t``; return the new events."""
        pcm = np.asarray(pcm)
        if pcm.ndim != 1 or not np.issubdtype(pcm.dtype, np.floating):
            raise AudioFormatError(f"VAD expects mono float audio, got shape {pcm.shape} dtype {pcm.dtype}")
        return self.push_16k(*self.to_16k(pcm, t))

    def to_16k(self, pcm: np.ndarray, t: float) -> tuple[np.ndarray, float]:
        """24 kHz audio starting at ``t`` -> (the 16 kHz audio it completes, the time of its first
        sample). The output runs ~0.7 ms behind the input (the resampler's look-ahead), so its
        first sample is slightly before ``t`` and its length varies around 2/3 of the input's
        (80 ms frames: 1269 samples, then 1280 each); the lag is taken as contiguous with
        ``t`` (a gap in the caller's times shifts at most that 0.7 ms)."""
        t16 = t - self.resampler.lag / SAMPLE_RATE
        return self.resampler(np.asarray(pcm, np.float32)), t16

    def push_16k(self, pcm16k: np.ndarray, t: float) -> list[VADEvent]:
        """Feed audio already at 16 kHz (first sample at ``t``)."""
        st, n = self.st, self.model.chunk
        if st.pending.size == 0:
            st.pending_t = t
        buf = np.concatenate([st.pending, pcm16k.astype(np.float32)])
        self.probs = []
        events: list[VADEvent] = []
        dt = n / VAD_RATE
        i = 0
        while i + n <= buf.shape[0]:
            t0 = st.pending_t + i / VAD_RATE
            p = self.model.prob(buf[i:i + n])
            self.probs.append((t0, p))
            events += self._update(p, t0, t0 + dt)
            i += n
        st.pending = buf[i:]
        st.pending_t = st.pending_t + i / VAD_RATE
        return events

    def _update(self, p: float, t0: float, t1: float) -> list[VADEvent]:
        cfg, st = self.cfg, self.st
        if p >= cfg.threshold:
            st.silence = 0.0
            st.last_speech_end = t1
            if st.speech_start is None:
                st.speech_start, st.speech_run = t0, 0.0
            st.speech_run += t1 - t0
            if not st.in_speech and st.speech_run >= cfg.min_speech:
                st.in_speech = True
                return [VADEvent("start", st.speech_start, t1)]
            return []
        if p < cfg.neg_threshold or not st.in_speech:
            st.silence += t1 - t0
            if not st.in_speech:
                st.speech_start = None  # a too-short blip: forget it
                return []
            if st.silence >= cfg.min_silence:
                st.in_speech = False
                st.speech_start = None
                return [VADEvent("end", st.last_speech_end if st.last_speech_end is not None else t0, t1)]
        else:  # between thresholds while in speech: counts as speech continuing
            st.silence = 0.0
            st.last_speech_end = t1
        return []


def main(argv: list[str] | None = None) -> None:
    """Prints the VAD events of a wav, its last part-frame too. Speech that reaches the end of the
    file is ended by min_silence (+ 0.1 s) of silence added after it, and said so (was: no "end"
    for speech ending less than min_silence before the end of the file)."""
    import sys

    from ..audio import read_wav

    pcm, _ = read_wav((sys.argv[1:] if argv is None else argv)[0])
    vad = StreamingVAD()
    end_s = pcm.shape[0] / SAMPLE_RATE
    pcm = np.concatenate([pcm, np.zeros(int((vad.cfg.min_silence + 0.1) * SAMPLE_RATE), np.float32)])
    for i in range(0, pcm.shape[0], 1920):
        for ev in vad.push(pcm[i:i + 1920], i / SAMPLE_RATE):
            after = f", after the end of the file at {end_s:.2f}s" if ev.detected_at > end_s else ""
            print(f"{ev.kind:5s} t={ev.t:7.2f}s (detected at {ev.detected_at:.2f}s{after})")
    if vad.in_speech:  # (not expected after the added silence)
        print(f"speech still on at the end of the file ({end_s:.2f}s)")


if __name__ == "__main__":
    main()
