"""After END_INPUT (control 4) the session first steps the client audio it still buffers (its
input_backlog_s), for at most connection.END_INPUT_STEP_S, then closes; what it could not step is
counted in the final stats' dropped_input_s, so `kame client --fast` gets totals that add up (was:
the backlog was dropped at once, unheard, counted nowhere: 2 s sent, 0 s heard, 0 s dropped).
And server.send_timeout_s = 0 means "never reset", as idle_timeout_s = 0 and max_session_s = 0 do
(was: a client was reset at its first send that waited at all)."""

from __future__ import annotations

import asyncio
import types

import numpy as np
import pytest

from kame.runtime.clock import FakeClock
from kame.server import connection
from kame.server.client import chat
from kame.server.settings import ServerConfig

from .conftest import running_server, tone


def heard_s(res) -> float:
    """Seconds of the tone (amplitude 0.3) in the agent's audio: its 80 ms frames that carry it."""
    frames = res.audio[: len(res.audio) // 1920 * 1920].reshape(-1, 1920)
    return float(np.sum(np.sqrt(np.mean(frames**2, axis=1)) > 0.1)) * 0.08


async def test_end_input_steps_the_buffered_audio_before_the_close():
    async with running_server() as (url, _):  # (the echo agent: it plays the user's audio back)
        res = await asyncio.wait_for(chat(url, tone(1.6), pcm_mode=True, realtime=False, tail_s=0), 20)
    (final,) = [m for m in res.metas if m.get("type") == "stats" and m.get("final")]
    assert res.close_code == 1000 and res.errors == []
    assert final["dropped_input_s"] == 0
    assert heard_s(res) > 1.4  # (was: 0, the 1.6 s sent at once dropped unheard)


async def test_a_last_part_frame_is_stepped_not_counted_as_dropped():
    """(was: a PCM client's input that is not whole 80 ms frames, nearly any, left a part-frame
    counted as dropped at the close: kame client warned that the network held audio back)"""
    async with running_server() as (url, _):
        res = await asyncio.wait_for(chat(url, tone(1.03), pcm_mode=True, realtime=False, tail_s=0), 20)
    (final,) = [m for m in res.metas if m.get("type") == "stats" and m.get("final")]
    assert res.close_code == 1000 and final["dropped_input_s"] == 0 and res.dropped_input_s == 0


async def test_what_is_not_stepped_in_time_is_counted(monkeypatch):
    monkeypatch.setattr(connection, "END_INPUT_STEP_S", 0.4)
    async with running_server() as (url, _):
        res = await asyncio.wait_for(chat(url, tone(2.0), pcm_mode=True, realtime=False, tail_s=0), 20)
    (final,) = [m for m in res.metas if m.get("type") == "stats" and m.get("final")]
    heard, dropped = heard_s(res), final["dropped_input_s"]
    assert dropped > 0.8 and heard > 0.2  # (was: dropped 0, heard 0)
    assert heard + dropped == pytest.approx(2.0, abs=0.2)  # what was sent: heard or counted


async def test_a_shutdown_while_the_backlog_is_stepped_closes_the_session_at_once():
    async with running_server() as (url, server):
        client = asyncio.ensure_future(chat(url, tone(2.0), pcm_mode=True, realtime=False, tail_s=0))
        while not any(c.stepping_input for c in server.connections):
            await asyncio.sleep(0.01)
        (conn,) = server.connections
        conn.shut_down()
        await asyncio.wait_for(conn.session_closing, 1)  # (not END_INPUT_STEP_S later)
        res = await asyncio.wait_for(client, 20)
    (final,) = [m for m in res.metas if m.get("type") == "stats" and m.get("final")]
    assert res.close_code == 1001 and final["dropped_input_s"] > 1.0


class _Backlogged:
    """A session that always has 1 s of input to step (it never steps it): only its close ends it."""

    input_backlog_s = 1.0

    def __init__(self):
        self.id, self.queue = "b1", asyncio.Queue()

    async def push_audio(self, pcm):
        pass

    async def outputs(self):
        while (item := await self.queue.get()) is not None:
            yield item

    async def close(self):
        self.queue.put_nowait(None)


class _BackloggedAgent:
    max_sessions = 1

    async def start(self):
        pass

    async def stop(self):
        pass

    async def open_session(self, session_id=None):
        return _Backlogged()


async def test_a_client_that_closes_while_the_backlog_is_stepped_ends_it_at_once(monkeypatch):
    import aiohttp

    from kame.server import protocol as P

    monkeypatch.setattr(connection, "END_INPUT_STEP_S", 60.0)
    async with running_server(agent=_BackloggedAgent()) as (url, server), aiohttp.ClientSession() as http:
        async with http.ws_connect(url.replace("http", "ws") + "/api/chat") as ws:
            await ws.send_bytes(P.encode(P.Kind.CONTROL, bytes([P.Control.END_INPUT])))
            while not any(c.stepping_input for c in server.connections):
                await asyncio.sleep(0.01)
            (conn,) = server.connections
        await asyncio.wait_for(conn.session_closing, 10)  # (not END_INPUT_STEP_S later)
        assert not conn.stepping_input and conn.client_closed


class _Session:
    id = "s1"


def _watching(send_timeout_s: float):
    clock = FakeClock(100.0)
    server = types.SimpleNamespace(cfg=ServerConfig(send_timeout_s=send_timeout_s, idle_timeout_s=0), clock=clock)
    conn = connection.Connection(server, ws=None, session=_Session(), pcm_out=True)
    conn.send_started = clock.now() - 50.0  # a send waiting for 50 s
    return conn, asyncio.ensure_future(conn._watch())


async def test_send_timeout_zero_never_resets_a_client():
    conn, watch = _watching(0.0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not watch.done() and conn.ended_by is None  # (was: reset at the first check)
    watch.cancel()
    conn, watch = _watching(10.0)  # a limit still resets
    await asyncio.wait_for(watch, 1)
    assert conn.close_reason == "client stopped reading"
