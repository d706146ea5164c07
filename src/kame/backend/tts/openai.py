"""OpenAI-compatible speech synthesis (``POST {base_url}/audio/speech``) over aiohttp: OpenAI's
tts-1 / gpt-4o-mini-tts, or any server with the same endpoint (e.g. openedai-speech, Kokoro-FastAPI).

    tts = OpenAITTS("tts-1", voice="alloy")            # or registry.create("tts", "openai:tts-1:alloy")
    async for pcm in tts.synthesize("Hello there."):    # float32 24 kHz chunks as they arrive
        ...
    await tts.aclose()

Request JSON: {"model", "input", "voice", "response_format"} (+ "speed" if set).
``response_format="pcm"`` (default): the body is raw 16-bit little-endian mono PCM at 24 kHz and is
streamed chunk by chunk as it arrives (``pcm_rate`` if a server uses another rate).
``response_format="wav"``: the whole body is read, decoded and resampled to 24 kHz.
Base URL and key come from the environment unless given: ``OPENAI_TTS_BASE_URL``, else
``OPENAI_BASE_URL``, else the OpenAI API; ``OPENAI_API_KEY`` (optional for local servers).

Errors raise kame.errors.BackendError: HTTP status >= 400 (with the server's message), connection
failures, timeouts, an undecodable wav, a JSON/text body where audio was expected, and an empty
response. Cancelling the consumer closes the connection.
"""

from __future__ import annotations

import asyncio
import io
import os
from typing import AsyncIterator

import aiohttp
import numpy as np

from ...audio import SAMPLE_RATE, resample
from ...errors import BackendError, ConfigError
from ..openai_http import OpenAIHTTP, read_excerpt, within
from .base import TTS


class OpenAITTS(OpenAIHTTP, TTS):
    name = "openai"
    what = "TTS"

    def __init__(
        self,
        model: str,
        *,
        voice: str = "alloy",
        response_format: str = "pcm",  # "pcm" (streamed) | "wav"
        speed: float | None = None,
        pcm_rate: int = 24000,  # sample rate of "pcm" bodies (OpenAI: 24 kHz)
        base_url: str | None = None,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        first_chunk_timeout: float = 15.0,  # request sent -> first audio bytes
        chunk_timeout: float = 10.0,  # between two body chunks
    ) -> None:
        if not model:
            raise ConfigError("tts spec 'openai' needs a model: openai:MODEL[:VOICE] (e.g. openai:tts-1:alloy)")
        if response_format not in ("pcm", "wav"):
            raise ConfigError(f"openai TTS response_format must be 'pcm' or 'wav', got {response_format!r}")
        self.model, self.voice, self.response_format = model, voice, response_format
        self.speed, self.pcm_rate = speed, int(pcm_rate)
        self._init_http(base_url, api_key, connect_timeout, env=("OPENAI_TTS_BASE_URL", "OPENAI_BASE_URL"))
        self.first_chunk_timeout, self.chunk_timeout = first_chunk_timeout, chunk_timeout
        self.sample_rate = SAMPLE_RATE

    @property
    def url(self) -> str:
        return f"{self.base_url}/audio/speech"

    async def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        if not text.strip():
            return
        body: dict = {"model": self.model, "input": text, "voice": self.voice, "response_format": self.response_format}
        if self.speed is not None:
            body["speed"] = float(self.speed)
        resp = await self._http_post(self.url, self.first_chunk_timeout, json=body)
        ok = False
        try:
            if resp.status >= 400:
                raise BackendError(f"TTS {self.url}: HTTP {resp.status}: {await read_excerpt(resp)}")
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype.startswith("application/json") or ctype.startswith("text/"):
                raise BackendError(f"TTS {self.url}: expected audio, got {ctype}: {await read_excerpt(resp)}")
            if self.response_format == "wav":
                yield await self._read_wav(resp)
            else:
                async for pcm in self._stream_pcm(resp):
                    yield pcm
            ok = True
        finally:
            if ok:
                resp.release()
            else:  # error, cancellation or early close: drop the connection so the server stops
                resp.close()

    async def _read_chunk(self, resp: aiohttp.ClientResponse, first: bool) -> bytes:
        timeout = self.first_chunk_timeout if first else self.chunk_timeout
        try:
            return await within(resp.content.readany(), timeout)
        except asyncio.TimeoutError as exc:
            raise BackendError(f"TTS {self.url}: audio stream stalled ({timeout:g} s)") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"TTS {self.url}: audio stream broken: {exc}") from exc

    async def _stream_pcm(self, resp: aiohttp.ClientResponse) -> AsyncIterator[np.ndarray]:
        carry = b""  # an odd trailing byte waits for its partner
        total = 0
        while True:
            raw = await self._read_chunk(resp, first=total == 0 and not carry)
            if not raw:
                break
            data = carry + raw
            n = len(data) // 2 * 2
            data, carry = data[:n], data[n:]
            if n:
                total += n
                pcm = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
                yield resample(pcm, self.pcm_rate, SAMPLE_RATE)
        if total == 0:
            raise BackendError(f"TTS {self.url}: empty audio response")

    async def _read_wav(self, resp: aiohttp.ClientResponse) -> np.ndarray:
        import soundfile as sf

        parts, first = [], True
        while True:
            raw = await self._read_chunk(resp, first)
            first = False
            if not raw:
                break
            parts.append(raw)
        data = b"".join(parts)
        if not data:
            raise BackendError(f"TTS {self.url}: empty audio response")
        try:
            pcm, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises its own error types
            raise BackendError(f"TTS {self.url}: cannot decode the wav response ({len(data)} bytes): {exc}") from exc
        return resample(pcm.mean(axis=1), int(rate), SAMPLE_RATE)


def create(arg: str | None = None, **kwargs) -> OpenAITTS:
    """Registry factory: ``openai:MODEL[:VOICE]`` (kwargs: response_format, base_url, api_key, ...)."""
    model, _, voice = (arg or os.environ.get("OPENAI_TTS_MODEL", "")).partition(":")
    if voice:
        kwargs.setdefault("voice", voice)
    return OpenAITTS(model, **kwargs)
