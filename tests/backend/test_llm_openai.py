"""OpenAI-compatible streaming client against a real aiohttp server on 127.0.0.1."""

import asyncio

import pytest

from kame import registry
from kame.backend.llm.base import check_piece
from kame.backend.llm.openai import OpenAIChat
from kame.backend.types import ChatMessage
from kame.errors import BackendError, ConfigError

from .fake_openai import FakeOpenAI, Reply
from .scripted_llm import cancel_after_first_piece

MSGS = [ChatMessage("system", "Be brief."), ChatMessage("user", "user: hello")]


@pytest.fixture
async def server():
    s = FakeOpenAI()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def llm(server):
    c = OpenAIChat("fake-model", base_url=server.base_url, api_key="sk-test",
                   first_token_timeout=2.0, chunk_timeout=2.0)
    yield c
    await c.aclose()


async def _collect(llm, **kw):
    return [p async for p in llm.stream_chat(MSGS, **kw)]


async def test_streams_pieces_and_sends_request(server, llm):
    server.push(Reply(["The", " capital", " is", " Paris."]))
    assert await _collect(llm, max_tokens=40, temperature=0.5) == ["The", " capital", " is", " Paris."]
    req = server.requests[0]
    assert req["model"] == "fake-model" and req["stream"] is True
    assert req["max_tokens"] == 40 and req["temperature"] == 0.5
    assert req["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "user: hello"}]
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert server.completed == 1 and server.disconnects == 0
    # the connection is reusable for a second request
    assert await _collect(llm) == ["Hello", " there", "."]


async def test_a_character_split_between_two_chunks_comes_out_whole(server, llm):
    """A server escaping non-ASCII (as json.dumps does) that splits an emoji's UTF-16 halves between
    two chunks (was: each half a lone surrogate, U+FFFD once cleaned); a half never completed is
    handed on at the end."""
    server.push(Reply(["a\ud83d", "\ude00b", " \ud83d", "\ude00", " end\ud83d"]))
    pieces = await _collect(llm)
    assert pieces == ["a", "\U0001F600b", " ", "\U0001F600", " end", "\ud83d"]
    assert "".join(check_piece(p, llm) for p in pieces) == "a\U0001F600b \U0001F600 end\ufffd"


async def test_env_base_url_and_registry(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = registry.create("llm", "openai:local-model")
    assert isinstance(llm, OpenAIChat) and llm.url == server.base_url + "/chat/completions"
    try:
        assert "".join(await _collect(llm)) == "Hello there."
    finally:
        await llm.aclose()
    assert "Authorization" not in server.headers[0]
    with pytest.raises(ConfigError):
        registry.create("llm", "openai")


@pytest.mark.parametrize("status,body,expect", [
    (500, "internal boom", "internal boom"),
    (401, '{"error": {"message": "Incorrect API key provided"}}', "Incorrect API key"),
    (503, "", "HTTP 503"),
])
async def test_http_errors(server, llm, status, body, expect):
    server.push(Reply(status=status, body=body))
    with pytest.raises(BackendError, match=str(status)) as ei:
        await _collect(llm)
    assert expect in str(ei.value)


async def test_malformed_chunk(server, llm):
    server.push(Reply(["a", " b", " c"], malformed_after=1))
    got = []
    with pytest.raises(BackendError, match="malformed"):
        async for p in llm.stream_chat(MSGS):
            got.append(p)
    assert got == ["a"]


async def test_error_object_in_stream(server, llm):
    server.push(Reply(["a", " b"], error_after=1))
    with pytest.raises(BackendError, match="overloaded"):
        await _collect(llm)


async def test_mid_stream_disconnect(server, llm):
    server.push(Reply(["a", " b", " c"], disconnect_after=2, delay=0.05))
    got = []
    with pytest.raises(BackendError):
        async for p in llm.stream_chat(MSGS):
            got.append(p)
    assert got == ["a", " b"]


async def test_stream_without_done(server, llm):
    server.push(Reply(["a", " b"], send_done=False))
    with pytest.raises(BackendError, match="DONE"):
        await _collect(llm)


async def test_stall_between_chunks_times_out_and_closes(server):
    llm = OpenAIChat("m", base_url=server.base_url, chunk_timeout=0.2, first_token_timeout=2.0)
    server.push(Reply(["a", " b", " c"], stall_after=1))
    try:
        with pytest.raises(BackendError, match="stalled"):
            await _collect(llm)
        await server.wait_disconnects(1)  # the server saw the client leave
    finally:
        await llm.aclose()


async def test_first_token_timeout(server):
    llm = OpenAIChat("m", base_url=server.base_url, first_token_timeout=0.2)
    gate = asyncio.Event()  # never set: headers arrive, no content
    server.push(Reply(gate=gate))
    try:
        with pytest.raises(BackendError, match="first token"):
            await _collect(llm)
        await server.wait_disconnects(1)
    finally:
        gate.set()
        await llm.aclose()


async def test_cancel_closes_request(server, llm):
    server.push(Reply([f" w{i}" for i in range(200)], delay=0.02))
    got = await cancel_after_first_piece(llm, MSGS, 5)
    await server.wait_disconnects(1)
    assert server.completed == 0 and 0 < len(got) < 200


async def test_connection_refused():
    s = FakeOpenAI()
    await s.start()
    url = s.base_url
    await s.stop()
    llm = OpenAIChat("m", base_url=url, connect_timeout=1.0)
    try:
        with pytest.raises(BackendError, match="connect"):
            await _collect(llm)
    finally:
        await llm.aclose()


async def test_an_endless_stream_is_cut_at_the_cap(server, llm, monkeypatch):
    """Keep-alive comments forever (each one resets the between-lines timeout): cut at
    MAX_STREAM_BYTES, the connection dropped (was: read forever)."""
    from kame.backend.llm import openai as llm_openai

    monkeypatch.setattr(llm_openai, "MAX_STREAM_BYTES", 200_000)
    server.push(Reply(["a", " b", " c"], keepalive_after=2))
    got = []
    with pytest.raises(BackendError, match=r"event stream is over the openai LLM adapter's limit of 0\.1907 MiB \(200000 bytes\): stopped reading"):
        async for piece in llm.stream_chat(MSGS):
            got.append(piece)
    assert got == ["a", " b"]
    await server.wait_disconnects(1)


async def test_an_overlong_line_is_a_backend_error(server, llm):
    server.push(Reply(["a"], long_line=2_000_000))  # over aiohttp's line buffer
    with pytest.raises(BackendError, match="a stream line too long to read"):
        await _collect(llm)


async def test_keep_alive_comments_do_not_hold_a_stalled_stream_open(server):
    """A comment every 0.05 s but no data after the first pieces: stalled after chunk_timeout
    (was: each comment reset the timeout, so the stream stayed open for ever)."""
    llm = OpenAIChat("m", base_url=server.base_url, chunk_timeout=0.5, first_token_timeout=2.0)
    server.push(Reply(["a", " b", " c"], keepalive_after=1, keepalive_gap=0.05))
    try:
        with pytest.raises(BackendError, match=r"stalled \(0\.5 s between data lines\)"):
            await asyncio.wait_for(_collect(llm), 10)
        await server.wait_disconnects(1)
    finally:
        await llm.aclose()
