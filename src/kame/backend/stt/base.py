"""The streaming STT interface.

    stt = registry.create("stt", "embedded")
    async for tr in stt.stream(frames):      # frames: AsyncIterable[AudioFrame] (24 kHz, 80 ms)
        ...                                   # tr: Transcript (partial or final), words timed
                                              # on the same clock as the frames' ``t``

The stream ends when ``frames`` ends (after flushing a last final). Heavy compute runs in a
worker thread, never on the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import AsyncIterable, AsyncIterator

from ..types import AudioFrame, Transcript


class STT(ABC):
    name: str = "stt"

    @abstractmethod
    def stream(self, frames: AsyncIterable[AudioFrame]) -> AsyncIterator[Transcript]:
        """Transcribe a live audio stream into partial and final transcripts."""
