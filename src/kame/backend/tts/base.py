"""The speech synthesis interface.

    tts = registry.create("tts", "embedded")
    async for pcm in tts.synthesize("Hello there."):   # float32 mono chunks at 24 kHz
        ...

Chunks are streamed as soon as they are ready (e.g. sentence by sentence). Cancelling the
consuming task stops synthesis.

For training data, ``synth_words`` also says when each word is spoken (espeak and piper):

    pcm, words = tts.synth_words("Hi, I have 18 cats.")   # blocking
    [(w.word, w.start, w.end) for w in words]              # one per text.split() token, seconds
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import AsyncIterator

import numpy as np

from ...errors import NotAvailableError

WORD_TIMED_TTS = ("espeak", "piper")  # the built-in TTSs whose synth_words works


@dataclass(frozen=True)
class TimedWord:
    """One token of the text (whitespace-separated, punctuation attached) and when it is spoken,
    in seconds from the start of the audio returned with it."""

    word: str
    start: float
    end: float


class TTS(ABC):
    name: str = "tts"
    sample_rate: int = 24000  # what synthesize() yields (implementations resample)

    @abstractmethod
    def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        """Stream float32 mono audio at ``sample_rate`` for ``text``."""

    def synth_words(self, text: str) -> tuple[np.ndarray, list[TimedWord]]:
        """Blocking: float32 mono audio at ``sample_rate`` for ``text`` and one TimedWord per
        ``text.split()`` token, in order, within the audio, starts non-decreasing, each word
        ending at or before the next one's start. Empty text: (empty audio, [])."""
        raise NotAvailableError(
            f"the {self.name!r} TTS gives no word timings; use one that does: {', '.join(WORD_TIMED_TTS)}"
        )
