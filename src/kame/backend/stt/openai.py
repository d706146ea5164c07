"""OpenAI-compatible transcription endpoint as a streaming STT ("openai:MODEL").

The utterance (segmented by kame's VAD) is POSTed as a 16 kHz wav to
``{base_url}/audio/transcriptions`` (multipart: file, model, language, response_format
verbose_json with word timestamps): the growing buffer every ``request_interval`` s of new
audio for partials (one request in flight at most), the whole utterance at end of speech for
the final. Works with OpenAI
(whisper-1 gives word times; gpt-4o-*-transcribe: pass ``word_timestamps=False``) and with
local servers exposing the same route (faster-whisper-server / speaches, vLLM, LocalAI ...).

    stt = OpenAITranscriptionSTT("whisper-1")   # base URL/key: args or OPENAI_BASE_URL/OPENAI_API_KEY
    async for tr in stt.stream(frames): ...

Failures: a failed partial request is logged and skipped (the next one retries); a failed
or timed-out final ends ``stream`` with BackendError, or, with ``on_error=callback``, is
reported to the callback while the stream goes on (the utterance is committed with its last
partial, if any).
HTTP runs on the stream's event loop (aiohttp); the worker thread only waits for it.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import Future
import logging
import os
import wave

import numpy as np

from ...errors import BackendError, ConfigError
from ..types import Word
from .streaming import Recognizer, SegmentedSTT

log = logging.getLogger(__name__)


def wav_bytes(pcm16k: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(pcm16k, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def parse_words(body: dict, duration: float) -> list[Word]:
    """Words from a transcription response; without word times, spread them evenly."""
    if body.get("words"):
        return [Word(str(w["word"]).strip(), float(w["start"]), float(w["end"]))
                for w in body["words"] if str(w.get("word", "")).strip()]
    texts = str(body.get("text", "")).split()
    step = duration / max(1, len(texts))
    return [Word(t, i * step, (i + 1) * step) for i, t in enumerate(texts)]


class OpenAIRecognizer(Recognizer):
    """Partials: at most one request in flight (non-blocking: the worker keeps running the
    VAD), a new one once it returned and ``request_interval`` s of new audio came.
    Final: the silence-trimmed utterance, blocking, with the timeout."""

    def __init__(self, stt: "OpenAITranscriptionSTT") -> None:
        self.stt = stt
        self.chunks: list[np.ndarray] = []
        self.n = 0
        self.pending: Future | None = None
        self.pending_len = 0

    def audio(self, n: int | None = None) -> np.ndarray:
        x = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        return x if n is None else x[:n]

    def accept(self, pcm16k: np.ndarray) -> None:
        self.chunks.append(pcm16k)
        self.n += pcm16k.shape[0]

    def partial(self) -> list[Word] | None:
        words = None
        if self.pending is not None and self.pending.done():
            fut, self.pending = self.pending, None
            try:
                words = self.stt.result(fut)
            except BackendError as exc:
                log.warning("partial transcription failed (skipped): %s", exc)
        if self.pending is None and self.n - self.pending_len >= self.stt.request_interval * 16000:
            self.pending_len = self.n
            self.pending = self.stt.submit(self.audio())
        return words

    def final(self, speech_end: float | None = None) -> list[Word]:
        if self.pending is not None:
            self.pending.cancel()
        n = self.n if speech_end is None else int((speech_end + 0.25) * 16000)
        return self.stt.result(self.stt.submit(self.audio(n)))


class OpenAITranscriptionSTT(SegmentedSTT):
    name = "openai"
    partial_interval = 0.08  # poll every frame; requests every ``request_interval`` s of audio

    def __init__(self, model: str | None = None, *, base_url: str | None = None, api_key: str | None = None,
                 language: str | None = "en", word_timestamps: bool = True, timeout: float = 15.0,
                 request_interval: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.request_interval = float(request_interval)  # s of new audio between partial requests
        self.model = model or "whisper-1"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"openai STT base URL must start with http:// or https://, got {self.base_url!r}")
        self.language, self.word_timestamps, self.timeout = language, word_timestamps, float(timeout)
        self._session = None  # aiohttp.ClientSession shared by this STT's open streams
        self._users = 0

    def new_recognizer(self) -> Recognizer:
        return OpenAIRecognizer(self)

    async def _open(self) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._users += 1

    async def _close(self) -> None:
        self._users -= 1
        if self._users == 0 and self._session is not None:
            await self._session.close()
            self._session = None

    def submit(self, pcm16k: np.ndarray) -> Future:
        """From the worker thread: start a request on the event loop."""
        return asyncio.run_coroutine_threadsafe(self._post(pcm16k), self._loop)

    def result(self, fut: Future) -> list[Word]:
        """From the worker thread: wait for a request (BackendError on any failure)."""
        try:
            return fut.result(self.timeout + 1.0)
        except BackendError:
            raise
        except TimeoutError as exc:
            fut.cancel()
            raise BackendError(f"transcription at {self.base_url} timed out after {self.timeout:.1f} s") from exc
        except Exception as exc:
            raise BackendError(f"transcription at {self.base_url} failed: {type(exc).__name__}: {exc}") from exc

    async def _post(self, pcm16k: np.ndarray) -> list[Word]:
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("file", wav_bytes(pcm16k), filename="utterance.wav", content_type="audio/wav")
        form.add_field("model", self.model)
        if self.language:
            form.add_field("language", self.language)
        form.add_field("response_format", "verbose_json" if self.word_timestamps else "json")
        if self.word_timestamps:
            form.add_field("timestamp_granularities[]", "word")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/audio/transcriptions"
        try:
            async with self._session.post(url, data=form, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:300]
                    raise BackendError(f"transcription at {url} returned HTTP {resp.status}: {text}")
                body = await resp.json(content_type=None)
        except asyncio.TimeoutError as exc:
            raise BackendError(f"transcription at {url} timed out after {self.timeout:.1f} s") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"transcription at {url} failed: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            raise BackendError(f"transcription at {url} returned invalid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise BackendError(f"transcription at {url} returned {type(body).__name__}, expected a JSON object")
        return parse_words(body, pcm16k.shape[0] / 16000)


def create(arg: str | None = None, **kwargs) -> OpenAITranscriptionSTT:
    return OpenAITranscriptionSTT(arg, **kwargs)
