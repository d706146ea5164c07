"""The OpenAI-compatible transcription adapter against a real aiohttp server on 127.0.0.1."""

import asyncio
import io
import wave

import numpy as np
import pytest
from aiohttp import web

from kame import registry
from kame.backend.types import AudioFrame
from kame.backend.stt.openai import parse_words
from kame.errors import BackendError, ConfigError
from kame.runtime.clock import FakeClock

from ..local_http import serving

pytest.importorskip("onnxruntime")
T0 = 50.0


class FakeServer:
    """POST /v1/audio/transcriptions: answers "hello world" timed on the clip's length."""

    def __init__(self):
        self.mode = "ok"  # "ok" | "error" | "slow" | "garbage" | "json_only" (as gpt-4o-transcribe)
        self.requests = []
        self.fail_next = 0  # answer this many requests with HTTP 500 first

    async def handle(self, request):
        form = await request.post()
        with wave.open(io.BytesIO(form["file"].file.read())) as w:
            rate, n = w.getframerate(), w.getnframes()
        self.requests.append(dict(model=form["model"], auth=request.headers.get("Authorization"),
                                  rate=rate, dur=n / rate, fmt=form["response_format"], mode=self.mode,
                                  gran=form.getall("timestamp_granularities[]", []), lang=form.get("language")))
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="transient failure")
        if self.mode == "error":
            return web.Response(status=500, text="server on fire")
        if self.mode == "slow":
            await asyncio.sleep(1.0)
        if self.mode == "garbage":
            return web.Response(text="<html>not json</html>")
        if self.mode == "json_only":  # OpenAI's answer for gpt-4o-transcribe
            if form["response_format"] != "json":
                return web.json_response({"error": {
                    "message": f"response_format '{form['response_format']}' is not compatible with model "
                               f"'{form['model']}'. Use 'json' or 'text' instead.",
                    "type": "invalid_request_error", "param": "response_format", "code": "unsupported_value"}},
                    status=400)
            return web.json_response({"text": "hello world"})
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


async def test_transcription_without_word_times(server, speech):
    """A gpt-4o-transcribe model is asked for "json" (it refuses verbose_json) and its text-only
    answers still make partials and finals; the words are spread over the clip, a final's up to
    the VAD's end of speech (not the 0.25 s of silence sent after it)."""
    pcm, spans = speech
    server.mode = "json_only"
    clock = FakeClock(T0)
    stt = registry.create("stt", "openai:gpt-4o-transcribe", base_url=server.base_url, api_key="sk-test",
                          clock=clock, max_lag=float("inf"), request_interval=0.8)
    assert stt.response_format == "json"
    trs = [tr async for tr in stt.stream(feed(pcm, clock))]
    finals = [tr for tr in trs if tr.final]
    assert [f.text for f in finals] == ["hello world", "hello world"]
    assert any(not tr.final for tr in trs[: trs.index(finals[0])])  # partials before the final
    assert {q["fmt"] for q in server.requests} == {"json"} and all(q["gran"] == [] for q in server.requests)
    for f, (s, e) in zip(finals, spans):
        assert s - 0.4 < f.words[0].start < f.words[0].end <= f.words[1].start < f.words[-1].end < e + 0.2


async def test_a_refused_response_format_names_the_option(server, speech):
    pcm, _ = speech
    server.mode = "json_only"
    clock = FakeClock(T0)
    stt = registry.create("stt", "openai:my-transcriber;response_format=verbose_json", base_url=server.base_url,
                          clock=clock, max_lag=float("inf"), request_interval=100)
    with pytest.raises(BackendError, match=r"HTTP 400: response_format 'verbose_json' is not compatible .*"
                       r"\(the server refuses response_format=verbose_json with word timestamps: set the openai "
                       r"STT's response_format option to json, e.g. backend.stt = \"openai:my-transcriber;"
                       r"response_format=json\""):
        async for _ in stt.stream(feed(pcm, clock)):
            pass
    assert server.requests[0]["gran"] == ["word"]


async def test_final_without_word_times_ends_at_the_end_of_speech(server):
    server.mode = "json_only"
    stt = registry.create("stt", "openai:m;response_format=json", base_url=server.base_url)
    try:
        words = await stt._post(np.zeros(16000, np.float32), speech_end=0.6)
        assert [(w.text, w.start, w.end) for w in words] == [("hello", 0.0, 0.3), ("world", 0.3, 0.6)]
        words = await stt._post(np.zeros(16000, np.float32))  # a partial: the whole clip
        assert words[-1].end == 1.0
    finally:
        await stt.aclose()


def test_spec_options():
    spec = "openai:whisper-large;response_format=json, language=de,request_interval=0.5,timeout=3"
    stt = registry.create("stt", spec, base_url="http://x/v1")
    assert (stt.model, stt.response_format, stt.language, stt.request_interval, stt.timeout) == (
        "whisper-large", "json", "de", 0.5, 3.0)
    assert registry.create("stt", "openai:whisper-1;language=", base_url="http://x/v1").language == ""  # auto-detect
    assert registry.create("stt", "openai:whisper-1", base_url="http://x/v1").response_format == "verbose_json"
    assert registry.create("stt", "openai:gpt-4o-mini-transcribe", base_url="http://x/v1").response_format == "json"


@pytest.mark.parametrize("spec,kw,msg", [
    ("openai:m;response_format=text", {}, "response_format must be one of verbose_json, json"),
    ("openai:m;format=json", {}, "unknown option 'format'; options after ';' are NAME=VALUE"),
    ("openai:m;json", {}, "'json' is not NAME=VALUE"),
    ("openai:m;language=de,language=fr", {}, "'language' given twice"),
    ("openai:m;api_key=sk-1", {}, "unknown option 'api_key'"),
    ("openai:;response_format=json", {}, "names no MODEL"),
    # (at the config check, which create() makes first: naming the spec, before the STT is made)
    ("openai:m;timeout=soon", {}, "^stt spec 'openai:m;timeout=soon': timeout must be a number > 0, got 'soon'"),
    ("openai:m;timeout=3", {"timeout": 4}, "option 'timeout' is also given as a keyword argument"),
])
def test_bad_spec_options_are_config_errors(spec, kw, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        registry.create("stt", spec, base_url="http://x/v1", **kw)


def test_segment_times_when_the_server_gives_no_word_times():
    """verbose_json from a server that ignores timestamp_granularities: the words are spread over
    their segments; segments that do not fit the text are not used (the clip then)."""
    segs = [{"start": 0.5, "end": 1.0, "text": " hello there"}, {"start": 2.0, "end": 2.5, "text": " world"}]
    words = parse_words({"text": "hello there world", "segments": segs}, 3.0)
    assert [(w.text, w.start, w.end) for w in words] == [("hello", 0.5, 0.75), ("there", 0.75, 1.0),
                                                          ("world", 2.0, 2.5)]
    for bad in ([{"start": 0.5, "end": 1.0, "text": "hello"}], [dict(segs[0], end="x"), segs[1]],
                [dict(segs[0], start=float("nan")), segs[1]], "segments", [5]):
        words = parse_words({"text": "hello there world", "segments": bad}, 3.0)
        assert [(w.start, w.end) for w in words] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
