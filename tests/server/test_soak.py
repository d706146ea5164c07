"""Bounded versions of the soak script's parts (kame.bench.soak): fuzzing with a live canary
session, connect/disconnect cycles back to baseline, and a short multi-session run."""

from __future__ import annotations

import contextlib

import aiohttp

import kame.bench.soak as soak
from kame.bench.soak import run_cycles, run_fuzz, run_sessions
from kame.runtime.base import AgentAudio, Meta
from kame.server.echo import EchoAgent

from .conftest import running_server


async def test_fuzz_gets_errors_or_closes_and_canary_unaffected():
    async with running_server(max_sessions=8, max_message_bytes=4096) as (url, server), aiohttp.ClientSession() as http:
        r = await run_fuzz(url, 600, http, server, seed=1, workers=3)
        assert r["messages"] == 600
        assert r["unanswered"] == 0  # every bad message got a 0x05 error or its connection was closed
        # (how many get an error before a 1008 close cuts their connection short depends on timing: 300 seen
        # once on a loaded machine, ~400 usually; every bad message's answer is checked by unanswered above)
        assert sum(r["errors"].values()) > 150
        assert set(r["closes"]) <= {"1000", "1006", "1008", "1009", "client_close"}
        assert r["canary_errors"] == 0 and r["canary_close"] == 1000
        assert r["canary_audio_s"] > 0.8 * r["canary_expected_s"]
        async with http.get(url + "/api/health") as h:
            assert (await h.json())["ok"]
        assert not server.connections


async def test_cycles_return_to_baseline():
    async with running_server() as (url, server), aiohttp.ClientSession() as http:
        r = await run_cycles(url, 120, http, server)
        assert r["connections_left"] == 0 and r["agent_sessions_left"] == 0
        assert r["tasks_after"] <= r["tasks_before"]


class _CountingEcho(EchoAgent):
    """An echo agent whose sessions follow each audio frame with Meta {"type": "produced",
    "frames": n}: a client that got marker n should have got audio frames 1..n before it."""

    async def open_session(self, session_id=None):
        session = await super().open_session(session_id)
        inner = session.outputs

        async def outputs():
            n = 0
            async with contextlib.aclosing(inner()) as outs:
                async for out in outs:
                    yield out
                    if isinstance(out, AgentAudio):
                        n += 1
                        yield Meta({"type": "produced", "frames": n})

        session.outputs = outputs
        return session


async def test_sessions_short(monkeypatch):
    # No loss, not speed (that is `kame bench soak`'s): the server sends each echo session's audio
    # frames in order and drops none. Frames still on their way when the client closes are lost
    # by design, so each session is checked up to the last frame the client was told was produced.
    results = []
    chat = soak.chat

    async def kept(*args, **kw):
        results.append(await chat(*args, **kw))
        return results[-1]

    monkeypatch.setattr(soak, "chat", kept)
    agent = _CountingEcho(max_sessions=4, delay_frames=2)
    async with running_server(agent) as (url, server), aiohttp.ClientSession() as http:
        r = await run_sessions(url, 4, 1.5, http)
    assert r["errors"] == 0 and r["refused"] == 0 and r["clean_closes"] == 4
    assert len(results) == 4
    for res in results:
        produced = [m["frames"] for m in res.metas if m.get("type") == "produced"]
        assert produced == list(range(1, len(produced) + 1))  # (metadata is never dropped)
        assert produced, "no audio frame reached the client"
        # all frames up to the last marker; at most one more (its marker was still on its way)
        assert len(res.audio_times) in (produced[-1], produced[-1] + 1)
        assert len(res.audio) == 1920 * len(res.audio_times)  # whole 80 ms frames
        assert not [m for m in res.metas if m.get("type") == "dropped"]


def test_spoken_questions_alternate_speech_and_answer_gaps():
    import numpy as np

    from kame.bench.soak import spoken_questions

    x = spoken_questions(9.6, seed=1)
    assert x.shape == (int(9.6 * 24000),) and x.dtype == np.float32
    loud = np.abs(x.reshape(-1, 1920)).max(1) > 0.05  # per 80 ms frame
    assert loud[:10].any()  # the first question is spoken at once ...
    gap = np.flatnonzero(~loud[np.argmax(loud):])
    assert len(gap) >= 40  # ... and followed by ~4 s of silence for the answer
