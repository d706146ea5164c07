"""Where the OpenAI-compatible adapters (LLM, STT, TTS) find their server, and what a user sees
when there is none (kame.backend.openai_http)."""

import pytest

from kame import registry
from kame.backend.openai_http import DEFAULT_BASE_URL, resolve_endpoint
from kame.backend.types import ChatMessage
from kame.errors import BackendError, ConfigError

from .fake_openai import FakeOpenAI

ENV = ("OPENAI_BASE_URL", "OPENAI_STT_BASE_URL", "OPENAI_TTS_BASE_URL", "OPENAI_API_KEY", "OPENAI_STT_API_KEY",
       "OPENAI_TTS_API_KEY")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_resolution_order(clean_env):
    ep = resolve_endpoint("LLM", "http://a:1/v1/", "k")
    assert (ep.url, ep.key, ep.url_from, ep.key_from) == ("http://a:1/v1", "k", "base_url=", "api_key=")
    clean_env.setenv("OPENAI_BASE_URL", "http://b:2/v1")
    ep = resolve_endpoint("LLM", None, None)
    assert (ep.url, ep.key, ep.url_from, ep.key_from) == ("http://b:2/v1", "", "OPENAI_BASE_URL", "")
    clean_env.setenv("OPENAI_TTS_BASE_URL", "http://c:3/v1")
    assert resolve_endpoint("TTS", None, None, "TTS").url == "http://c:3/v1"
    clean_env.delenv("OPENAI_BASE_URL")
    clean_env.delenv("OPENAI_TTS_BASE_URL")
    clean_env.setenv("OPENAI_API_KEY", "sk-x")
    ep = resolve_endpoint("LLM", None, None)
    assert (ep.url, ep.key, ep.url_from, ep.key_from) == (DEFAULT_BASE_URL, "sk-x", "the default", "OPENAI_API_KEY")


def test_stt_and_tts_have_their_own_key(clean_env):
    """OPENAI_STT_API_KEY / OPENAI_TTS_API_KEY are the STT's / TTS's key when set (a local whisper or
    TTS server beside a hosted LLM, or the reverse), else OPENAI_API_KEY; the LLM keeps
    OPENAI_API_KEY; an empty variable counts as unset; api_key= wins over all."""
    from kame.backend.llm.openai import OpenAIChat
    from kame.backend.stt.openai import OpenAITranscriptionSTT
    from kame.backend.tts.openai import OpenAITTS

    clean_env.setenv("OPENAI_BASE_URL", "http://b:2/v1")
    clean_env.setenv("OPENAI_API_KEY", "sk-llm")
    clean_env.setenv("OPENAI_STT_API_KEY", "sk-stt")
    clean_env.setenv("OPENAI_TTS_API_KEY", "sk-tts")
    stt, tts, llm = OpenAITranscriptionSTT("whisper-1"), OpenAITTS("tts-1"), OpenAIChat("m")
    assert (stt.api_key, tts.api_key, llm.api_key) == ("sk-stt", "sk-tts", "sk-llm")
    assert (stt.endpoint.key_from, tts.endpoint.key_from) == ("OPENAI_STT_API_KEY", "OPENAI_TTS_API_KEY")
    assert OpenAITranscriptionSTT("whisper-1", api_key="sk-arg").api_key == "sk-arg"
    assert OpenAITTS("tts-1", api_key="").api_key == ""  # no key sent
    clean_env.setenv("OPENAI_STT_API_KEY", "")
    clean_env.delenv("OPENAI_TTS_API_KEY")
    stt, tts = OpenAITranscriptionSTT("whisper-1"), OpenAITTS("tts-1")
    assert (stt.api_key, tts.api_key, stt.endpoint.key_from) == ("sk-llm", "sk-llm", "OPENAI_API_KEY")


@pytest.mark.parametrize("kind,spec,url_var,key_var", [
    ("stt", "openai:whisper-1", "OPENAI_STT_BASE_URL", "OPENAI_STT_API_KEY"),
    ("tts", "openai:tts-1", "OPENAI_TTS_BASE_URL", "OPENAI_TTS_API_KEY"),
])
def test_own_key_alone_reaches_the_openai_api(clean_env, kind, spec, url_var, key_var):
    """The service's own key is enough for the OpenAI API; without any, the error names its variables."""
    with pytest.raises(ConfigError, match=f"set {url_var} or OPENAI_BASE_URL .* or set {key_var} or OPENAI_API_KEY"):
        registry.create(kind, spec)
    clean_env.setenv(key_var, "sk-own")
    comp = registry.create(kind, spec)
    assert (comp.base_url, comp.api_key) == (DEFAULT_BASE_URL, "sk-own")


@pytest.mark.parametrize("kind,spec", [("llm", "openai:m"), ("stt", "openai:whisper-1"), ("tts", "openai:tts-1")])
def test_no_server_and_no_key_is_a_config_error(clean_env, kind, spec):
    with pytest.raises(ConfigError, match="no server configured.*OPENAI_BASE_URL.*OPENAI_API_KEY"):
        registry.create(kind, spec)


def test_bad_scheme(clean_env):
    clean_env.setenv("OPENAI_BASE_URL", "127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match="http:// or https://"):
        registry.create("llm", "openai:m")


async def dead_url():
    """A loopback URL where nothing listens (any more)."""
    s = FakeOpenAI()
    await s.start()
    url = s.base_url
    await s.stop()
    return url


async def test_dead_server_llm():
    llm = registry.create("llm", "openai:m", base_url=await dead_url(), connect_timeout=1.0)
    try:
        with pytest.raises(BackendError, match=r"^LLM .*/chat/completions: cannot connect .*is the server running"):
            async for _ in llm.stream_chat([ChatMessage("user", "hi")]):
                pass
    finally:
        await llm.aclose()


async def test_a_session_made_while_the_last_one_closes_is_kept():
    """A stream that starts while the last user's aclose() is under way (a reconnect to a freed
    place) gets a new HTTP session; aclose() must not then forget it unclosed (was: set to None)."""
    import asyncio

    from kame.backend.openai_http import OpenAIHTTP

    class Client(OpenAIHTTP):
        what, service = "STT", "STT"

    c = Client()
    c._init_http("http://127.0.0.1:9/v1", "x")
    old = c._get_session()
    closing = asyncio.create_task(c.aclose())
    await asyncio.sleep(0)  # aclose() has started
    new = c._get_session()
    await closing
    assert old.closed and new is not old and c._session is new and not new.closed
    await c.aclose()
    assert new.closed and c._session is None


@pytest.mark.parametrize("status, cause", [(401, "HTTP 401 from the LLM server"), (404, "HTTP 404 from the LLM server"),
                                           (None, "cannot reach the LLM server")])
async def test_what_a_remote_client_is_told_of_an_http_error(clean_env, server, status, cause):
    """The adapter's error tells the operator all (URL, the upstream's answer, where the key came
    from); what `kame serve` sends its client (kame.runtime.base.client_form) is its short form
    (was: the whole error, in the 0x05 agent_error and the "backend" Meta)."""
    from aiohttp import web

    from kame.runtime.base import BackendHealth, ErrorEvent, client_form

    async def answer(request):
        return web.json_response({"error": {"message": "Incorrect API key provided: sk-proj-abc1****WXYZ, "
                                            "org org-internal-42"}}, status=status)

    server.handler = answer
    clean_env.setenv("OPENAI_API_KEY", "sk-proj-abc1secretWXYZ")
    url = server.url if status else await dead_url()
    llm = registry.create("llm", "openai:gpt-x", base_url=url, connect_timeout=1.0)
    try:
        with pytest.raises(BackendError) as err:
            async for _ in llm.stream_chat([ChatMessage("user", "hi")], max_tokens=5):
                pass
    finally:
        await llm.aclose()
    detail = str(err.value)
    assert url in detail and (status is None or "org-internal-42" in detail)  # (the operator's)
    out = []
    BackendHealth(out.append).report("llm", False, 0.0, detail, f"back-end llm failed: {detail}")
    assert out[0].message.endswith(detail)  # (kame run: all of it)
    sent = [client_form(o) for o in out]
    assert isinstance(sent[0], ErrorEvent) and sent[0].message == f"llm back-end failed ({cause}); see the server log"
    assert sent[1].data["error"] == sent[0].message
    for secret in ("127.0.0.1", "org-internal", "sk-proj", "OPENAI_API_KEY", "api_key", "/v1"):
        assert secret not in repr(sent), secret
