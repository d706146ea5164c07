"""The OpenAI-compatible speech adapter against a real aiohttp server on 127.0.0.1."""

import asyncio
import io

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web

from kame import registry
from kame.backend.tts.openai import OpenAITTS
from kame.errors import BackendError, ConfigError

from ..local_http import serving

TONE = (0.25 * np.sin(np.arange(4800) * 0.07)).astype(np.float32)  # 0.2 s at 24 kHz


def _pcm_bytes(x):
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture
async def server():
    seen = []
    release = asyncio.Event()

    async def speech(request):
        body = await request.json()
        seen.append((body, request.headers.get("Authorization")))
        voice = body.get("voice")
        if voice == "unauthorized":
            return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
        if voice == "json200":
            return web.json_response({"detail": "not audio"})
        if voice == "empty":
            return web.Response(body=b"", content_type="audio/pcm")
        if voice == "badwav":
            return web.Response(body=b"RIFFnotawav", content_type="audio/wav")
        if voice == "hang":
            await asyncio.wait_for(release.wait(), 5)
        if body["response_format"] == "wav":
            buf = io.BytesIO()
            sf.write(buf, TONE[::2], 12000, format="WAV", subtype="PCM_16")  # another rate: resampled
            return web.Response(body=buf.getvalue(), content_type="audio/wav")
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await resp.prepare(request)
        data = _pcm_bytes(TONE)
        for i in range(0, len(data), 1001):  # odd-sized chunks split samples
            await resp.write(data[i:i + 1001])
            await asyncio.sleep(0.001)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/audio/speech", speech)
    async with serving(app) as (url, _):
        yield url + "/v1", seen
        release.set()


async def _collect(tts, text="Hello there."):
    return [c async for c in tts.synthesize(text)]


async def test_streams_pcm(server):
    url, seen = server
    tts = OpenAITTS("tts-1", voice="alloy", base_url=url, api_key="sk-test")
    chunks = await _collect(tts)
    await tts.aclose()
    assert len(chunks) > 1  # streamed, not one blob
    pcm = np.concatenate(chunks)
    assert pcm.dtype == np.float32 and pcm.shape == TONE.shape
    assert np.abs(pcm - TONE).max() < 1e-3
    body, auth = seen[0]
    assert body == {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "pcm"}
    assert auth == "Bearer sk-test"


async def test_wav_is_decoded_and_resampled(server):
    url, _ = server
    tts = OpenAITTS("tts-1", base_url=url, response_format="wav")
    (pcm,) = await _collect(tts)
    await tts.aclose()
    assert pcm.shape[0] == TONE.shape[0] and np.abs(pcm).max() > 0.2


async def test_registry_spec_and_env(server, monkeypatch):
    url, seen = server
    monkeypatch.setenv("OPENAI_TTS_BASE_URL", url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tts = registry.create("tts", "openai:gpt-4o-mini-tts:nova")
    assert (tts.model, tts.voice, tts.base_url) == ("gpt-4o-mini-tts", "nova", url)
    assert np.concatenate(await _collect(tts)).shape == TONE.shape
    await tts.aclose()
    assert seen[-1][1] is None  # no key -> no Authorization header
    with pytest.raises(ConfigError):
        registry.create("tts", "openai")


@pytest.mark.parametrize("voice,fmt,match", [
    ("unauthorized", "pcm", "HTTP 401: Incorrect API key"),
    ("json200", "pcm", "expected audio, got application/json"),
    ("empty", "pcm", "empty audio"),
    ("badwav", "wav", "cannot decode"),
])
async def test_errors(server, voice, fmt, match):
    url, _ = server
    tts = OpenAITTS("tts-1", voice=voice, base_url=url, response_format=fmt)
    with pytest.raises(BackendError, match=match):
        await _collect(tts)
    await tts.aclose()


async def test_timeout_and_dead_server(server):
    url, _ = server
    tts = OpenAITTS("tts-1", voice="hang", base_url=url, first_chunk_timeout=0.2)
    with pytest.raises(BackendError, match="no response|stalled"):
        await _collect(tts)
    await tts.aclose()
    dead = OpenAITTS("tts-1", base_url="http://127.0.0.1:9/v1", connect_timeout=1.0)
    with pytest.raises(BackendError, match="cannot connect"):
        await _collect(dead)
    await dead.aclose()
