"""/api/health from the agent's own health(): a shared component that is loading or down makes
the server "degraded" with no session live (was: "ok" until a session's request failed), and an
agent that stopped running after its start is 503 "failed" (read from health(), not from a
private task)."""

from __future__ import annotations

import logging

import aiohttp

from kame.config import load_config
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.server.app import ServerConfig, make_app

from ..local_http import serving
from ..runtime.fakes import FakeFrameModel, FakeLLM, FakeSTT
from .test_ops import FIELDS, FakeAgent, _health


class StatefulLLM(FakeLLM):
    state = "up"


async def test_a_component_loading_or_down_is_degraded_with_no_session_live():
    llm = StatefulLLM()
    cfg = load_config(None, {"runtime.max_sessions": 2, "runtime.vad": "energy", "backend.stt": "none",
                             "backend.llm": "none"})
    agent = TandemAgent(cfg, clock=FakeClock(), frame_models=FakeFrameModel, components={"stt": FakeSTT(), "llm": llm})
    app = make_app(agent, ServerConfig(), manage_agent=True)
    async with serving(app) as (url, _), aiohttp.ClientSession() as http:
        status, h = await _health(http, url)
        assert status == 200 and h["status"] == "ok" and h["backend"] == {"stt": "up", "llm": "up"}
        assert FIELDS <= set(h) and h["frames"] == 0 and h["missed_deadlines"] == 0 and h["failed_steps"] == 0
        for state in ("loading", "down", "stopped"):  # (the embedded LLM's child restarting, killed, released)
            llm.state = state
            status, h = await _health(http, url)
            assert status == 200 and h["status"] == "degraded" and h["backend"] == {"stt": "up", "llm": state}
        llm.state = "up"
        assert (await _health(http, url))[1]["status"] == "ok"


class HealthAgent(FakeAgent):
    """A FakeAgent that says its health (and has no private ticker to read)."""

    def __init__(self) -> None:
        super().__init__()
        self.said = {"started": True, "running": True, "frames": 7, "missed": 1, "failed_steps": 2,
                     "components": {"stt": "up", "llm": "up"}, "error": None}

    def health(self) -> dict:
        if isinstance(self.said, Exception):
            raise self.said
        return dict(self.said)


async def test_an_agent_not_running_after_its_start_is_503_failed_and_logged_once(caplog):
    agent = HealthAgent()
    async with serving(make_app(agent, ServerConfig(), clock=FakeClock(100.0))) as (url, _), \
            aiohttp.ClientSession() as http:
        status, h = await _health(http, url)
        assert status == 200 and h["frames"] == 7 and h["missed_deadlines"] == 1 and h["failed_steps"] == 2
        agent.said.update(running=False, error="the frame loop has ended: RuntimeError: the worker thread is gone")
        for _ in range(2):
            status, h = await _health(http, url)
            assert status == 503 and h["ok"] is False and h["status"] == "failed" and "frame loop" in h["error"]
            assert "worker thread" not in h["error"]  # (the details are for the log, not for anyone probing)
        agent.said.update(started=False)  # stopped on purpose (a server shutting down): no failure
        assert (await _health(http, url))[0] == 200
    said = [r for r in caplog.records if "not running" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.ERROR and "the worker thread is gone" in said[0].getMessage()


async def test_a_loading_component_is_degraded_and_a_failing_health_is_logged_once(caplog):
    agent = HealthAgent()
    async with serving(make_app(agent, ServerConfig(), clock=FakeClock(100.0))) as (url, _), \
            aiohttp.ClientSession() as http:
        agent.said["components"] = {"stt": "up", "llm": "loading"}
        status, h = await _health(http, url)
        assert status == 200 and h["status"] == "degraded" and h["backend"]["llm"] == "loading"
        agent.said = RuntimeError("health broke")
        for _ in range(2):  # (read as an agent without health(): its names and counters)
            status, h = await _health(http, url)
            assert status == 200 and h["backend"] == {"stt": "up", "llm": "up"} and h["frames"] == 0
    said = [r for r in caplog.records if "health() failed" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING


async def test_a_killed_pocketsphinx_child_is_stt_down_in_health_and_metrics(monkeypatch):
    """The STT's pocketsphinx child killed (as `kill -KILL` on `kame serve`'s): health says stt
    "down" (degraded) and kame_component_up{component="stt"} 0 before any utterance, "up" again
    once the next utterance has restarted it (was: "up" all along)."""
    import asyncio
    import os
    import signal

    import pytest

    pytest.importorskip("pocketsphinx")
    from kame.backend import childproc
    from kame.backend.stt import pocketsphinx

    from .test_metrics_endpoint import scrape

    monkeypatch.setattr(childproc, "_shared_stops", [])  # this test's child only, and its own:
    monkeypatch.setattr(pocketsphinx, "_shared", {})  # killing it touches no other test's
    stt = pocketsphinx.PocketsphinxSTT()
    cfg = load_config(None, {"runtime.max_sessions": 2, "runtime.vad": "energy", "backend.stt": "none",
                             "backend.llm": "none"})
    agent = TandemAgent(cfg, clock=FakeClock(), frame_models=FakeFrameModel, components={"stt": stt, "llm": StatefulLLM()})
    app = make_app(agent, ServerConfig(), manage_agent=True)
    try:
        async with serving(app) as (url, _), aiohttp.ClientSession() as http:
            status, h = await _health(http, url)
            assert status == 200 and h["status"] == "ok" and h["backend"]["stt"] == "up"
            os.kill(stt.server.proc.pid, signal.SIGKILL)
            for _ in range(250):  # (a bounded wait for the kill to land)
                status, h = await _health(http, url)
                if h["backend"]["stt"] != "up":
                    break
                await asyncio.sleep(0.02)
            assert status == 200 and h["status"] == "degraded" and h["backend"] == {"stt": "down", "llm": "up"}
            assert (await scrape(http, url))[("kame_component_up", "stt")] == 0
            rec = await asyncio.to_thread(pocketsphinx.PocketsphinxRecognizer, stt.server)  # the next utterance
            status, h = await _health(http, url)
            assert status == 200 and h["status"] == "ok" and h["backend"]["stt"] == "up"
            assert (await scrape(http, url))[("kame_component_up", "stt")] == 1
            rec.close()
    finally:
        stt.server.close()


async def test_a_component_found_down_is_logged_once_per_death(caplog):
    """(QA) A back-end child that dies with no session live: /api/health (and a scrape) say
    "degraded" at once, and now the log says so too, once per death, and when it is back (was:
    nothing until the next session used it)."""
    from .test_metrics_endpoint import scrape

    caplog.set_level(logging.INFO, logger="kame.server")
    agent = HealthAgent()
    async with serving(make_app(agent, ServerConfig(), clock=FakeClock(100.0))) as (url, _), \
            aiohttp.ClientSession() as http:
        for states in ({"stt": "up", "llm": "down"}, {"stt": "up", "llm": "down"}, {"stt": "up", "llm": "loading"},
                       {"stt": "up", "llm": "up"}, {"stt": "up", "llm": "down"}):
            agent.said["components"] = states
            await _health(http, url)
            await scrape(http, url)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("back-end ")]
    down = (logging.WARNING, 'back-end llm is down (seen by a health probe): /api/health says "degraded" until it is '
                             'up again (a back-end child process that died is restarted by its next use)')
    assert said == [down, (logging.INFO, "back-end llm is up again"), down]
