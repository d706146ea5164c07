"""kame serve: the agent's audio is Opus-encoded off the event loop, on the server's Opus threads
(was: on the loop), its pages still sent in order; an encoder failure is the session's non-fatal
error; a session closed mid-encode waits for it."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from types import SimpleNamespace

import aiohttp
from aiohttp import WSMsgType

from kame.runtime.base import AgentAudio, AgentText
from kame.runtime.clock import MonotonicClock
from kame.server import protocol as P
from kame.server.app import Server, ServerConfig
from kame.server.connection import Connection
from kame.server.client import chat_url

from .conftest import running_server, tone
from .test_guard import _sync
from .test_metrics_endpoint import until

# 80 ms, 80 ms, then a 400 ms chunk (sent as 5 messages) and two 40 ms halves of a frame: 8 frames
CHUNKS = [tone(0.08, 300), tone(0.08, 500), tone(0.4, 700), tone(0.04, 900), tone(0.04, 900)]


class _Scripted:
    """An agent whose session says ``chunks`` then "done", then stays open until closed."""

    max_sessions = 2

    def __init__(self, chunks):
        self.chunks, self.sessions = chunks, []

    async def start(self):
        pass

    async def stop(self):
        pass

    async def open_session(self, session_id=None):
        chunks = self.chunks

        class Session:
            id, closed = f"enc{len(self.sessions) + 1}", False

            async def push_audio(self, pcm):
                pass

            async def outputs(self):
                for c in chunks:
                    yield AgentAudio(c, 0.0)
                yield AgentText("done", 0.0)
                await asyncio.Event().wait()

            async def close(self):
                self.closed = True

        self.sessions.append(Session())
        return self.sessions[-1]


def _record_frames(monkeypatch, fail_calls=()):
    """P.OpusEncoder.frames made to record the thread of each call (and raise on the calls numbered
    in ``fail_calls``, from 1)."""
    threads, real = [], P.OpusEncoder.frames

    def frames(self, pcm):
        threads.append(threading.current_thread())
        if len(threads) in fail_calls:
            raise ValueError("sphn: encoder failed")
        return real(self, pcm)
    monkeypatch.setattr(P.OpusEncoder, "frames", frames)
    return threads


async def _until_done(ws) -> tuple[list[bytes], list[dict]]:
    """The 0x01 payloads and 0x05 errors received up to the agent's "done" text."""
    audio, errors = [], []
    while True:
        kind, payload = P.decode((await ws.receive(timeout=10)).data)
        if kind == P.Kind.AUDIO:
            audio.append(payload)
        elif kind == P.Kind.ERROR:
            errors.append(json.loads(payload))
        elif kind == P.Kind.TEXT and payload == b"done":
            return audio, errors


async def test_agent_audio_is_encoded_off_the_loop_and_its_pages_sent_in_order(monkeypatch):
    ref = P.OpusEncoder()
    expected = [m for c in CHUNKS for m in ref.frames(c)]  # one message per 80 ms frame
    assert len(expected) == 8
    threads = _record_frames(monkeypatch)
    async with running_server(agent=_Scripted(CHUNKS)) as (url, server), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(chat_url(url))
        audio, errors = await _until_done(ws)
        assert errors == [] and audio == expected  # byte for byte, in order
        dec = P.OpusDecoder()
        assert sum(len(dec.decode(m)) for m in audio) == 8 * P.OPUS_FRAME
        assert len(threads) == len(CHUNKS)
        loop_thread = threading.current_thread()
        assert all(t is not loop_thread and t.name.startswith("kame-opus") for t in threads)  # (was: the loop's)
        await ws.close()


async def test_an_encoder_failure_is_the_sessions_error_and_the_session_goes_on(monkeypatch, caplog):
    """As a decode's failure: the chunk dropped, the encoder reset (a new stream), a non-fatal 0x05;
    the session answers on (was: the pump died, internal_error and the connection closed). A run of
    failures is said once (not 12 times a second), and its end is logged."""
    said_chunks = [CHUNKS[0], CHUNKS[1], CHUNKS[2], CHUNKS[1]]
    first, fourth = list(P.OpusEncoder().frames(said_chunks[0])), list(P.OpusEncoder().frames(said_chunks[3]))
    assert len(first) == len(fourth) == 1
    _record_frames(monkeypatch, fail_calls=(2, 3))
    agent = _Scripted(said_chunks)
    with caplog.at_level(logging.WARNING, "kame.server"):
        async with running_server(agent=agent) as (url, server), aiohttp.ClientSession() as http:
            ws = await http.ws_connect(chat_url(url))
            audio, errors = await _until_done(ws)
            assert audio == first + fourth  # the 2nd and 3rd chunks dropped; the 4th a new stream (headers first)
            assert len(errors) == 1 and errors[0]["code"] == "agent_error" and not errors[0]["fatal"]
            assert "could not Opus-encode" in errors[0]["message"] and "ValueError" in errors[0]["message"]
            assert await _sync(ws, 3) == []  # still open and answering
            assert next(iter(server.connections)).encode_errors == 2
            await ws.close()
    said = [r.getMessage() for r in caplog.records]
    assert sum("Opus encoding of the agent's audio failed" in m for m in said) == 1, said
    assert any("Opus encoding works again (2 chunk(s) dropped" in m for m in said), said


async def test_a_session_closed_mid_encode_waits_for_it_before_the_socket_closes(monkeypatch, caplog):
    """No encode outlives its connection, and its end raises nothing: the client's close cancels
    the pump mid-encode; run() waits for the encode, then closes."""
    started, release, finished = threading.Event(), threading.Event(), []
    real = P.OpusEncoder.frame_pages

    def frame_pages(self, pcm):
        started.set()
        release.wait(10)  # (were it on the loop: the loop would wait here, and the test fail, not hang)
        try:
            return real(self, pcm)
        finally:
            finished.append(threading.current_thread().name)
    monkeypatch.setattr(P.OpusEncoder, "frame_pages", frame_pages)
    closes, client_closes = [], asyncio.Event()

    class Ws:
        closed = False

        async def receive(self):
            await client_closes.wait()
            return SimpleNamespace(type=WSMsgType.CLOSE, data=1000, extra="bye")

        async def send_bytes(self, data):
            pass

        async def close(self, code, message):
            closes.append(conn.encoding.done())
            self.closed = True

    agent = _Scripted(CHUNKS[:1])
    server = Server(agent, ServerConfig(), MonotonicClock())
    session = await agent.open_session()
    conn = Connection(server, Ws(), session, pcm_out=False)
    run = asyncio.create_task(conn.run())
    try:
        with caplog.at_level(logging.ERROR, "kame.server"):
            assert await asyncio.to_thread(started.wait, 10)
            client_closes.set()  # the client closes: its session's pump is cancelled mid-encode
            await until(lambda: session.closed, "the session's close")
            for _ in range(100):  # (loop turns, no time: the close would come within a few)
                await asyncio.sleep(0)
            assert session.closed and conn.pump.cancelled() and not run.done() and not closes
            release.set()
            await asyncio.wait_for(run, 10)
        assert closes == [True] and len(finished) == 1 and finished[0].startswith("kame-opus")
        assert conn.ended_by is None and conn.encode_errors == 0 and not caplog.records
    finally:
        release.set()
        client_closes.set()
        await asyncio.wait([run], timeout=10)
        server.opus_pool.shutdown(wait=True)
