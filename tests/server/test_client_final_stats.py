"""`kame client`'s totals (frames, missed deadlines, input dropped) are the session's final ones:
the client ends its input with control 4 (END_INPUT), the server closes the session and sends what
it still has, its final "stats" last, then closes normally (was: the client closed first, the final
stats was never sent, and its totals were those of the latest periodic stats, up to a second old)."""

from __future__ import annotations

import asyncio

from kame.runtime.base import Meta
from kame.server import protocol as P
from kame.server.client import chat

from .conftest import running_server, tone


class TotalsSession:
    """Counts the audio messages it gets as "frames"; a periodic stats only after the first, the
    final one at close (as kame's sessions do)."""

    def __init__(self, sid):
        self.id, self.frames, self.closed, self.queue = sid, 0, False, asyncio.Queue()

    def meta(self, final):
        return Meta({"type": "stats", "session": self.id, "final": final, "frames": self.frames,
                     "missed_deadlines": self.frames - 1, "dropped_input_s": 0.04 * self.frames})

    async def push_audio(self, pcm):
        self.frames += 1
        if self.frames == 1:
            self.queue.put_nowait(self.meta(False))

    async def outputs(self):
        while (item := await self.queue.get()) is not None:
            yield item

    async def close(self):
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(self.meta(True))
            self.queue.put_nowait(None)


class TotalsAgent:
    max_sessions = 2

    def __init__(self):
        self.sessions = []

    async def start(self):
        pass

    async def stop(self):
        pass

    async def open_session(self, session_id=None):
        self.sessions.append(TotalsSession(f"t{len(self.sessions) + 1}"))
        return self.sessions[-1]


async def test_client_totals_are_the_sessions_final_stats():
    agent = TotalsAgent()
    async with running_server(agent) as (url, _):
        res = await asyncio.wait_for(chat(url, tone(0.4), pcm_mode=True, realtime=False, tail_s=0.2), 20)
    (s,) = agent.sessions
    assert s.frames > 3
    assert res.missed_deadlines == (s.frames - 1, s.frames)  # (was: (0, 1), the periodic stats)
    assert abs(res.dropped_input_s - 0.04 * s.frames) < 1e-9
    assert [m["final"] for m in res.metas if m.get("type") == "stats"] == [False, True]
    assert res.failure() is None and res.close_code == 1000 and res.errors == [] and res.ends_input


async def test_a_client_that_just_closes_still_ends_normally():
    # (Moshi clients send no END_INPUT: their close ends the session, as before)
    import aiohttp

    assert P.parse_control(bytes([4])) == P.Control.END_INPUT
    agent = TotalsAgent()
    async with running_server(agent) as (url, _), aiohttp.ClientSession() as http:
        async with http.ws_connect(url.replace("http", "ws") + "/api/chat") as ws:
            assert (await ws.receive()).data[:1] == b"\x00"  # the handshake
            await ws.send_bytes(P.encode(P.Kind.PCM, P.pcm16_encode(tone(0.08))))
            await ws.close()
            assert ws.close_code == 1000
        for _ in range(100):
            if agent.sessions[0].closed:
                break
            await asyncio.sleep(0.01)
    assert agent.sessions[0].closed


class NeverEndingSession(TotalsSession):
    """A session whose close() never ends its outputs (a plugin agent's bug)."""

    async def close(self):
        self.closed = True


class NeverEndingAgent(TotalsAgent):
    async def open_session(self, session_id=None):
        self.sessions.append(NeverEndingSession(f"n{len(self.sessions) + 1}"))
        return self.sessions[-1]


async def test_after_end_input_an_agent_that_never_ends_the_session_is_closed_on_time(monkeypatch):
    """(was: no bound of the server's own: the idle watchdog closed it with 1008 blaming the client,
    or with idle_timeout_s = 0 it stayed open)"""
    import aiohttp

    import kame.server.connection as connection

    monkeypatch.setattr(connection, "END_INPUT_GRACE_S", 0.3, raising=False)
    agent = NeverEndingAgent()
    async with running_server(agent, idle_timeout_s=0) as (url, _), aiohttp.ClientSession() as http:
        async with http.ws_connect(url.replace("http", "ws") + "/api/chat") as ws:
            assert (await ws.receive()).data[:1] == b"\x00"  # the handshake
            await ws.send_bytes(P.encode(P.Kind.PCM, P.pcm16_encode(tone(0.08))))
            await ws.send_bytes(P.encode(P.Kind.CONTROL, bytes([int(P.Control.END_INPUT)])))
            errors = []
            while (msg := await asyncio.wait_for(ws.receive(), 10)).type == aiohttp.WSMsgType.BINARY:
                if msg.data[:1] == b"\x05":
                    errors.append(P.parse_json(msg.data[1:])["code"])
            assert errors == ["end_timeout"] and ws.close_code == 1000
    assert agent.sessions[0].closed


async def test_a_shutdown_sends_the_sessions_final_stats_before_its_close():
    """(QA) SIGTERM / Ctrl-C: the server closes each live session as after END_INPUT, so the client
    gets its final "stats" before the 1001 close (was: closed at once, no final stats: the client's
    totals were those of the latest periodic stats, up to a second old)."""
    import json

    import aiohttp

    async def read_to_the_close(ws) -> tuple[list[dict], object]:
        stats = []
        while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY:
            kind, payload = P.decode(msg.data)
            if kind == P.Kind.METADATA and (meta := json.loads(payload)).get("type") == "stats":
                stats.append(meta)
            if kind == P.Kind.PING:
                pong.set()
        return stats, msg

    agent, pong = TotalsAgent(), asyncio.Event()
    async with aiohttp.ClientSession() as http:
        async with running_server(agent) as (url, server):
            ws = await http.ws_connect(url.replace("http", "ws") + "/api/chat?pcm=1")
            reading = asyncio.create_task(read_to_the_close(ws))
            for _ in range(3):
                await ws.send_bytes(P.encode(P.Kind.PCM, P.pcm16_encode(tone(0.08))))
            await ws.send_bytes(P.encode(P.Kind.PING, b"x"))
            await asyncio.wait_for(pong.wait(), 10)  # (the audio was taken) ... then the server shuts down
        stats, close = await reading
        assert (ws.close_code, close.extra) == (1001, "server shutting down")
    (s,) = agent.sessions
    assert s.frames == 3 and [m["final"] for m in stats] == [False, True] and stats[-1]["frames"] == 3
    assert server.metrics.closed["shutdown"] == 1
