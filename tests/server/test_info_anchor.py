"""The server's "info" metadata carries the session's start on the clock of every "t" ("t0"), so a
client can place the agent's timestamps against its own audio (was: nothing to anchor them)."""

from __future__ import annotations

import json

import aiohttp

from kame.runtime.clock import FakeClock
from kame.server import protocol as P
from kame.server.app import ServerConfig, make_app
from kame.server.echo import EchoAgent

from ..local_http import serving


async def test_info_has_t0_the_server_clock_at_the_session_open():
    clock = FakeClock(start=42679.0)
    app = make_app(EchoAgent(max_sessions=2, delay_frames=2), ServerConfig(), clock=clock, manage_agent=True)
    async with serving(app) as (url, _), aiohttp.ClientSession() as http:
        clock.advance(0.18)  # the server's clock at the open: 42679.18
        ws = await http.ws_connect(url.replace("http", "ws") + "/api/chat")
        try:
            kind, _ = P.decode((await ws.receive(timeout=10)).data)
            assert kind == P.Kind.HANDSHAKE
            kind, payload = P.decode((await ws.receive(timeout=10)).data)
            info = json.loads(payload)
            assert kind == P.Kind.METADATA and info["type"] == "info" and "audio_out" in info
            assert info["t0"] == clock.now() == 42679.18
        finally:
            await ws.close()
