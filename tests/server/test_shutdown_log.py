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


async def test_a_session_closed_by_the_shutdown_is_logged_as_such(caplog):
    """(was: "the connection was lost", though the server closed it with 1001 "server shutting down")"""
    caplog.set_level(logging.INFO, logger="kame.server")
    async with aiohttp.ClientSession() as http:
        async with running_server() as (url, server):
            ws = await http.ws_connect(url.replace("http", "ws") + "/api/chat")
            await ws.receive()  # the handshake byte: the session is open
    closed = [r.getMessage() for r in caplog.records if " closed after " in r.getMessage()]
    assert len(closed) == 1
    assert "closed by the server shutting down (1001 server shutting down)" in closed[0]
    assert "lost" not in closed[0]
    assert server.metrics.closed["shutdown"] == 1
