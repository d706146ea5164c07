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

from ..cascade.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from ..runtime.fakes import FakeFrameModel, SlowCloseSTT, wait_for
from .conftest import running_server


async def connect_and_close(http, url, server, times: int) -> None:
    """``times`` clients, one after another, each connecting, reading the handshake and closing;
    the next starts once the server holds no connection."""
    for _ in range(times):
        async with http.ws_connect(chat_url(url)) as ws:
            await ws.receive(timeout=10)
            await ws.close()
        await wait_for(lambda: not server.connections)


async def test_a_client_reconnecting_the_moment_its_close_is_answered_gets_a_session(monkeypatch):
    """The server frees the session's place before it answers a client's close (aiohttp's
    autoclose is off), though the closed session's STT stream still unwinds: a client that
    reconnects the moment its close() returns gets a session, with no wait at all (was: the close
    was answered first and the session closed a few loop turns later, or only once its STT
    stream had unwound: a fast reconnect got 503 "capacity" or 429)."""
    from kame.runtime import sttloop

    monkeypatch.setattr(sttloop, "STOP_WAIT_S", 60.0)  # (the supervisor would leave the stream after 2 s)
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
            assert stt.unwinding >= 1  # (the closed sessions' streams still unwind)
        finally:
            stt.release.set()  # (the agent's stop waits for them)


async def test_a_clean_close_of_a_tandem_session_counts_as_the_clients():
    """The session the client's close ends is not taken for one the agent ended: its outputs'
    reader stops before the session closes (was: kame_sessions_closed_total{how="session_ended"}
    and a fatal session_ended error queued for a client that had left)."""
    cfg = load_config(None, {"runtime.max_sessions": 1, "runtime.vad": "energy"})
    agent = TandemAgent(cfg, frame_models=FakeFrameModel, backend=lambda s: None, token_text=lambda t: "")
    async with running_server(agent) as (url, server), aiohttp.ClientSession() as http:
        await connect_and_close(http, url, server, 3)
        assert {k: v for k, v in server.metrics.closed.items() if v} == {"client": 3}


class FlushingSTT(FakeSTT):
    """Once its audio ends it decodes a last final (until cancelled): counted in ``flushes``."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    async def stream(self, frames):
        async for _ in frames:
            pass
        self.flushes += 1
        await asyncio.Event().wait()  # (the decode of a final nobody will read: until cancelled)
        yield


async def test_a_cascade_session_closed_by_its_client_flushes_nothing_and_frees_its_slot_at_once():
    """A cascade session with a reader flushes its STT's last transcript on close (file mode's);
    the server's client has left, so its reader stops first: no flush, the place and the
    client's slot free when its close is answered (was: the STT decoded a final for nobody for
    up to 5 s, the slot held: 429 on reconnect)."""
    from kame.cascade.agent import build_cascade_agent

    from kame.runtime.clock import MonotonicClock

    stt, clock = FlushingSTT(), MonotonicClock()
    cfg = load_config(None, {"mode": "cascade", "runtime.max_sessions": 1, "runtime.vad": "energy"})
    agent = build_cascade_agent(cfg, clock=clock, components={"stt": stt, "llm": FakeLLM(clock, ["Hi."]), "tts": FakeTTS(clock),
                                                 "vad_factory": FakeVAD})
    async with running_server(agent, max_sessions_per_client=1) as (url, server), aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.ws_connect(chat_url(url)) as ws:  # (429 raises here)
                await ws.receive(timeout=10)
                await ws.close()
                assert not agent.sessions
        await wait_for(lambda: not server.connections)
    assert stt.flushes == 0


async def test_the_server_answers_a_clients_close_only_once_its_session_is_closed(monkeypatch):
    """Seen from the server: when it answers the client's close, the session is already gone
    (was: with the reader cancelled before it closed the session, the close was answered first
    and the session closed after; a client on another machine reconnecting at once got 503)."""
    from aiohttp import web

    cfg = load_config(None, {"runtime.max_sessions": 1, "runtime.vad": "energy"})
    agent = TandemAgent(cfg, frame_models=FakeFrameModel, backend=lambda s: None, token_text=lambda t: "")
    live_at_answer = []
    close = web.WebSocketResponse.close

    async def answer(self, **kw):
        if not self.closed:  # (the answer; later calls do nothing)
            live_at_answer.append(len(agent.sessions))
        return await close(self, **kw)

    monkeypatch.setattr(web.WebSocketResponse, "close", answer)
    async with running_server(agent) as (url, server), aiohttp.ClientSession() as http:
        await connect_and_close(http, url, server, 3)
    assert live_at_answer == [0, 0, 0]
