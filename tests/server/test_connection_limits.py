"""Connections a client opens but does not use: a request's headers must arrive within
server.header_timeout_s (a WebSocket session idle longer stays), connections beyond
server.max_connections(_per_client) are refused as they are accepted (kame.server.app's
LimitedSocket), and asyncio's "out of file descriptors" is said once in a while without a
traceback (kame.server.httplog.accept_errors)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import aiohttp
import pytest
from aiohttp import web

from kame.errors import ConfigError
from kame.server.app import SERVER_KEY, ServerConfig, limited_socket, make_app
from kame.server.client import chat_url
from kame.server.echo import EchoAgent
from kame.server.httplog import accept_errors
from kame.server.ops import listen_socket

HALF_SENT = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n"  # (the headers never end)


@contextlib.asynccontextmanager
async def limited_server(**cfg):
    """kame serve's app on its own kind of listening socket (main's), on a free loopback port."""
    cfg = ServerConfig(**cfg)
    app = make_app(EchoAgent(max_sessions=4, delay_frames=2), cfg, manage_agent=True)
    sock = limited_socket(listen_socket("127.0.0.1", 0), cfg)
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app[SERVER_KEY], sock
    finally:
        await runner.cleanup()


async def _closed_by_server(s: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``s`` (EOF or a reset) within ``within_s``."""
    loop = asyncio.get_running_loop()
    s.setblocking(False)
    try:
        data = await asyncio.wait_for(loop.sock_recv(s, 4096), within_s)
    except asyncio.TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 4")  # (an answer then the close is one too)


async def _connect(url: str, source: str = "127.0.0.1") -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    s = socket.socket()
    s.bind((source, 0))
    s.setblocking(False)
    await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
    return s


async def test_a_half_sent_request_is_closed_while_an_idle_websocket_session_stays():
    async with limited_server(header_timeout_s=0.3, idle_timeout_s=0) as (url, server, _), \
            aiohttp.ClientSession() as http:
        ws = await http.ws_connect(chat_url(url))
        await ws.receive(timeout=10)  # (the handshake)
        half = await _connect(url)
        await asyncio.get_running_loop().sock_sendall(half, HALF_SENT)
        try:
            assert await _closed_by_server(half, within_s=10)  # (was: never)
        finally:
            half.close()
        await asyncio.sleep(0.6)  # the session: idle twice the header timeout, more than that since it opened
        assert not ws.closed and len(server.connections) == 1
        await ws.send_bytes(b"\x00")  # (still answered: a malformed message's error)
        assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY
        await ws.close()


async def test_connections_beyond_the_per_client_cap_are_refused_while_another_address_is_served(caplog):
    caplog.set_level(logging.WARNING, "kame.server")
    async with limited_server(max_connections_per_client=3) as (url, server, sock), aiohttp.ClientSession() as http:
        held = [await _connect(url) for _ in range(3)]
        loop = asyncio.get_running_loop()
        for s in held:
            await loop.sock_sendall(s, HALF_SENT)
        extra = await _connect(url)
        try:
            assert await _closed_by_server(extra, within_s=10)  # refused at once (429)
            other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession(connector=other) as http2:
                async with http2.get(url + "/api/health") as resp:
                    assert resp.status == 200
        finally:
            for s in held + [extra]:
                s.close()
        assert "refused a connection from 127.0.0.1" in caplog.text and "max_connections_per_client" in caplog.text
        for _ in range(250):  # once its connections closed, the first address is served again
            async with http.get(url + "/api/health") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.02)
        assert resp.status == 200


async def test_connections_beyond_the_overall_cap_are_refused_with_503():
    async with limited_server(max_connections=2, max_connections_per_client=0) as (url, _, _sock):
        held = [await _connect(url, f"127.0.0.{i + 2}") for i in range(2)]
        extra = await _connect(url, "127.0.0.9")
        try:
            answer = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(extra, 4096), 10)  # (unasked)
            assert answer.startswith(b"HTTP/1.1 503") and b"server.max_connections" in answer
        finally:
            for s in held + [extra]:
                s.close()


def test_out_of_file_descriptors_is_one_line_a_while_without_a_traceback(caplog):
    now = [0.0]
    handler = accept_errors(ServerConfig(), clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        ctx = {"message": "socket.accept() out of system resource", "exception": OSError(24, "Too many open files")}
        with caplog.at_level(logging.DEBUG):
            for _ in range(100):
                handler(loop, dict(ctx))
            now[0] = 61.0
            handler(loop, dict(ctx))
    finally:
        loop.close()
    lines = [r for r in caplog.records if "cannot accept new connections" in r.getMessage()]
    assert len(lines) == 2 and all(r.exc_info is None and r.exc_text is None for r in lines)
    assert "Too many open files" in lines[0].getMessage() and "ulimit -n" in lines[0].getMessage()
    assert "server.max_connections" in lines[0].getMessage() and "99 more" in lines[1].getMessage()
    assert len(caplog.records) == 2


def test_the_connection_limits_are_checked_config_settings():
    from kame.config import load_config

    server = load_config(None, []).server
    assert (server.header_timeout_s, server.max_connections, server.max_connections_per_client) == (20.0, 256, 32)
    for bad in ("header_timeout_s=0", "max_connections=0", "max_connections_per_client=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, [f"server.{bad}"])
    with pytest.raises(ConfigError, match=r"max_connections_per_client \(2\) is below .*max_sessions_per_client"):
        load_config(None, ["server.max_connections_per_client=2", "server.max_sessions_per_client=3"])
