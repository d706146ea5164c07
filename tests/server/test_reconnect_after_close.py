"""A client that closes its session normally (1000) and reconnects gets a new session as soon
as the server has seen its close, at runtime.max_sessions = 1 and server.max_sessions_per_client
= 1, though the closed session's STT stream still unwinds (was: 503 "capacity" or 429 for as
long as it unwound, 0.5-0.8 s with the embedded STT: the tandem's close waited for it before it
gave the row back, and the server's per-client count waited for that close)."""

from __future__ import annotations


import aiohttp

from kame.config import load_config
from kame.runtime.backend import BackendBridge
from kame.runtime.engine import TandemAgent
from kame.server.client import chat_url

from ..runtime.fakes import FakeFrameModel, SlowCloseSTT
from .conftest import running_server


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
