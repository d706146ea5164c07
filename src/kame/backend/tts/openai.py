"""OpenAI-compatible speech synthesis (``POST {base_url}/audio/speech``) over aiohttp: OpenAI's
tts-1 / gpt-4o-mini-tts, or any server with the same endpoint (e.g. openedai-speech, Kokoro-FastAPI).

    tts = OpenAITTS("tts-1", voice="alloy")            # or registry.create("tts", "openai:tts-1:alloy")
    async for pcm in tts.synthesize("Hello there."):    # float32 24 kHz chunks as they arrive
        ...
    await tts.aclose()

Request JSON: {"model", "input", "voice", "response_format"} (+ "speed" if set).
``response_format="pcm"`` (default): the body is raw 16-bit little-endian mono PCM at 24 kHz and is
streamed chunk by chunk as it arrives (``pcm_rate`` if a server uses another rate: resampled
seamlessly across chunks, ``kame.audio.ChunkResampler``); at most ``MAX_PCM_SECONDS`` of audio.
``response_format="wav"``: the whole body (at most ``MAX_WAV_BODY`` bytes) is read, decoded and
resampled to 24 kHz.
Base URL and key come from the environment unless given: ``OPENAI_TTS_BASE_URL``, else
``OPENAI_BASE_URL``, else the OpenAI API; ``OPENAI_TTS_API_KEY``, else ``OPENAI_API_KEY``
(optional for local servers), so a local TTS server can sit beside a hosted LLM
(kame.backend.openai_http).

Errors raise kame.errors.BackendError: HTTP status >= 400 (with the server's message), connection
failures, timeouts, a body over its cap, an undecodable wav, a JSON/text body where audio was
expected, an audio file (wav, mp3, ...) where raw pcm was asked, NaN samples, and an empty response. Bad options
(``pcm_rate``, ``speed``, timeouts, an empty voice) are ConfigErrors naming them. Cancelling the consumer closes the connection.
A spec sets options after a ';': ``openai:tts-1:nova;speed=1.2,response_format=wav``
(``SPEC_OPTIONS``; others, and bad values, are a ConfigError naming the spec at the config check:
kame.backend.tts.spec.check_openai). Timeouts given so (``stall_timeouts``)
also hold for the cascade's own stall timer, which waits at least that long
(kame.backend.policy.stall_limits); unset, that timer (cascade.first_timeout / chunk_timeout)
decides: the adapter's own 15 s / 10 s are raised to it when it is longer (``follow_watchdog``).
"""

from __future__ import annotations

import asyncio
import io
import os
from typing import AsyncIterator, Awaitable, Callable

import aiohttp
import numpy as np

from ...audio import SAMPLE_RATE, ChunkResampler, resample
from ...errors import BackendError, ConfigError
from ...registry import spec_kwargs
from ..openai_http import MiB, OpenAIHTTP, content_type, read_excerpt, within
from ..options import number
from .base import TTS
from .spec import OPENAI_EXAMPLE, OPENAI_OPTIONS, check_format, openai_rules


# A server that ignores response_format "pcm" sends an audio file: known by its first bytes
# (signatures no raw speech starts with) or by its Content-Type.
FILE_MAGIC = {b"RIFF": "wav", b"ID3": "mp3", b"OggS": "ogg", b"fLaC": "flac"}
FILE_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/mpeg", "audio/mp3", "audio/aac", "audio/ogg",
              "audio/opus", "audio/flac", "audio/webm")
# Caps on response bodies, so that a server that never ends its response cannot run kame out of
# memory (wav, held whole) or stream forever (pcm).
# wav: read whole, then decoded. 24 kHz 16-bit mono is 48 kB/s, so 64 MiB is 23 min; OpenAI
# takes at most 4096 characters of input (~5 min of speech at speed 1).
MAX_WAV_BODY = 64 * MiB
# pcm: passed on chunk by chunk, never held whole, so the cap is generous: one reply of an hour
# (173 MB at 24 kHz) is a runaway server, not speech.
MAX_PCM_SECONDS = 3600
# the constructor options a spec may set after ';' (values are text; the config check and the
# constructor check them: kame.backend.tts.spec.check_openai)
SPEC_OPTIONS = OPENAI_OPTIONS
DEFAULT_FIRST_CHUNK_TIMEOUT = 15.0  # s, when not given
DEFAULT_CHUNK_TIMEOUT = 10.0


class OpenAITTS(OpenAIHTTP, TTS):
    name = "openai"
    what = "TTS"
    service = "TTS"  # its own server and key if OPENAI_TTS_BASE_URL / OPENAI_TTS_API_KEY say so
    first_timeout_attr = "first_chunk_timeout"  # (follow_watchdog)

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
        first_chunk_timeout: float | None = None,  # request sent -> first audio bytes; None: 15 s or the watchdog's
        chunk_timeout: float | None = None,  # between two body chunks; None: 10 s or the watchdog's
    ) -> None:
        if not model:
            raise ConfigError("tts spec 'openai' needs a model: openai:MODEL[:VOICE] (e.g. openai:tts-1:alloy)")
        rules = openai_rules()  # (the config check's: kame.backend.tts.spec)
        check_format("openai TTS", response_format)
        if not isinstance(voice, str) or not voice.strip():
            raise ConfigError(f"openai TTS voice must be a voice name (e.g. alloy), got {voice!r}")
        self.model, self.voice, self.response_format = model, voice, response_format
        self.speed = None if speed is None else number("openai TTS", "speed", speed, **rules["speed"])
        self.pcm_rate = number("openai TTS", "pcm_rate", pcm_rate, **rules["pcm_rate"])
        own = tuple(None if v is None else number("openai TTS", k, v, **rules[k])
                    for k, v in (("first_chunk_timeout", first_chunk_timeout), ("chunk_timeout", chunk_timeout)))
        # the timeouts given (a spec's ;first_chunk_timeout=30): the cascade's watchdog waits at
        # least that long (kame.backend.policy.stall_limits)
        self.stall_timeouts: tuple[float | None, float | None] = own  # type: ignore[assignment]
        self.first_chunk_timeout = DEFAULT_FIRST_CHUNK_TIMEOUT if own[0] is None else own[0]
        self.chunk_timeout = DEFAULT_CHUNK_TIMEOUT if own[1] is None else own[1]
        self._init_http(base_url, api_key, connect_timeout)  # (after the values: those errors first)
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
                raise await self._http_error(self.url, resp)
            ctype = content_type(resp)
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

    def _reader(self, resp: aiohttp.ClientResponse) -> Callable[[], Awaitable[bytes]]:
        """Reads the body's next chunk as it arrives (b"" at the end): the first within
        ``first_chunk_timeout``, then each within ``chunk_timeout``."""
        first = True

        async def read() -> bytes:
            nonlocal first
            timeout = self.first_chunk_timeout if first else self.chunk_timeout
            first = False
            try:
                return await within(resp.content.readany(), timeout)
            except asyncio.TimeoutError as exc:
                raise BackendError(f"TTS {self.url}: audio stream stalled ({timeout:g} s)") from exc
            except aiohttp.ClientError as exc:
                raise BackendError(f"TTS {self.url}: audio stream broken: {exc}") from exc

        return read

    async def _stream_pcm(self, resp: aiohttp.ClientResponse) -> AsyncIterator[np.ndarray]:
        carry = b""  # an odd trailing byte waits for its partner
        total = 0
        rs = ChunkResampler(self.pcm_rate, SAMPLE_RATE)
        limit = MAX_PCM_SECONDS * self.pcm_rate * 2
        kind = f"pcm stream ({MAX_PCM_SECONDS:g} s of 16-bit audio at {self.pcm_rate} Hz)"
        async for raw in self._body_chunks(self.url, resp, limit, kind, self._reader(resp)):
            if total == 0 and not carry:
                ctype = content_type(resp)
                file_kind = next((k for m, k in FILE_MAGIC.items() if raw.startswith(m)), None)
                if file_kind is not None or ctype in FILE_TYPES:  # played as raw samples it would be noise
                    raise BackendError(f"TTS {self.url}: asked for raw pcm, the server sent an audio file "
                                       f"({file_kind or ctype}; Content-Type {ctype or 'none'}): "
                                       "use response_format='wav' or a server that streams pcm")
            data = carry + raw
            n = len(data) // 2 * 2
            data, carry = data[:n], data[n:]
            if n:
                total += n
                out = rs(np.frombuffer(data, "<i2").astype(np.float32) / 32768.0)
                if out.size:
                    yield out
        if total == 0:
            raise BackendError(f"TTS {self.url}: empty audio response")
        out = rs(np.zeros(0, np.float32), last=True)  # the resampler's look-ahead tail
        if out.size:
            yield out

    async def _read_wav(self, resp: aiohttp.ClientResponse) -> np.ndarray:
        import soundfile as sf

        data = await self._read_body(self.url, resp, MAX_WAV_BODY, "wav body", self._reader(resp))
        if not data:
            raise BackendError(f"TTS {self.url}: empty audio response")
        try:
            pcm, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises its own error types
            raise BackendError(f"TTS {self.url}: cannot decode the wav response ({len(data)} bytes): {exc}") from exc
        if pcm.shape[0] == 0:
            raise BackendError(f"TTS {self.url}: the wav response holds no audio ({len(data)} bytes)")
        if not np.all(np.isfinite(pcm)):
            raise BackendError(f"TTS {self.url}: the wav response holds NaN or infinite samples")
        return resample(pcm.mean(axis=1), int(rate), SAMPLE_RATE)


def create(arg: str | None = None, **kwargs) -> OpenAITTS:
    """Registry factory: ``openai:MODEL[:VOICE][;NAME=VALUE,...]`` (NAME in SPEC_OPTIONS; kwargs:
    the constructor's: response_format, base_url, api_key, ...)."""
    head, kwargs = spec_kwargs("tts", "openai", arg, kwargs, SPEC_OPTIONS, OPENAI_EXAMPLE)
    model, _, voice = (head or os.environ.get("OPENAI_TTS_MODEL", "")).partition(":")
    if voice.strip():
        kwargs.setdefault("voice", voice.strip())
    return OpenAITTS(model.strip(), **kwargs)
