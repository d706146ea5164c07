"""What the OpenAI-compatible adapters (LLM, STT, TTS) do with a misbehaving server and bad
options: a specific BackendError / ConfigError, never a stray TypeError, noise or a wrong word."""

import asyncio
import email.utils
import io
import time

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web

from kame.audio import resample
from kame.backend.llm.openai import OpenAIChat
from kame.backend.stt.embedded import EmbeddedSTT
from kame.backend.stt.openai import OpenAITranscriptionSTT, parse_words
from kame.backend.tts.openai import OpenAITTS
from kame.backend.types import ChatMessage
from kame.errors import BackendError, ConfigError


MSGS = [ChatMessage("user", "hi")]


def sse(*lines: bytes):
    async def handler(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for line in lines:
            await resp.write(line)
        await resp.write_eof()
        return resp
    return handler


def reply(**kw):
    async def handler(request):
        return web.Response(**kw)
    return handler


async def chat(url, **kw):
    llm = OpenAIChat("m", base_url=url, first_token_timeout=2, chunk_timeout=2, **kw)
    try:
        return [p async for p in llm.stream_chat(MSGS)]
    finally:
        await llm.aclose()


@pytest.mark.parametrize("chunk,why", [
    (b'{"choices": 5}', "'choices' is not a list"),
    (b'{"choices": [{"delta": "hi"}]}', "'delta' is not an object"),
    (b'{"choices": [{"delta": {"content": 5}}]}', "text 'content'"),
    (b'{"choices": [{"delta": {"content": ["a"]}}]}', "text 'content'"),
])
async def test_llm_chunk_of_the_wrong_shape_is_a_backend_error(server, chunk, why):
    server.handler = sse(b"data: " + chunk + b"\n\n", b"data: [DONE]\n\n")
    with pytest.raises(BackendError, match="malformed stream chunk") as ei:
        await chat(server.url)
    assert why in str(ei.value)


async def test_llm_null_error_field_and_garbage_lines_are_ignored(server):
    server.handler = sse(b"garbage\n", b'data {"x": 1}\n', b": comment\n",
                         b'data: {"error": null, "choices": [{"delta": {"content": "ok"}}]}\n\n',
                         b'data:{"choices": [{"delta": {"content": " caf\xe9"}}]}\r\n\r\n', b"data: [DONE]\n\n")
    assert await chat(server.url) == ["ok", " caf\ufffd"]


async def test_llm_server_ignoring_max_tokens_is_cut_there(server):
    """A server that streams on past max_tokens (forever, here) is cut at max_tokens pieces."""
    async def endless(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b'data: {"choices": [{"delta": {"content": " la"}}]}\n\n')
                await asyncio.sleep(0.001)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp
    server.handler = endless
    llm = OpenAIChat("m", base_url=server.url, first_token_timeout=2, chunk_timeout=2)
    try:
        pieces = await asyncio.wait_for(_collect(llm.stream_chat(MSGS, max_tokens=20)), 10)
    finally:
        await llm.aclose()
    assert pieces == [" la"] * 20


async def _collect(stream):
    return [p async for p in stream]


@pytest.mark.parametrize("kw,what", [
    (dict(json={"choices": [{"message": {"content": "hi"}}]}), "application/json"),
    (dict(text="<html>login</html>", content_type="text/html"), "text/html"),
])
async def test_llm_non_streaming_body_is_named(server, kw, what):
    async def handler(request):
        return web.json_response(kw["json"]) if "json" in kw else web.Response(**kw)
    server.handler = handler
    with pytest.raises(BackendError, match=f"expected a server-sent event stream.*got {what}"):
        await chat(server.url)


@pytest.mark.parametrize("status,headers,hint", [
    (401, {}, r"check the API key: api_key=, else (OPENAI_TTS_API_KEY, else )?OPENAI_API_KEY; no key is set"),
    (403, {}, r"OPENAI_API_KEY"),
    (404, {}, r"check the model name and the base URL http://127\.0\.0\.1:\d+/v1, from base_url=; OpenAI-compatible"),
    (429, {"Retry-After": "7"}, r"rate limited; retry after 7 s"),
])
async def test_http_errors_say_what_to_check(server, monkeypatch, status, headers, hint):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_TTS_API_KEY", raising=False)
    server.handler = reply(status=status, text='{"error": {"message": "nope"}}', headers=headers)
    with pytest.raises(BackendError, match=rf"HTTP {status}: nope \(.*{hint}") as err:
        await chat(server.url)
    assert err.value.retry_after == (7.0 if status == 429 else None)  # the oracle's back-off waits that long
    with pytest.raises(BackendError, match=rf"^TTS .*HTTP {status}: nope \(.*{hint}"):
        tts = OpenAITTS("tts-1", base_url=server.url)
        try:
            [c async for c in tts.synthesize("hello")]
        finally:
            await tts.aclose()


@pytest.mark.parametrize("own,used", [(True, "OPENAI_STT_API_KEY"), (False, "OPENAI_API_KEY")])
async def test_a_refused_key_names_the_variable_it_came_from(server, monkeypatch, own, used):
    """The STT sends OPENAI_STT_API_KEY when set, else OPENAI_API_KEY; a 401 says which one it was."""
    monkeypatch.setenv("OPENAI_STT_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-llm")
    if own:
        monkeypatch.setenv("OPENAI_STT_API_KEY", "sk-stt")
    else:
        monkeypatch.delenv("OPENAI_STT_API_KEY", raising=False)
    seen = []

    async def refuse(request):
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
    server.handler = refuse
    stt = OpenAITranscriptionSTT("whisper-1", timeout=2)
    try:
        with pytest.raises(BackendError, match=r"^STT .*HTTP 401: Incorrect API key provided \(check the API key: "
                           rf"api_key=, else OPENAI_STT_API_KEY, else OPENAI_API_KEY; the key sent is from {used}\)"):
            await stt._post(np.zeros(1600, np.float32))
    finally:
        await stt.aclose()
    assert seen == [f"Bearer {'sk-stt' if own else 'sk-llm'}"]


async def test_retry_after_as_an_http_date(server):
    """HTTP 429's Retry-After in the HTTP-date form (RFC 9110) is the seconds from now to that time."""
    server.handler = reply(status=429, text="slow down",
                           headers={"Retry-After": email.utils.formatdate(time.time() + 120, usegmt=True)})
    with pytest.raises(BackendError, match=r"rate limited; retry after 1[012]\d s") as err:
        await chat(server.url)
    assert 110 <= err.value.retry_after <= 120


@pytest.mark.parametrize("value,want", [
    ("120", 120.0), (" 3 ", 3.0),
    ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # RFC 9110's IMF-fixdate
    ("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0),  # the obsolete forms recipients must still accept
    ("Wed Oct 21 07:28:30 2015", 30.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: no wait, never negative
    ("soon", None), ("-5", None), ("1e3", None), ("\u00b2", None), ("9" * 400, None), ("", None), (None, None),
    ("Wed, 99 Oct 2015 07:28:00 GMT", None), ("Mon, 01 Jan 99999 00:00:00 GMT", None),
])
def test_retry_after_values(value, want):
    from kame.backend.openai_http import retry_after_seconds

    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert retry_after_seconds(value, now) == want


async def test_garbage_retry_after_is_ignored(server):
    server.handler = reply(status=429, text="slow down", headers={"Retry-After": "in a while"})
    with pytest.raises(BackendError, match=r"HTTP 429: slow down \(rate limited\)$") as err:
        await chat(server.url)
    assert err.value.retry_after is None  # the oracle's own back-off


@pytest.mark.parametrize("make,msg", [
    (lambda: OpenAIChat("", base_url="http://x/v1"), "needs a model name: openai:MODEL"),
    (lambda: OpenAIChat("m", base_url="http://x/v1", chunk_timeout=0), "chunk_timeout must be a number > 0, got 0"),
    (lambda: OpenAIChat("m", base_url="http://x/v1", first_token_timeout=float("nan")), "first_token_timeout"),
    (lambda: OpenAIChat("m", base_url="http://x/v1", connect_timeout="soon"), "connect_timeout must be a number"),
    (lambda: OpenAIChat("m", base_url="http://x/v1", extra_body="top_p=1"), "extra_body must be a dict"),
    (lambda: OpenAITranscriptionSTT("m", base_url="http://x/v1", timeout=-1), "openai STT: timeout must be"),
    (lambda: OpenAITranscriptionSTT("m", base_url="http://x/v1", request_interval=0), "request_interval"),
    (lambda: OpenAITranscriptionSTT("m", base_url="http://x/v1", max_lag=float("nan")), "max_lag must be"),
    (lambda: OpenAITTS("tts-1", base_url="http://x/v1", pcm_rate=0), "pcm_rate must be a whole number >= 4000"),
    (lambda: OpenAITTS("tts-1", base_url="http://x/v1", pcm_rate=5), "pcm_rate must be a whole number >= 4000 and "
                                                                    "<= 768000, got 5"),
    (lambda: OpenAITTS("tts-1", base_url="http://x/v1", pcm_rate=10**9),  # (the whole range: was "at most 768000")
     "pcm_rate must be a whole number >= 4000 and <= 768000, got 1000000000"),
    (lambda: OpenAITTS("tts-1", base_url="http://x/v1", speed=-1), "speed must be a number > 0"),
    (lambda: OpenAITTS("tts-1", base_url="http://x/v1", voice=""), "voice must be a voice name"),
    (lambda: OpenAITTS("tts-1", base_url="http://x/v1", chunk_timeout=True), "chunk_timeout"),
    (lambda: EmbeddedSTT(final_beam=0), "embedded STT: final_beam must be a whole number >= 1, got 0"),
    (lambda: EmbeddedSTT(whisper_interval=-1), "embedded STT: whisper_interval must be a number > 0"),
    (lambda: EmbeddedSTT(max_utterance=0), "embedded STT: max_utterance must be a number > 0"),
])
def test_bad_options_are_config_errors_naming_them(make, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        make()


@pytest.mark.parametrize("body,msg", [
    ({"text": None}, "'text' is null"),
    ({"result": "hello"}, "no 'text'"),
    ({"text": 5}, "'text' is int"),
    ({"error": {"message": "model not loaded"}}, "error in the response.*model not loaded"),
    ({"text": "hi", "words": [{"word": "hi"}]}, "malformed 'words'"),
    ({"text": "hi", "words": "hi"}, "malformed 'words'"),
    ({"text": "hi", "words": [{"word": "hi", "start": "x", "end": 1}]}, "malformed 'words'"),
    ({"text": "hi", "words": [{"word": "hi", "start": 0, "end": float("inf")}]}, "non-finite"),
])
def test_stt_unexpected_json_is_an_error_not_a_transcript(body, msg):
    with pytest.raises(ValueError, match=msg):
        parse_words(body, 1.0)
    assert [w.text for w in parse_words({"text": "hello  world"}, 1.0)] == ["hello", "world"]


async def test_stt_request_names_the_bad_response(server):
    stt = OpenAITranscriptionSTT("m", base_url=server.url, timeout=2)
    try:
        server.handler = reply(text='{"text": null}', content_type="application/json")
        with pytest.raises(BackendError, match=r"^STT .*/audio/transcriptions: not a transcription \('text' is null"):
            await stt._post(np.zeros(1600, np.float32))
        server.handler = reply(body=b"<html>\xff</html>", content_type="text/html")
        with pytest.raises(BackendError, match=r"invalid JSON \(text/html\)"):
            await stt._post(np.zeros(1600, np.float32))
    finally:
        await stt.aclose()


def _wav(x, rate, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


async def _speak(url, **kw):
    tts = OpenAITTS("tts-1", base_url=url, first_chunk_timeout=2, chunk_timeout=2, **kw)
    try:
        return [c async for c in tts.synthesize("Hello there.")]
    finally:
        await tts.aclose()


@pytest.mark.parametrize("body,ctype,kind", [
    (_wav(np.zeros(2400, np.float32), 24000), "audio/wav", "wav"),
    (_wav(np.zeros(2400, np.float32), 24000), "application/octet-stream", "wav"),
    (b"ID3\x03\x00" + bytes(200), "audio/mpeg", "mp3"),
    (b"\xff\xfb\x90\x00" + bytes(200), "audio/mpeg", "audio/mpeg"),
])
async def test_tts_audio_file_where_raw_pcm_was_asked_is_an_error(server, body, ctype, kind):
    server.handler = reply(body=body, content_type=ctype)
    with pytest.raises(BackendError, match=rf"asked for raw pcm, the server sent an audio file \({kind}.*response_format='wav'"):
        await _speak(server.url)


@pytest.mark.parametrize("x,msg", [
    (np.zeros(0, np.float32), "holds no audio"),
    (np.full(100, np.nan, np.float32), "NaN or infinite"),
])
async def test_tts_wav_without_usable_audio_is_an_error(server, x, msg):
    server.handler = reply(body=_wav(x, 24000, "FLOAT"), content_type="audio/wav")
    with pytest.raises(BackendError, match=msg):
        await _speak(server.url, response_format="wav")


async def test_tts_pcm_at_another_rate_streams_without_seams(server):
    x = (0.4 * np.sin(np.arange(8000) * 2 * np.pi * 300 / 16000)).astype(np.float32)  # 0.5 s at 16 kHz
    data = (x * 32767).astype("<i2").tobytes()

    async def handler(request):
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await resp.prepare(request)
        for i in range(0, len(data), 999):  # odd sizes: samples split across chunks
            await resp.write(data[i:i + 999])
        await resp.write_eof()
        return resp
    server.handler = handler
    chunks = await _speak(server.url, pcm_rate=16000)
    got = np.concatenate(chunks)
    want = resample(np.frombuffer(data, "<i2").astype(np.float32) / 32768.0, 16000, 24000)
    assert len(chunks) > 1 and got.shape == want.shape == (12000,)
    np.testing.assert_allclose(got, want, atol=1e-5)  # per-chunk resampling clicked (error ~1) and drifted
