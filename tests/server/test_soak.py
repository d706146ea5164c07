"""Bounded versions of the soak script's parts (kame.bench.soak): fuzzing with a live canary
session, connect/disconnect cycles back to baseline, and a short multi-session run."""

from __future__ import annotations

import aiohttp

from kame.bench.soak import run_cycles, run_fuzz, run_sessions

from .conftest import running_server


async def test_fuzz_gets_errors_or_closes_and_canary_unaffected():
    async with running_server(max_sessions=8, max_message_bytes=4096) as (url, server), aiohttp.ClientSession() as http:
        r = await run_fuzz(url, 600, http, server, seed=1, workers=3)
        assert r["messages"] == 600
        assert r["unanswered"] == 0  # every bad message got a 0x05 error or its connection was closed
        assert sum(r["errors"].values()) > 300
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


async def test_sessions_short():
    async with running_server(max_sessions=4) as (url, server), aiohttp.ClientSession() as http:
        r = await run_sessions(url, 4, 1.5, http)
        assert r["errors"] == 0 and r["refused"] == 0 and r["clean_closes"] == 4
        assert r["audio_back_min_s"] > 0.8 * r["expected_s"]


def test_spoken_questions_alternate_speech_and_answer_gaps():
    import numpy as np

    from kame.bench.soak import spoken_questions

    x = spoken_questions(9.6, seed=1)
    assert x.shape == (int(9.6 * 24000),) and x.dtype == np.float32
    loud = np.abs(x.reshape(-1, 1920)).max(1) > 0.05  # per 80 ms frame
    assert loud[:10].any()  # the first question is spoken at once ...
    gap = np.flatnonzero(~loud[np.argmax(loud):])
    assert len(gap) >= 40  # ... and followed by ~4 s of silence for the answer
