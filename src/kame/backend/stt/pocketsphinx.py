"""PocketSphinx STT: true word-by-word partials every 80 ms, offline, weak accuracy.

Uses the en-us acoustic model, language model and dictionary bundled in the `pocketsphinx`
wheel (16 kHz int16). Decoders are slow to build (~0.5 s), so each STT keeps a small pool.

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


def _load_decoder():
    try:
        from pocketsphinx import Decoder
    except ImportError as exc:
        raise NotAvailableError("pocketsphinx STT needs: pip install 'kame-tandem[stt]'") from exc
    return Decoder(samprate=16000, loglevel="FATAL")


class DecoderPool:
    """Idle pocketsphinx decoders, reused across utterances and streams (thread-safe)."""

    def __init__(self) -> None:
        self._idle: list = []
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _load_decoder()

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
        self.dec.process_raw((np.clip(pcm16k, -1, 1) * 32767).astype(np.int16).tobytes(), False, False)

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
        self.pool.put(_load_decoder())  # fail now (not mid-stream) if the model is missing

    def new_recognizer(self) -> Recognizer:
        return PocketsphinxRecognizer(self.pool)


def create(arg: str | None = None, **kwargs) -> PocketsphinxSTT:
    if arg:
        raise NotAvailableError(f"pocketsphinx takes no argument (got {arg!r}); it uses the bundled en-us model")
    return PocketsphinxSTT(**kwargs)
