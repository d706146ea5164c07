"""Where the OpenAI-compatible adapters (LLM, STT, TTS) find their server, and what a user sees
when there is none (kame.backend.openai_http)."""

import pytest

from kame import registry
from kame.backend.openai_http import DEFAULT_BASE_URL, resolve_endpoint
from kame.backend.types import ChatMessage
from kame.errors import BackendError, ConfigError

from .fake_openai import FakeOpenAI

ENV = ("OPENAI_BASE_URL", "OPENAI_TTS_BASE_URL", "OPENAI_API_KEY")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_resolution_order(clean_env):
    assert resolve_endpoint("LLM", "http://a:1/v1/", "k") == ("http://a:1/v1", "k")
    clean_env.setenv("OPENAI_BASE_URL", "http://b:2/v1")
    assert resolve_endpoint("LLM", None, None) == ("http://b:2/v1", "")
    clean_env.setenv("OPENAI_TTS_BASE_URL", "http://c:3/v1")
    assert resolve_endpoint("TTS", None, None, ("OPENAI_TTS_BASE_URL", "OPENAI_BASE_URL"))[0] == "http://c:3/v1"
    clean_env.delenv("OPENAI_BASE_URL")
    clean_env.delenv("OPENAI_TTS_BASE_URL")
    clean_env.setenv("OPENAI_API_KEY", "sk-x")
    assert resolve_endpoint("LLM", None, None) == (DEFAULT_BASE_URL, "sk-x")


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
