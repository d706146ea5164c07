"""A client that closes its session normally (1000) and reconnects gets a new session as soon
as the server has seen its close, at runtime.max_sessions = 1 and server.max_sessions_per_client
= 1, though the closed session's STT stream still unwinds (was: 503 "capacity" or 429 for as
long as it unwound, 0.5-0.8 s with the embedded STT: the tandem's close waited for it before it
gave the row back, and the server's per-client count waited for that close)."""

from __future__ import annotations

import asyncio

import aiohttp

from kame.config import load_config
from kame.runtime.backend import BackendBridge
from kame.runtime.engine import TandemAgent
from kame.server.client import chat_url

from ..runtime.fakes import FakeFrameModel, wait_for
from .conftest import running_server


class SlowCloseSTT:
    """Once its stream is cancelled it unwinds only when ``release`` is set (the embedded STT
    joins its decode thread)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.unwinding = 0

    async def stream(self, frames):
        async def feed():
            async for _ in frames:
                pass

        feeder = asyncio.create_task(feed())
        try:
            await asyncio.Event().wait()  # (no transcripts: until cancelled)
        finally:
            feeder.cancel()
            self.unwinding += 1
            await self.release.wait()
            self.unwinding -= 1
        yield  # (an async generator)


async def test_a_client_reconnecting_right_after_its_clean_close_gets_a_session(monkeypatch):
    from kame.runtime import sttloop

    monkeypatch.setattr(sttloop, "STOP_WAIT_S", 60.0)  # (the supervisor would leave the stream after 2 s)
    stt = SlowCloseSTT()
    cfg = load_config(None, {"runtime.max_sessions": 1, "runtime.vad": "energy"})
    agent = TandemAgent(cfg, frame_models=FakeFrameModel, backend=lambda s: BackendBridge(s, stt, None, s.clock),
                        token_text=lambda t: "")
    async with running_server(agent, max_sessions_per_client=1) as (url, server), aiohttp.ClientSession() as http:
        try:
            for _ in range(4):
                async with http.ws_connect(chat_url(url)) as ws:  # (503 / 429 raise here)
                    await ws.receive(timeout=10)  # the handshake
                    await ws.close()
                # the server sees the close a moment after the client (its handler then closes the
                # session): only that wait, not the STT stream's unwinding
                await wait_for(lambda: not server.connections)
            assert stt.unwinding >= 1  # (the closed sessions' streams still unwind)
        finally:
            stt.release.set()  # (the agent's stop waits for them)


async def test_the_place_is_free_when_the_client_sees_its_close_answered(monkeypatch):
    """The server frees the session's place before it answers a client's close (aiohttp's
    autoclose is off): a client that reconnects the moment its close() returns gets a session,
    with no wait at all (was: the close was answered first, the session closed a few loop turns
    later; a fast reconnect got 503 "capacity" or 429)."""
    from kame.runtime import sttloop

    monkeypatch.setattr(sttloop, "STOP_WAIT_S", 60.0)
    stt = SlowCloseSTT()
    cfg = load_config(None, {"runtime.max_sessions": 1, "runtime.vad": "energy"})
    agent = TandemAgent(cfg, frame_models=FakeFrameModel, backend=lambda s: BackendBridge(s, stt, None, s.clock),
                        token_text=lambda t: "")
    async with running_server(agent, max_sessions_per_client=1) as (url, server), aiohttp.ClientSession() as http:
        try:
            for _ in range(3):
                async with http.ws_connect(chat_url(url)) as ws:  # (503 / 429 raise here)
                    await ws.receive(timeout=10)  # the handshake
                    await ws.close()  # returns once the server has answered the close
                    assert not agent.sessions  # the place is free by then
        finally:
            stt.release.set()
