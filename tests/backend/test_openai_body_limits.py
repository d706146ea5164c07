"""The caps on response bodies of the OpenAI-compatible STT and TTS adapters: a body announced
over the cap is refused before it is read, an endless one is cut at the cap (the client hangs
up, so the server stops sending), with a BackendError naming the adapter, the URL and the limit."""

import asyncio

import numpy as np
import pytest
from aiohttp import web

from kame.backend.stt import openai as stt_openai
from kame.backend.stt.openai import OpenAITranscriptionSTT
from kame.backend.tts import openai as tts_openai
from kame.backend.tts.openai import OpenAITTS
from kame.errors import BackendError

from ..local_http import serving
from .test_openai_robustness import _speak

CHUNK = 16 * 1024
ENDLESS = 256 << 20  # what the server would send if nobody stopped it


class Server:
    """Answers every POST with ``body_len`` bytes of ``fill`` then ``tail`` (streamed in CHUNK
    pieces, chunked encoding unless ``content_length`` is announced) and counts what it managed
    to send."""

    def __init__(self):
        self.body_len, self.content_length, self.fill, self.ctype = ENDLESS, None, b"\0", "application/json"
        self.tail = b""
        self.sent = 0
        self.done = asyncio.Event()

    async def handle(self, request):
        await request.read()
        headers = {"Content-Type": self.ctype}
        if self.content_length is not None:
            headers["Content-Length"] = str(self.content_length)
        resp = web.StreamResponse(headers=headers)
        try:
            await resp.prepare(request)
            while self.sent < self.body_len:
                n = min(CHUNK, self.body_len - self.sent)
                await resp.write(self.fill * n)
                self.sent += n
            await resp.write(self.tail)
            if self.content_length is None or self.sent >= self.content_length:
                await resp.write_eof()
            else:  # announced more than it sends: hold the connection open
                await asyncio.sleep(30)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client hung up
        finally:
            self.done.set()
        return resp


@pytest.fixture
async def server():
    srv = Server()
    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", srv.handle)
    async with serving(app, shutdown_timeout=0.5) as (url, _):
        srv.url = url + "/v1"
        yield srv


async def transcribe(url):
    stt = OpenAITranscriptionSTT("whisper-1", base_url=url, timeout=10)
    try:
        return await stt._post(np.zeros(1600, np.float32))
    finally:
        await stt.aclose()


async def stopped_early(server, limit):
    """The server saw the client hang up after sending little more than ``limit`` (what the
    loopback socket buffers hold, a few MB), far from the endless body."""
    await asyncio.wait_for(server.done.wait(), 10)
    assert limit < server.sent < limit + (24 << 20) < ENDLESS, server.sent


async def test_stt_endless_json_body_is_cut_at_the_cap(server, monkeypatch):
    monkeypatch.setattr(stt_openai, "MAX_JSON_BODY", 256 * 1024)
    server.fill = b" "  # whitespace: valid JSON so far, so nothing but the cap can stop it
    with pytest.raises(BackendError, match=r"^STT http://127\.0\.0\.1:\d+/v1/audio/transcriptions: the JSON "
                       r"transcription body is over the openai STT adapter's limit of 0\.25 MiB \(262144 "
                       r"bytes\): stopped reading after \d+ bytes"):
        await asyncio.wait_for(transcribe(server.url), 20)
    await stopped_early(server, 256 * 1024)


async def test_stt_content_length_over_the_cap_is_refused_unread(server):
    """Content-Length over MAX_JSON_BODY: refused at once, though only a few bytes come (had the
    client waited for the announced body it would time out instead)."""
    server.body_len, server.content_length = 10, stt_openai.MAX_JSON_BODY + 1
    with pytest.raises(BackendError, match=r"/v1/audio/transcriptions: the JSON transcription body is over the "
                       r"openai STT adapter's limit of 8 MiB \(8388608 bytes\): its Content-Length is 8388609 "
                       r"bytes; not read"):
        await asyncio.wait_for(transcribe(server.url), 5)


async def test_stt_body_at_the_cap_is_read(server, monkeypatch):
    monkeypatch.setattr(stt_openai, "MAX_JSON_BODY", 64 * 1024)
    server.tail = b'{"text": "hi"}'
    server.fill, server.body_len = b" ", 64 * 1024 - len(server.tail)  # blanks, then the JSON: exactly the cap
    assert [w.text for w in await transcribe(server.url)] == ["hi"]


async def test_tts_endless_wav_body_is_cut_at_the_cap(server, monkeypatch):
    monkeypatch.setattr(tts_openai, "MAX_WAV_BODY", 512 * 1024)
    server.ctype = "audio/wav"
    with pytest.raises(BackendError, match=r"^TTS http://127\.0\.0\.1:\d+/v1/audio/speech: the wav body is over "
                       r"the openai TTS adapter's limit of 0\.5 MiB \(524288 bytes\): stopped reading after"):
        await asyncio.wait_for(_speak(server.url, response_format="wav"), 20)
    await stopped_early(server, 512 * 1024)


async def test_tts_wav_content_length_over_the_cap_is_refused_unread(server):
    server.ctype = "audio/wav"
    server.body_len, server.content_length = 10, tts_openai.MAX_WAV_BODY + 1
    with pytest.raises(BackendError, match=r"/v1/audio/speech: the wav body is over the openai TTS adapter's "
                       r"limit of 64 MiB \(67108864 bytes\): its Content-Length is 67108865 bytes; not read"):
        await asyncio.wait_for(_speak(server.url, response_format="wav"), 5)


async def test_tts_pcm_stream_is_cut_after_max_pcm_seconds(server, monkeypatch):
    """Streamed pcm is passed on as it comes, but not past MAX_PCM_SECONDS of audio: cut there."""
    monkeypatch.setattr(tts_openai, "MAX_PCM_SECONDS", 2)
    server.ctype = "audio/pcm"
    got = []
    with pytest.raises(BackendError, match=r"/v1/audio/speech: the pcm stream \(2 s of 16-bit audio at 24000 Hz\) "
                       r"is over the openai TTS adapter's limit of 0\.09155 MiB \(96000 bytes\): stopped reading"):
        tts = OpenAITTS("tts-1", base_url=server.url, first_chunk_timeout=10, chunk_timeout=10)
        try:
            async for c in tts.synthesize("Hello there."):
                got.append(c)
        finally:
            await tts.aclose()
    assert sum(map(len, got)) <= 2 * 24000  # nothing past the cap was passed on
    await stopped_early(server, 96000)


async def test_tts_pcm_stream_within_max_pcm_seconds_is_whole(server, monkeypatch):
    monkeypatch.setattr(tts_openai, "MAX_PCM_SECONDS", 2)
    server.ctype, server.body_len = "audio/pcm", 96000  # exactly 2 s
    chunks = await _speak(server.url)
    assert sum(map(len, chunks)) == 48000
