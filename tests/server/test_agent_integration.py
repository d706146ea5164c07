"""`kame serve` with the real tandem agent (tiny random front-end + tiny Mimi codec) and fake
STT/LLM back-ends registered as components: audio/text/metadata come back over the protocol,
when the LLM dies mid-turn the agent's audio keeps flowing and the client is told, and when it
comes back new oracle predictions reach the client again."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import pytest

from kame import registry
from kame.bench.soak import run_cycles, speechlike
from kame.config import load_config
from kame.server.app import SERVER_KEY, make_app, server_config_from
from kame.server.client import chat

from ..local_http import serving
from ..runtime.fakes import FakeLLM, FakeSTT

LLMS: list[FakeLLM] = []


def create_llm(arg=None, **kwargs) -> FakeLLM:
    LLMS.append(FakeLLM())
    return LLMS[-1]


def create_stt(arg=None, **kwargs) -> FakeSTT:
    return FakeSTT()


@pytest.fixture(scope="module", autouse=True)
def fake_components():
    registry.register("stt", "fake_srv", "tests.server.test_agent_integration:create_stt")
    registry.register("llm", "fake_srv", "tests.server.test_agent_integration:create_llm")
    yield
    for kind in ("stt", "llm"):  # (later tests list the registered schemes)
        registry._ENTRIES.get(kind, {}).pop("fake_srv", None)


@contextlib.asynccontextmanager
async def tandem_server():
    """`kame serve`'s app around the real TandemAgent (tiny random front-end, fake back-end)."""
    from kame.runtime.engine import build_agent

    cfg = load_config(None, ["frontend.spec=random:tiny", "codec.spec=mimi:random-tiny", "backend.stt=fake_srv",
                             "backend.llm=fake_srv", "runtime.vad=energy", "backend.retry_s=0.1",
                             "runtime.max_sessions=2", "runtime.max_input_backlog_s=5"])
    LLMS.clear()
    app = make_app(build_agent(cfg), server_config_from(cfg.server), manage_agent=True)
    async with serving(app) as (url, _):
        yield url, app[SERVER_KEY]


async def test_tandem_agent_connect_disconnect_cycles_free_every_row():
    async with tandem_server() as (url, server), aiohttp.ClientSession() as http:
        r = await run_cycles(url, 100, http, server)
        agent = server.agent
        assert r["connections_left"] == 0 and r["agent_sessions_left"] == 0
        assert r["rows"] == "2 / 2" and sorted(agent._free) == [0, 1] and agent._released == []  # reset, free
        assert r["tasks_after"] <= r["tasks_before"]
        assert agent.frames > 0  # sessions really were stepped (cycles that sent audio)


async def test_tandem_agent_over_websocket_survives_llm_death():
    async with tandem_server() as (url, server):
        task = asyncio.create_task(chat(url, speechlike(4.0, 3), tail_s=1.0))
        for _ in range(300):  # wait until the back-end has asked the LLM (the user is talking)
            if LLMS and LLMS[-1].calls > 0:
                break
            await asyncio.sleep(0.02)
        assert LLMS and LLMS[-1].calls > 0, "the back-end never called the LLM"
        await asyncio.sleep(0.3)
        agent = server.agent
        t_dead, f_dead = time.monotonic(), agent.frames
        LLMS[-1].dead = True  # the back-end dies mid-turn (the user is still talking)
        await asyncio.sleep(1.0)
        for _ in range(500):  # (a loaded machine: let the ticker take its steps, whatever they cost)
            if agent.frames >= f_dead + 2:
                break
            await asyncio.sleep(0.02)
        t_back, f_back = time.monotonic(), agent.frames
        LLMS[-1].dead = False  # ... and comes back while the user still talks
        res = await task
    assert res.close_code == 1000 and res.handshake == (0, 0)
    types = {m.get("type") for m in res.metas}
    assert {"info", "transcript", "oracle", "backend"} <= types
    assert any(m.get("type") == "backend" and m.get("component") == "llm" and m.get("status") == "down" for m in res.metas)
    assert any(e["code"] == "agent_error" and "llm" in e["message"] and not e["fatal"] for e in res.errors)
    assert res.texts  # inner-monologue text pieces (random weights: babble)
    # The agent kept stepping the session while the LLM was dead, and its audio kept coming
    # (counts, not a rate: how many frames fit in a wall-time window depends on the machine's load).
    assert f_back >= f_dead + 2
    assert len([t for t in res.audio_times if res.connected_at + t > t_dead]) >= 2
    # The oracle resumed: the LLM is reported up again and a new prediction reached the client
    # (meta times are on the agent's clock, time.monotonic in this process).
    assert any(m.get("type") == "backend" and m.get("component") == "llm" and m.get("status") == "up"
               and m["t"] > t_back for m in res.metas)
    new = {m["prediction_id"] for m in res.metas if m.get("type") == "oracle" and m["event"] == "reset"
           and m["t"] > t_back}
    assert new and "answer" in "".join(m.get("text", "") for m in res.metas
                                       if m.get("type") == "oracle" and m["prediction_id"] in new)
