"""The OpenAI-compatible transcription adapter against a real aiohttp server on 127.0.0.1."""

import asyncio
import io
import wave

import numpy as np
import pytest
from aiohttp import web

from kame import registry
from kame.backend.types import AudioFrame
from kame.errors import BackendError
from kame.runtime.clock import FakeClock

from ..local_http import serving

pytest.importorskip("onnxruntime")
T0 = 50.0


class FakeServer:
    """POST /v1/audio/transcriptions: answers "hello world" timed on the clip's length."""

    def __init__(self):
        self.mode = "ok"  # "ok" | "error" | "slow" | "garbage"
        self.requests = []
        self.fail_next = 0  # answer this many requests with HTTP 500 first

    async def handle(self, request):
        form = await request.post()
        with wave.open(io.BytesIO(form["file"].file.read())) as w:
            rate, n = w.getframerate(), w.getnframes()
        self.requests.append(dict(model=form["model"], auth=request.headers.get("Authorization"),
                                  rate=rate, dur=n / rate, fmt=form["response_format"], mode=self.mode))
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="transient failure")
        if self.mode == "error":
            return web.Response(status=500, text="server on fire")
        if self.mode == "slow":
            await asyncio.sleep(1.0)
        if self.mode == "garbage":
            return web.Response(text="<html>not json</html>")
        dur = n / rate
        return web.json_response({"text": "hello world", "words": [
            {"word": "hello", "start": 0.3, "end": 0.3 + dur / 4},
            {"word": "world", "start": 0.3 + dur / 4, "end": max(0.4 + dur / 4, dur - 0.3)}]})


@pytest.fixture
async def server():
    srv = FakeServer()
    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", srv.handle)
    async with serving(app) as (url, _):
        srv.base_url = url + "/v1"
        yield srv


@pytest.fixture(scope="module")
def speech():
    """Two espeak utterances separated by 1 s of silence; their (start, end) on the clock."""
    from kame.backend.tts.espeak import EspeakTTS

    tts = EspeakTTS("en-us")
    a, b = tts.synth("Good morning to you all."), tts.synth("What time is it now?")
    sil = np.zeros(24000, np.float32)
    x = np.concatenate([sil, a, sil, b, sil, np.zeros(-(3 * 24000 + len(a) + len(b)) % 1920, np.float32)])
    spans = [(T0 + 1, T0 + 1 + len(a) / 24000), (T0 + 2 + len(a) / 24000, T0 + 2 + (len(a) + len(b)) / 24000)]
    return x, spans


async def feed(pcm, clock):
    for i in range(0, len(pcm), 1920):
        yield AudioFrame(pcm[i:i + 1920], clock.now())
        clock.advance(0.08)
        await asyncio.sleep(0.005)


def make(server, clock, **kw):
    return registry.create("stt", "openai:test-model", base_url=server.base_url, api_key="sk-test",
                           clock=clock, max_lag=float("inf"), **kw)


async def test_openai_stt_transcribes_utterances(server, speech):
    pcm, spans = speech
    clock = FakeClock(T0)
    trs = [tr async for tr in make(server, clock, request_interval=0.8).stream(feed(pcm, clock))]
    finals = [tr for tr in trs if tr.final]
    assert [f.text for f in finals] == ["hello world", "hello world"]
    assert any(not tr.final for tr in trs[: trs.index(finals[0])])  # partials before the final
    for f, (s, e) in zip(finals, spans):
        assert s - 0.4 < f.words[0].start < f.words[-1].end < e + 0.4  # mapped onto the clock
    r = server.requests
    assert {q["model"] for q in r} == {"test-model"} and {q["auth"] for q in r} == {"Bearer sk-test"}
    assert {q["rate"] for q in r} == {16000} and {q["fmt"] for q in r} == {"verbose_json"}
    # partial requests carry the growing utterance
    durs = [q["dur"] for q in r]
    assert durs[0] < durs[1]


async def test_openai_stt_error_ends_stream(server, speech):
    pcm, _ = speech
    clock = FakeClock(T0)
    server.mode = "error"
    with pytest.raises(BackendError, match="HTTP 500"):
        async for _ in make(server, clock).stream(feed(pcm, clock)):
            pass


async def test_openai_stt_session_continues_with_on_error(server, speech):
    pcm, spans = speech
    clock = FakeClock(T0)
    errors = []
    stt = make(server, clock, on_error=errors.append, request_interval=100)  # finals only
    server.mode = "garbage"  # both utterances fail (bad JSON), reported, the stream ends normally
    trs = [tr async for tr in stt.stream(feed(pcm, clock))]
    assert trs == [] and len(errors) == 2 and all("invalid JSON" in str(e) for e in errors)

    # the same STT object keeps working; here only the first utterance's request fails
    server.mode, server.requests, server.fail_next = "ok", [], 1
    errors.clear()
    clock2 = FakeClock(T0)
    results = [tr async for tr in stt.stream(feed(pcm, clock2))]
    assert len(errors) == 1 and "HTTP 500" in str(errors[0])
    assert [tr.text for tr in results if tr.final] == ["hello world"]  # the second utterance
    assert len(server.requests) == 2


async def test_openai_stt_dead_server(speech):
    from .test_openai_http import dead_url

    pcm, _ = speech
    clock = FakeClock(T0)
    stt = registry.create("stt", "openai:m", base_url=await dead_url(), connect_timeout=1.0, clock=clock,
                          max_lag=float("inf"), request_interval=100)
    with pytest.raises(BackendError, match=r"^STT .*/audio/transcriptions: cannot connect .*is the server running"):
        async for _ in stt.stream(feed(pcm, clock)):
            pass


async def test_openai_stt_slow_server_times_out(server, speech):
    pcm, _ = speech
    clock = FakeClock(T0)
    server.mode = "slow"
    errors = []
    stt = make(server, clock, timeout=0.3, on_error=errors.append, request_interval=100)
    trs = [tr async for tr in stt.stream(feed(pcm, clock))]
    assert trs == [] and len(errors) == 2 and all("timed out" in str(e) for e in errors)


def test_the_stt_can_have_its_own_server(monkeypatch):
    """OPENAI_STT_BASE_URL points the STT at another server than the LLM's OPENAI_BASE_URL (a
    local whisper beside a hosted LLM); without it both use OPENAI_BASE_URL."""
    from kame.backend.llm.openai import OpenAIChat
    from kame.backend.stt.openai import OpenAITranscriptionSTT

    monkeypatch.setenv("OPENAI_BASE_URL", "http://llm.example:8000/v1")
    monkeypatch.delenv("OPENAI_STT_BASE_URL", raising=False)
    assert OpenAITranscriptionSTT("whisper-1").base_url == "http://llm.example:8000/v1"
    monkeypatch.setenv("OPENAI_STT_BASE_URL", "http://127.0.0.1:9000/v1/")
    assert OpenAITranscriptionSTT("whisper-1").base_url == "http://127.0.0.1:9000/v1"
    assert OpenAIChat("m").base_url == "http://llm.example:8000/v1"
