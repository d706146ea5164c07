"""PocketSphinx STT: true word-by-word partials every 80 ms, offline, weak accuracy.

Uses the en-us acoustic model, language model and dictionary bundled in the `pocketsphinx`
wheel (16 kHz int16). Decoders are slow to build (~0.5 s), so each STT keeps a small pool.

pocketsphinx's Python binding holds the GIL while it decodes, which stalls every other thread
of the process (the front-end's step, the event loop) for as long as one call lasts. So audio
is fed in 20 ms pieces (calls of ~2-8 ms instead of up to ~50 ms for an 80 ms frame), and the
embedded STT, which only falls back on pocketsphinx's final, builds its decoders without the
second ``fwdflat`` pass (end of utterance ~3 ms instead of ~60-130 ms).

    stt = PocketsphinxSTT()                    # or registry.create("stt", "pocketsphinx")
    async for tr in stt.stream(frames): ...
"""

from __future__ import annotations

import re
import threading

import numpy as np

from ...errors import NotAvailableError
from ..types import Word
from .streaming import Recognizer, SegmentedSTT

_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")


_PIECE = 320  # samples (20 ms at 16 kHz) per process_raw call: bounds how long one call holds the GIL


def _load_decoder(**options):
    """A decoder with the bundled en-us model; ``options`` are pocketsphinx config settings
    (e.g. fwdflat=False)."""
    try:
        from pocketsphinx import Decoder
    except ImportError as exc:
        raise NotAvailableError("pocketsphinx STT needs: pip install 'kame-tandem[stt]'") from exc
    return Decoder(samprate=16000, loglevel="FATAL", **options)


class DecoderPool:
    """Idle pocketsphinx decoders, reused across utterances and streams (thread-safe); new ones
    are built with ``options`` (see _load_decoder)."""

    def __init__(self, **options) -> None:
        self._idle: list = []
        self._lock = threading.Lock()
        self.options = options

    def get(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _load_decoder(**self.options)

    def put(self, decoder) -> None:
        with self._lock:
            self._idle.append(decoder)


class PocketsphinxRecognizer(Recognizer):
    def __init__(self, pool: DecoderPool) -> None:
        self.pool = pool
        self.dec = pool.get()
        self.dec.start_utt()
        self.frate = 100.0  # pocketsphinx frames per second (10 ms)

    def accept(self, pcm16k: np.ndarray) -> None:
        pcm = (np.clip(pcm16k, -1, 1) * 32767).astype(np.int16)
        for i in range(0, pcm.shape[0], _PIECE):  # short calls: other threads get the GIL in between
            self.dec.process_raw(pcm[i:i + _PIECE].tobytes(), False, False)

    def words(self) -> list[Word]:
        out = []
        for seg in self.dec.seg():
            w = re.sub(r"\(\d+\)$", "", seg.word)
            if not w or _FILLER.match(w):
                continue
            out.append(Word(w, seg.start_frame / self.frate, (seg.end_frame + 1) / self.frate))
        return out

    def partial(self) -> list[Word] | None:
        return self.words() if self.dec.hyp() is not None else None

    def final(self, speech_end: float | None = None) -> list[Word]:
        self.dec.end_utt()
        words = self.words() if self.dec.hyp() is not None else []
        self.pool.put(self.dec)
        return words


class PocketsphinxSTT(SegmentedSTT):
    name = "pocketsphinx"
    partial_interval = 0.08  # every frame: decoding is incremental and cheap

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pool = DecoderPool()
        self.pool.put(self.pool.get())  # fail now (not mid-stream) if the model is missing

    def new_recognizer(self) -> Recognizer:
        return PocketsphinxRecognizer(self.pool)


def create(arg: str | None = None, **kwargs) -> PocketsphinxSTT:
    if arg:
        raise NotAvailableError(f"pocketsphinx takes no argument (got {arg!r}); it uses the bundled en-us model")
    return PocketsphinxSTT(**kwargs)
