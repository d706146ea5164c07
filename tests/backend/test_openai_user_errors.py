"""What a user of the OpenAI-compatible LLM / TTS sees for a misconfigured spec, key or server:
a reply with no text, a 200 response that is not an event stream, options or spaces in a spec,
a key with a newline in it — each a specific error, never a silent empty answer or a bare
ValueError."""

import pytest
from aiohttp import web

from kame import registry
from kame.backend.llm.openai import OpenAIChat
from kame.errors import BackendError, ConfigError

from .test_openai_robustness import MSGS, sse

async def chat(url, max_tokens=None):
    llm = OpenAIChat("m", base_url=url, first_token_timeout=2, chunk_timeout=2)
    try:
        return [p async for p in llm.stream_chat(MSGS, max_tokens=max_tokens)]
    finally:
        await llm.aclose()


def data(obj: str) -> bytes:
    return b"data: " + obj.encode() + b"\n\n"


# --- A: a stream that ends properly with no text -------------------------------------------------
async def test_a_reasoning_model_that_spent_max_tokens_thinking_is_an_error_saying_so(server):
    server.handler = sse(data('{"choices": [{"delta": {"role": "assistant"}}]}'),
                         data('{"choices": [{"delta": {"reasoning_content": "Let me think"}}]}'),
                         data('{"choices": [{"delta": {"reasoning_content": " about it"}}]}'),
                         data('{"choices": [{"delta": {}, "finish_reason": "length"}]}'), b"data: [DONE]\n\n")
    with pytest.raises(BackendError, match=r"model 'm' returned no text \(finish_reason 'length'\): it sent only "
                       r"reasoning_content, so a reasoning model spent max_tokens=40 thinking; raise "
                       r"backend.llm_max_tokens or use a non-reasoning model"):
        await chat(server.url, max_tokens=40)


async def test_a_reasoning_model_that_stopped_without_an_answer_is_an_error_saying_so(server):
    server.handler = sse(data('{"choices": [{"delta": {"reasoning": "hmm"}, "finish_reason": "stop"}]}'),
                         b"data: [DONE]\n\n")
    with pytest.raises(BackendError, match=r"no text \(finish_reason 'stop'\): it sent only reasoning_content "
                                           r"\(a reasoning model's thinking\), no answer"):
        await chat(server.url)


async def test_a_stream_that_hit_max_tokens_before_any_text_is_an_error(server):
    server.handler = sse(data('{"choices": [{"delta": {"content": ""}, "finish_reason": "length"}]}'),
                         b"data: [DONE]\n\n")
    with pytest.raises(BackendError, match=r"no text \(finish_reason 'length'\): it hit max_tokens before any text"):
        await chat(server.url)


@pytest.mark.parametrize("lines", [
    [data('{"choices": [{"delta": {}, "finish_reason": "stop"}]}')],
    [data('{"choices": [{"delta": {"role": "assistant"}}]}'), b"data: [DONE]\n\n"],
])
async def test_an_answer_of_no_text_is_empty_not_an_error(server, lines):
    # (the tandem's oracle may get one: a failure there would be retried, and reported, for nothing)
    server.handler = sse(*lines)
    assert await chat(server.url) == []


async def test_legacy_completions_style_text_chunks_are_read_as_text(server):
    server.handler = sse(data('{"choices": [{"index": 0, "text": "Hel"}]}'),
                         data('{"choices": [{"index": 0, "text": "lo."}]}'),
                         data('{"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}'), b"data: [DONE]\n\n")
    assert await chat(server.url) == ["Hel", "lo."]


async def test_reasoning_before_the_answer_is_fine(server):
    server.handler = sse(data('{"choices": [{"delta": {"reasoning_content": "hmm"}}]}'),
                         data('{"choices": [{"delta": {"content": "Paris."}, "finish_reason": "stop"}]}'),
                         b"data: [DONE]\n\n")
    assert await chat(server.url) == ["Paris."]


# --- C: a 200 response that is not an event stream -----------------------------------------------
@pytest.mark.parametrize("ctype,body", [
    ("text/plain", "Hello there, I am a plain text body"),
    ("application/x-ndjson", '{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}\n'
                             '{"model":"m","done":true}\n'),
])
async def test_a_body_that_is_not_an_event_stream_is_named_with_an_excerpt(server, ctype, body):
    async def handler(request):
        return web.Response(text=body, content_type=ctype)
    server.handler = handler
    with pytest.raises(BackendError, match=f"expected a server-sent event stream \\(text/event-stream\\), "
                                           f"got {ctype}: ") as ei:
        await chat(server.url)
    assert body[:20] in str(ei.value)


# --- B: options and spaces in a spec --------------------------------------------------------------
@pytest.fixture
def env(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_STT_BASE_URL", "OPENAI_TTS_BASE_URL", "OPENAI_API_KEY",
                 "OPENAI_STT_API_KEY", "OPENAI_TTS_API_KEY", "OPENAI_MODEL", "OPENAI_TTS_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    return monkeypatch


@pytest.mark.parametrize("spec,model", [("openai: gpt-4.1", "gpt-4.1"), ("openai:gpt-4.1 ", "gpt-4.1"),
                                        ("openai:gpt-4.1;first_token_timeout=40", "gpt-4.1")])
def test_llm_spec_model_is_stripped_and_options_are_read(env, spec, model):
    llm = registry.create("llm", spec)
    assert llm.model == model
    assert llm.first_token_timeout == (40 if "first_token_timeout" in spec else 15)


@pytest.mark.parametrize("kind,spec,msg", [
    ("llm", "openai:gpt-4.1;temperature=0.5",
     r"llm spec 'openai:gpt-4.1;temperature=0.5': unknown option 'temperature'; .* NAME one of first_token_timeout"),
    ("llm", "openai:gpt-4.1;fast", r"llm spec 'openai:gpt-4.1;fast': 'fast' is not NAME=VALUE"),
    ("llm", "openai:gpt-4.1;chunk_timeout=0", r"chunk_timeout must be a number > 0, got '0'"),
    ("tts", "openai:tts-1:nova;voice=alloy", r"tts spec 'openai:tts-1:nova;voice=alloy': unknown option 'voice'"),
    ("tts", "openai:tts-1;speed=fast", r"speed must be a number > 0, got 'fast'"),
])
def test_spec_options_they_do_not_take_are_config_errors_naming_the_spec(env, kind, spec, msg):
    with pytest.raises(ConfigError, match=msg):
        registry.create(kind, spec)


def test_an_option_both_in_the_spec_and_as_an_argument_is_refused(env):
    with pytest.raises(ConfigError, match="option 'chunk_timeout' is also given as a keyword argument"):
        registry.create("llm", "openai:m;chunk_timeout=3", chunk_timeout=4)


@pytest.mark.parametrize("spec,model,voice", [
    ("openai: tts-1 : nova", "tts-1", "nova"), ("openai:tts-1 ", "tts-1", "alloy"),
    ("openai:tts-1:nova;speed=1.25,response_format=wav", "tts-1", "nova"),
])
def test_tts_spec_model_and_voice_are_stripped(env, spec, model, voice):
    tts = registry.create("tts", spec)
    assert (tts.model, tts.voice) == (model, voice)
    if "speed" in spec:
        assert (tts.speed, tts.response_format) == (1.25, "wav")


# --- D: a key with a newline or another control character -----------------------------------------
@pytest.mark.parametrize("kind,spec,var", [("llm", "openai:m", "OPENAI_API_KEY"),
                                           ("tts", "openai:tts-1", "OPENAI_TTS_API_KEY"),
                                           ("stt", "openai:whisper-1", "OPENAI_API_KEY")])
def test_a_key_with_a_trailing_newline_is_stripped(env, kind, spec, var):
    env.setenv(var, " sk-abc\n")
    assert registry.create(kind, spec).api_key == "sk-abc"


@pytest.mark.parametrize("key", ["sk-a\nb", "sk-a\rb", "sk-a\tb", "sk-ab\x7f1"])
def test_a_key_with_a_control_character_inside_is_a_config_error_naming_the_variable(env, key):
    env.setenv("OPENAI_API_KEY", key)
    with pytest.raises(ConfigError, match=r"openai LLM: the API key from OPENAI_API_KEY holds a control character"):
        registry.create("llm", "openai:m")
    with pytest.raises(ConfigError, match=r"the API key from api_key= holds a control character"):
        OpenAIChat("m", api_key=key)


async def test_a_key_with_a_trailing_newline_reaches_the_server_without_it(server, monkeypatch):
    seen = []

    async def handler(request):
        seen.append(request.headers.get("Authorization"))
        return await sse(data('{"choices": [{"delta": {"content": "ok"}, "finish_reason": "stop"}]}'))(request)
    server.handler = handler
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc\n")
    assert await chat(server.url) == ["ok"]
    assert seen == ["Bearer sk-abc"]


# --- a bad option value is named even when no server is configured --------------------------------
@pytest.mark.parametrize("kind, spec, option", [
    ("llm", "openai:gpt;first_token_timeout=abc", "first_token_timeout"),
    ("llm", "openai:gpt;connect_timeout=-1", "connect_timeout"),
    ("stt", "openai:whisper-1;response_format=xml", "response_format"),
    ("stt", "openai:whisper-1;timeout=0", "timeout"),
    ("tts", "openai:tts-1;chunk_timeout=abc", "chunk_timeout"),
])
def test_a_bad_option_value_is_reported_before_no_server_configured(monkeypatch, kind, spec, option):
    for setting in ("BASE_URL", "API_KEY"):
        for var in (f"OPENAI_{setting}", f"OPENAI_STT_{setting}", f"OPENAI_TTS_{setting}"):
            monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match=option) as e:
        registry.create(kind, spec)
    assert "no server configured" not in str(e.value)
