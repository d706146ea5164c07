"""kame serve: Opus decoded off the event loop (order, errors and the close kept), one app key for
the Server, WebSocket versions other than RFC 6455's refused, server.audio_burst_s."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import aiohttp
import numpy as np
import pytest
from aiohttp import WSMsgType, web

from kame.config import load_config
from kame.errors import ConfigError
from kame.runtime.clock import FakeClock, MonotonicClock
from kame.server import ops
from kame.server import protocol as P
from kame.server.app import SERVER_KEY, Server, ServerConfig, make_app, server_config_from
from kame.server.connection import Connection
from kame.server.client import chat_url
from kame.server.echo import EchoAgent

from .conftest import running_server, tone
from .test_guard import _sync
from .test_metrics_endpoint import UPGRADE, until


class _Recorder:
    """An agent whose sessions keep the audio pushed to them; outputs() ends on ``end``."""

    max_sessions = 4

    def __init__(self):
        self.sessions, self.end = [], asyncio.Event()

    async def start(self):
        pass

    async def stop(self):
        pass

    async def open_session(self, session_id=None):
        agent = self

        class Session:
            id, pushed = f"rec{len(self.sessions) + 1}", []

            async def push_audio(self, pcm):
                self.pushed.append(np.asarray(pcm))

            async def outputs(self):
                await agent.end.wait()
                return
                yield

            async def close(self):
                pass

        self.sessions.append(Session())
        return self.sessions[-1]


def _blocking_decode(monkeypatch):
    """P.OpusDecoder.decode made to wait for ``release`` (a threading.Event) after setting ``started``."""
    started, release, state = threading.Event(), threading.Event(), {"finished": 0, "threads": set()}
    real = P.OpusDecoder.decode

    def decode(self, *a):
        state["threads"].add(threading.current_thread().name)
        started.set()
        release.wait(10)  # (without the thread: the loop itself waits here, and the test fails, not hangs)
        try:
            return real(self, *a)
        finally:
            state["finished"] += 1
    monkeypatch.setattr(P.OpusDecoder, "decode", decode)
    return started, release, state


# ---- Opus decoded off the event loop --------------------------------------------------------------


async def test_a_blocked_opus_decode_leaves_the_loop_free_and_the_order_kept(monkeypatch):
    """(was: decoded on the event loop: a decode that takes long held every session, health too)"""
    started, release, state = _blocking_decode(monkeypatch)
    agent = _Recorder()
    async with running_server(agent=agent) as (url, server), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(chat_url(url))
        assert (await ws.receive(timeout=10)).data[0] == P.Kind.HANDSHAKE
        pcm = np.full(1920, 0.5, np.float32)
        await ws.send_bytes(P.encode(P.Kind.AUDIO, P.OpusEncoder().encode(tone(0.4))))
        await ws.send_bytes(P.encode(P.Kind.PCM, P.pcm16_encode(pcm)))  # behind the Opus message
        assert await asyncio.to_thread(started.wait, 10)
        async with http.get(url + "/api/health") as r:  # served while the decode waits
            assert r.status == 200 and (await r.json())["sessions"] == 1
        assert state["finished"] == 0 and agent.sessions[0].pushed == []  # the PCM waits its turn
        release.set()
        assert await _sync(ws, 7) == []
        pushed = agent.sessions[0].pushed
        assert len(pushed) == 2 and len(pushed[0]) > 1920  # the Opus first, then the PCM
        assert np.allclose(pushed[1], P.pcm16_decode(P.pcm16_encode(pcm)))
        assert all(name.startswith("kame-opus") for name in state["threads"])
        await ws.close()


async def test_bad_opus_gives_the_same_errors_from_the_decode_thread():
    """Corrupt packets under good checksums (found by the decoder, on its thread) and an empty
    message: the same 0x05 errors as the decoder's own, in order; the session goes on."""
    import random
    import struct

    rng = random.Random(1)
    sent = []
    for i, m in enumerate(P.OpusEncoder().frames(tone(1.6, 440, 0.3))):
        out = b""
        for page, _ in P.ogg_pages(m):
            if i >= 1:  # (the first message holds the headers)
                page = bytearray(page)
                for j in range(27 + page[26] + 1, len(page)):
                    page[j] = rng.randrange(256)
                struct.pack_into("<I", page, 22, 0)
                struct.pack_into("<I", page, 22, P.ogg_crc(bytes(page)))
            out += bytes(page)
        sent.append(out)
    sent.append(b"")
    expected, dec = [], P.OpusDecoder()  # what the decoder says of them, in turn
    for m in sent:
        try:
            dec.decode(m)
        except P.ProtocolError as exc:
            expected.append({"code": exc.code, "message": str(exc), "fatal": False})
    assert len(expected) >= 2 and expected[-1]["message"] == "empty audio message"
    async with running_server() as (url, server), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(chat_url(url))
        assert (await ws.receive(timeout=10)).data[0] == P.Kind.HANDSHAKE
        for m in sent:
            await ws.send_bytes(P.encode(P.Kind.AUDIO, m))
        assert await _sync(ws, 7) == expected
        assert next(iter(server.connections)).errors == len(expected)
        await ws.close()


async def test_a_reader_cancelled_mid_decode_waits_for_it_before_the_socket_closes(monkeypatch):
    """No decode outlives its connection: the close waits for the one under way."""
    started, release, state = _blocking_decode(monkeypatch)
    first = P.encode(P.Kind.AUDIO, P.OpusEncoder().encode(tone(0.2)))
    closes, forever = [], asyncio.Event()

    class Ws:
        closed = False

        async def receive(self):
            if first_sent.is_set():
                await forever.wait()
            first_sent.set()
            return SimpleNamespace(type=WSMsgType.BINARY, data=first)

        async def send_bytes(self, data):
            pass

        async def close(self, code, message):
            closes.append(conn.decoding.done())
            self.closed = True

    first_sent = asyncio.Event()
    agent = _Recorder()
    server = Server(agent, ServerConfig(), MonotonicClock())
    conn = Connection(server, Ws(), await agent.open_session(), pcm_out=True)
    run = asyncio.create_task(conn.run())
    try:
        assert await asyncio.to_thread(started.wait, 10)
        reader = next(t for t in asyncio.all_tasks() if t.get_name() == "ws-read-rec1")
        agent.end.set()  # the session ends: the reader is cancelled while its decode waits
        await until(reader.done, "the reader's cancellation")
        for _ in range(100):  # (loop turns, no time: the close would come within a few)
            await asyncio.sleep(0)
        assert not closes and not run.done()  # (was: closed at once, the decode still running)
        release.set()
        await asyncio.wait_for(run, 10)
        assert closes == [True] and state["finished"] == 1
    finally:
        release.set()
        forever.set()
        await asyncio.wait([run], timeout=10)
        server.opus_pool.shutdown(wait=True)


async def test_the_app_shuts_its_decode_threads_down_at_cleanup():
    app = make_app(EchoAgent(max_sessions=1), ServerConfig())
    server = app[SERVER_KEY]
    assert server.opus_pool.submit(lambda: 7).result(10) == 7
    runner = web.AppRunner(app)
    await runner.setup()
    await runner.cleanup()
    with pytest.raises(RuntimeError):  # shut down: nothing can be queued on it any more
        server.opus_pool.submit(lambda: 7)


# ---- one app key -------------------------------------------------------------------------------


def test_the_server_is_stored_under_one_app_key():
    app = make_app(EchoAgent(max_sessions=1), ServerConfig(trusted_proxy="127.0.0.1"))
    assert SERVER_KEY is ops.SERVER_KEY
    assert [k for k in app if app[k] is app[SERVER_KEY]] == [SERVER_KEY]
    assert len(app) == 1  # (was: the Server under two keys and its trusted proxies under a third)


async def test_the_access_log_and_the_host_guard_read_the_one_key(caplog):
    import logging

    from .test_log_safety import kame_server

    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    async with kame_server(trusted_proxy="127.0.0.1") as port, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}"
        async with http.get(url + "/index.html", headers={"X-Forwarded-For": "203.0.113.9"}) as r:
            assert r.status == 200
        async with http.get(url + "/index.html", headers={"Host": "evil.example"}) as r:
            assert r.status == 403  # the guard found the server (a loopback bind)
    await until(lambda: "203.0.113.9" in caplog.text, "the access line")
    assert '203.0.113.9 "GET /index.html" 200' in caplog.text  # the client behind the trusted proxy


# ---- WebSocket versions --------------------------------------------------------------------------


async def test_websocket_versions_other_than_13_are_refused_with_426():
    """(was: aiohttp accepted the drafts' versions 7 and 8 as if they were RFC 6455)"""
    async with running_server() as (url, server), aiohttp.ClientSession() as http:
        for version in ("8", "7", "99"):
            async with http.get(chat_url(url), headers={**UPGRADE, "Sec-WebSocket-Version": version}) as r:
                body = await r.json()
                assert r.status == 426 and r.headers["Sec-WebSocket-Version"] == "13", version
                assert body["error"] == "websocket_version" and "13" in body["message"] and repr(version) in body["message"]
        assert server.total_sessions == 0
        async with http.get(chat_url(url), headers={k: v for k, v in UPGRADE.items() if k != "Sec-WebSocket-Version"}) as r:
            assert r.status == 400 and (await r.json())["error"] == "not_websocket"  # no version at all
        async with http.get(chat_url(url)) as r:  # no upgrade
            assert r.status == 400 and (await r.json())["error"] == "not_websocket"
        ws = await http.ws_connect(chat_url(url))  # 13, as every client sends it
        assert (await ws.receive(timeout=10)).data[0] == P.Kind.HANDSHAKE
        await ws.close()


# ---- server.audio_burst_s --------------------------------------------------------------------------


def test_audio_burst_s_is_a_checked_server_key():
    assert server_config_from(load_config(None, ["server.audio_burst_s=0.5"]).server).audio_burst_s == 0.5
    assert load_config(None, []).server.audio_burst_s == 3.0 == server_config_from({}).audio_burst_s
    assert server_config_from({"audio_burst_s": 1}).audio_burst_s == 1.0
    for bad in ("0", "-1", "0.01", "inf", "x"):
        with pytest.raises(ConfigError, match="server.audio_burst_s"):
            load_config(None, [f"server.audio_burst_s={bad}"])
    for bad in (0, -1.0, 0.01, float("inf"), float("nan"), "3", True, None):
        with pytest.raises(ConfigError, match=r"server.audio_burst_s: expected a number of seconds, at least 0.08"):
            server_config_from({"audio_burst_s": bad})


async def test_audio_burst_s_sets_the_budget():
    """The key sets how far ahead of real time a client's audio is taken (was: 3 s, fixed)."""
    clock = FakeClock()
    app = make_app(EchoAgent(max_sessions=2, delay_frames=2), ServerConfig(audio_burst_s=1.0), clock=clock,
                   manage_agent=True)
    from ..local_http import serving

    one_s = P.encode(P.Kind.PCM, P.pcm16_encode(tone(1.0)))
    async with serving(app) as (url, _), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(chat_url(url))
        assert (await ws.receive(timeout=10)).data[0] == P.Kind.HANDSHAKE
        for _ in range(3):  # the clock stands still: the first second spends the burst
            await ws.send_bytes(one_s)
        assert await _sync(ws, 7) == []
        conn = next(iter(app[SERVER_KEY].connections))
        assert conn.budget.burst_s == 1.0 and conn.budget.dropped_s == pytest.approx(2.0)  # (3 s: none dropped)
        await ws.close()
