"""`kame serve --mode cascade` shutting down: a client cut off mid-speech gets its session's final
`stats` before the 1001 close, as docs/protocol.md "Stopping" promises (was: the session's close
waited up to CLOSE_GRACE_S, 5 s, for the STT to decode the speech under way, the server closed
the socket after its SHUTDOWN_FLUSH_S, 2 s: 1001 and no final stats). A shutdown's close asks the
STT for no last transcript (CascadeSession.skip_flush), and cuts short a close after END_INPUT
that waits for one. END_INPUT's close without a shutdown still waits for it."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np

from kame.backend.types import Transcript, Word
from kame.cascade import session as cascade_session
from kame.config import load_config
from kame.runtime.clock import MonotonicClock
from kame.server import protocol as P
from kame.server.client import chat_url

from ..cascade.fakes import FakeLLM, FakeTTS, FakeVAD
from ..runtime.fakes import wait_for
from .conftest import running_server


class DecodingSTT:
    """Takes the frames; once they end it decodes a last final that takes until ``release`` (a
    whisper decode of the speech the client was cut off in, on a busy machine). ``flushes``: the
    times its frames ended (a last decode asked for)."""

    name = "decoding-stt"

    def __init__(self) -> None:
        self.frames = self.flushes = 0
        self.release = asyncio.Event()

    async def stream(self, frames):
        async for _ in frames:
            self.frames += 1
        self.flushes += 1
        await self.release.wait()
        yield Transcript((Word("cut", 0.0, 0.3), Word("off", 0.3, 0.6)), True, 0.6)


def cascade(stt):
    from kame.cascade.agent import build_cascade_agent

    clock = MonotonicClock()
    cfg = load_config(None, {"mode": "cascade", "runtime.vad": "energy"})
    return build_cascade_agent(cfg, clock=clock, components={"stt": stt, "llm": FakeLLM(clock, ["Hi."]),
                                                             "tts": FakeTTS(clock), "vad_factory": FakeVAD})


async def read_all(ws) -> tuple[list[dict], int]:
    """The metadata the server sent until it closed, and its close code."""
    metas = []
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY and msg.data[0] == P.Kind.METADATA:
            metas.append(json.loads(msg.data[1:]))
    return metas, ws.close_code


def finals(metas: list[dict], kind: str) -> list[dict]:
    return [m for m in metas if m.get("type") == kind and m.get("final")]


async def speak(http, url, stt):
    """A client that has sent 0.4 s of speech the STT took: (its socket, its reader task)."""
    ws = await http.ws_connect(chat_url(url, pcm=True))
    reader = asyncio.ensure_future(read_all(ws))
    pcm = (0.3 * np.sin(np.arange(9600) / 24000 * 2 * np.pi * 220)).astype(np.float32)
    await ws.send_bytes(P.encode(P.Kind.PCM, P.pcm16_encode(pcm)))
    await wait_for(lambda: stt.frames >= 5)
    return ws, reader


async def test_a_shutdown_sends_the_final_stats_of_a_client_cut_off_mid_speech(monkeypatch):
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)  # (the decode would take longer than the flush)
    stt = DecodingSTT()
    async with running_server(cascade(stt)) as (url, server), aiohttp.ClientSession() as http:
        _, reader = await speak(http, url, stt)
        try:
            await server.on_shutdown(None)  # (what aiohttp calls at SIGTERM)
            metas, code = await asyncio.wait_for(reader, 10)
        finally:
            stt.release.set()  # (without the fix the session's close still waits for it)
    assert code == 1001
    assert len(finals(metas, "stats")) == 1  # (was: none, only the periodic ones)
    assert stt.flushes == 0  # no last decode was asked for: nobody would hear a reply to it


async def test_a_shutdown_cuts_short_a_close_after_end_input_that_waits_for_the_last_transcript(monkeypatch):
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)
    stt = DecodingSTT()
    async with running_server(cascade(stt)) as (url, server), aiohttp.ClientSession() as http:
        ws, reader = await speak(http, url, stt)
        try:
            await ws.send_bytes(P.encode(P.Kind.CONTROL, bytes([P.Control.END_INPUT])))
            await wait_for(lambda: stt.flushes == 1)  # END_INPUT's close waits for the STT's last final
            await server.on_shutdown(None)
            metas, code = await asyncio.wait_for(reader, 10)
        finally:
            stt.release.set()
    assert code == 1001 and len(finals(metas, "stats")) == 1  # (was: 1001 after 2 s, no final stats)


async def test_end_input_without_a_shutdown_still_gets_the_last_transcript(monkeypatch):
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)
    stt = DecodingSTT()
    async with running_server(cascade(stt)) as (url, _), aiohttp.ClientSession() as http:
        ws, reader = await speak(http, url, stt)
        await ws.send_bytes(P.encode(P.Kind.CONTROL, bytes([P.Control.END_INPUT])))
        await wait_for(lambda: stt.flushes == 1)
        stt.release.set()
        metas, code = await asyncio.wait_for(reader, 10)
    assert code == 1000
    assert [m["text"] for m in finals(metas, "transcript")] == ["cut off"]
    assert metas[-1]["type"] == "stats" and metas[-1]["final"]  # (after it)
