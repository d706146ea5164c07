"""The speech synthesis interface.

    tts = registry.create("tts", "embedded")
    async for pcm in tts.synthesize("Hello there."):   # float32 mono chunks at 24 kHz
        ...

Chunks are streamed as soon as they are ready (e.g. sentence by sentence). Cancelling the
consuming task stops synthesis.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import AsyncIterator

import numpy as np


class TTS(ABC):
    name: str = "tts"
    sample_rate: int = 24000  # what synthesize() yields (implementations resample)

    @abstractmethod
    def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        """Stream float32 mono audio at ``sample_rate`` for ``text``."""
