"""Credentials in an OpenAI-compatible base URL (``http://user:password@host/v1``): sent as HTTP
basic auth when no key is set, never in a message; with a key too, a ConfigError at creation
(kame.backend.openai_http.resolve_endpoint)."""

import base64

import numpy as np
import pytest
from aiohttp import web

from kame import registry
from kame.backend.llm.base import describe
from kame.backend.openai_http import resolve_endpoint
from kame.backend.types import ChatMessage
from kame.errors import BackendError, ConfigError

from .test_openai_http import ENV, dead_url

SECRET = "hunter2pw"


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def with_creds(url: str, userinfo: str = f"alice:{SECRET}") -> str:
    return url.replace("://", f"://{userinfo}@", 1)


def test_userinfo_is_split_off_and_hidden():
    from kame.backend.openai_http import hide_userinfo, split_userinfo

    assert split_userinfo("http://a:b@h:1/v1") == ("http://h:1/v1", "a:b")
    assert split_userinfo("http://h:1/v1/x@y") == ("http://h:1/v1/x@y", None)  # an @ in the path is no userinfo
    assert split_userinfo("https://a:p@ss@h/v1") == ("https://h/v1", "a:p@ss")
    assert hide_userinfo("http://a:b@h:1/v1") == "http://***@h:1/v1"
    assert hide_userinfo("a:b@h:1/v1") == "***@h:1/v1"
    assert hide_userinfo("http://h:1/v1") == "http://h:1/v1"


async def _use(kind: str, comp) -> None:
    """One request of an adapter (its error propagates)."""
    if kind == "llm":
        async for _ in comp.stream_chat([ChatMessage("user", "hi")]):
            pass
    elif kind == "stt":
        await comp._post(np.zeros(1600, np.float32))
    else:
        async for _ in comp.synthesize("hi"):
            pass


@pytest.mark.parametrize("kind,spec", [("llm", "openai:m"), ("stt", "openai:whisper-1"), ("tts", "openai:tts-1")])
async def test_url_credentials_are_basic_auth_and_never_in_messages(clean_env, server, kind, spec):
    """Was: "LLM http://alice:hunter2pw@.../chat/completions: HTTP 500 ..." in the log, out.json's
    errors and the backend entries."""
    seen = []

    async def handler(request):
        seen.append(request.headers.get("Authorization"))
        return web.Response(status=404, text="no such model")  # (its message names the base URL too)

    server.handler = handler
    clean_env.setenv("OPENAI_BASE_URL", with_creds(server.url))
    comp = registry.create(kind, spec)
    try:
        assert SECRET not in comp.base_url and SECRET not in repr(comp.endpoint)
        if kind == "llm":
            assert SECRET not in describe(comp)  # how the oracle names it
        with pytest.raises(BackendError, match="HTTP 404") as err:
            await _use(kind, comp)
    finally:
        await comp.aclose()
    assert SECRET not in str(err.value) and "alice" not in str(err.value), str(err.value)
    assert seen == ["Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()]


async def test_percent_encoded_credentials_and_an_unreachable_server(clean_env):
    url = await dead_url()
    llm = registry.create("llm", "openai:m", base_url=with_creds(url, "al%40ce:p%3Aw"), connect_timeout=1.0)
    assert llm.endpoint.basic == "Basic " + base64.b64encode(b"al@ce:p:w").decode()
    try:
        with pytest.raises(BackendError, match="cannot connect") as err:
            await _use("llm", llm)
    finally:
        await llm.aclose()
    assert "p%3Aw" not in str(err.value) and "al%40ce" not in str(err.value)


@pytest.mark.parametrize("kind,spec,url_var,key_var", [
    ("llm", "openai:m", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    ("stt", "openai:whisper-1", "OPENAI_STT_BASE_URL", "OPENAI_API_KEY"),
    ("tts", "openai:tts-1", "OPENAI_BASE_URL", "OPENAI_TTS_API_KEY"),
])
def test_url_credentials_and_a_key_are_a_config_error(clean_env, kind, spec, url_var, key_var):
    """Was: every request failed at run time ("Cannot combine AUTHORIZATION header with AUTH
    argument or credentials encoded in URL"), retried for the session's life."""
    clean_env.setenv(url_var, with_creds("http://127.0.0.1:9/v1"))
    clean_env.setenv(key_var, "sk-SECRETKEY123")
    with pytest.raises(ConfigError, match=f"base URL from {url_var} holds credentials .*key .*from {key_var}.*"
                                          f"remove the user:password@ .*unset {key_var}") as err:
        registry.create(kind, spec)
    assert SECRET not in str(err.value) and "sk-SECRETKEY123" not in str(err.value)
    with pytest.raises(ConfigError, match='pass api_key=""'):
        resolve_endpoint("LLM", with_creds("http://h/v1"), "sk-x")


def test_a_refused_url_hides_its_credentials(clean_env):
    clean_env.setenv("OPENAI_BASE_URL", with_creds("ftp://127.0.0.1:9/v1"))
    with pytest.raises(ConfigError, match=r"http:// or https://, got 'ftp://\*\*\*@127.0.0.1:9/v1'") as err:
        registry.create("llm", "openai:m")
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("password", ["pa/zzq", "pa#zzq", "pa?zzq", "p@h/zzq"])
def test_a_password_with_an_unencoded_delimiter_is_a_config_error_that_hides_it(clean_env, password):
    """review231 finding 2: the authority ends at the first / ? #, so it held no @ and the URL
    was kept whole: "BackendError LLM http://alice:pa/ss@127.0.0.1:9/v1/...: cannot connect"."""
    with pytest.raises(ConfigError, match=r"base_url= \(http://\*\*\*@127\.0\.0\.1:9/v1\) has an '@' after its "
                                          r"host.*percent-encode the password: / -> %2F, # -> %23") as err:
        resolve_endpoint("LLM", f"http://alice:{password}@127.0.0.1:9/v1", None)
    assert "zzq" not in str(err.value) and "alice" not in str(err.value)


def test_hide_userinfo_masks_up_to_the_last_at():
    from kame.backend.openai_http import hide_userinfo

    assert hide_userinfo("http://alice:pa/ss@127.0.0.1:9/v1") == "http://***@127.0.0.1:9/v1"
    assert hide_userinfo("http://alice:pa#ss@h/v1/chat") == "http://***@h/v1/chat"


def test_an_upper_case_scheme_and_a_base_url_with_a_newline_are_read(clean_env):
    """review231 finding 9: HTTP:// was refused; base_url= was not stripped (its newline went
    into every request's URL)."""
    assert resolve_endpoint("LLM", "HTTP://127.0.0.1:9/v1", None).url == "http://127.0.0.1:9/v1"
    assert resolve_endpoint("LLM", "Https://h/v1", None).url == "https://h/v1"
    assert resolve_endpoint("LLM", "http://127.0.0.1:9/v1/\n", None).url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("url", ["https://gw.example.com/v1/@acme/llm", "https://h/v1?x=a@b",
                                 "http://[::1]:8000/v1/@acme"])
def test_an_at_in_the_path_or_query_of_a_url_without_credentials_is_kept(clean_env, url):
    """review238 finding 1: any '@' after the host was refused as a broken password, and the
    message hid the host ("https://***@acme/llm"); RFC 3986 allows '@' in a path and a query."""
    from kame.backend.openai_http import hide_userinfo

    endpoint = resolve_endpoint("LLM", url, "k")
    assert endpoint.url == url and not endpoint.basic
    assert hide_userinfo(url) == url
    assert hide_userinfo("https://u:p@gw/v1/acme") == "https://***@gw/v1/acme"
    # after a user:password@ it still is refused: "alice:p@h/zzq@127.0.0.1" may be a password
    # "p@h/zzq" (test_a_password_with_an_unencoded_delimiter_is_a_config_error_that_hides_it)
    with pytest.raises(ConfigError, match=r"\(https://\*\*\*@acme\) has an '@' after its host.*%40 too"):
        resolve_endpoint("LLM", "https://u:p@gw/v1/@acme", None)


@pytest.mark.parametrize("kind,spec", [("llm", "openai:m"), ("stt", "openai:whisper-1"), ("tts", "openai:tts-1")])
async def test_a_refused_basic_auth_names_the_url_credentials(clean_env, server, kind, spec):
    """QA k41 finding 5: a 401 of a request that carried the base URL's user:password said
    "(check the API key: ...; no key is set)", pointing at a key instead of what was sent."""
    async def refuse(request):
        return web.json_response({"error": {"message": "bad credentials"}}, status=401)

    server.handler = refuse
    clean_env.setenv("OPENAI_BASE_URL", with_creds(server.url))
    comp = registry.create(kind, spec)
    try:
        with pytest.raises(BackendError, match=r"HTTP 401: bad credentials \(check the user and password of the "
                                               r"base URL from OPENAI_BASE_URL: they were sent as HTTP basic auth "
                                               r"\(no API key is set\)\)$") as err:
            await _use(kind, comp)
    finally:
        await comp.aclose()
    assert SECRET not in str(err.value) and "check the API key" not in str(err.value)
