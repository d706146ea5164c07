"""The operator's log at shutdown: how many sessions the server closes."""

from __future__ import annotations

import logging

import aiohttp

from .conftest import running_server


async def test_shutdown_says_how_many_sessions_it_closes(caplog):
    """(was: nothing between the signal and the exit)"""
    caplog.set_level(logging.INFO, logger="kame.server")
    async with aiohttp.ClientSession() as http:
        async with running_server() as (url, _):  # (it shuts down while the client is still connected)
            ws = await http.ws_connect(url.replace("http", "ws") + "/api/chat")
            await ws.receive()  # the handshake byte: the session is open
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("shutting down")]
    assert said == ["shutting down: closing 1 session(s)"]
