"""`kame serve`'s own watch of its agent (ops.Health.begin_watch): every ops.WATCH_S on the
server's clock it checks the agent as /api/health does, so a back-end child that dies with no
session live and nobody probing is logged within seconds (was: at the next probe, scrape or
session); the watch and the probes share one memory of what was logged (note_components). It
starts once the agent has started and ends before the agent's stop. The server's clock is a
FakeClock here: the watch's turns are the test's ``clock.advance``, no real waiting."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from kame.runtime.clock import FakeClock
from kame.server import ops
from kame.server.app import SERVER_KEY, ServerConfig, make_app

from ..local_http import serving
from .test_health_state import HealthAgent
from .test_ops import _health

WATCHED = "the server's check every 5 s"


class CountingAgent(HealthAgent):
    """A HealthAgent that counts its health() calls and records, at its stop, whether the watch
    had ended; its start waits for ``gate`` (a model that loads) when given one."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        super().__init__()
        self.gate, self.asked, self.watch_ended_at_stop = gate, 0, None

    def health(self) -> dict:
        self.asked += 1
        return super().health()

    async def stop(self) -> None:
        self.watch_ended_at_stop = _watch_task() is None


def _watch_task() -> asyncio.Task | None:
    return next((t for t in asyncio.all_tasks() if t.get_name() == "kame-watch-agent" and not t.done()), None)


async def _asleep(clock: FakeClock, task: asyncio.Task) -> None:
    """Until ``task`` (the watch) sleeps on ``clock`` until later than now: it has checked, or is
    waiting for its first turn. (Bounded: turns of the event loop, no time.)"""
    for _ in range(10_000):
        if any(t is task and deadline > clock.now() for deadline, t in clock.sleepers()):
            return
        await asyncio.sleep(0)
    raise AssertionError("the watch does not sleep on the server's clock")


async def _turn(clock: FakeClock, task: asyncio.Task) -> None:
    """One check of the watch: its sleep ends, it checks, it sleeps again."""
    await _asleep(clock, task)
    clock.advance(ops.WATCH_S)
    await _asleep(clock, task)


def _said(caplog) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("back-end ")]


def _down(seen_by: str) -> tuple[int, str]:
    return (logging.WARNING, f'back-end llm is down (seen by {seen_by}): /api/health says "degraded" until it is up '
                             'again (a back-end child process that died is restarted by its next use)')


async def test_a_component_that_dies_with_nobody_probing_is_logged_by_the_watch_once(caplog):
    caplog.set_level(logging.INFO, logger="kame.server")
    clock, agent = FakeClock(100.0), CountingAgent()
    async with serving(make_app(agent, ServerConfig(), clock=clock, manage_agent=True)) as (url, _), \
            aiohttp.ClientSession() as http:
        watch = _watch_task()
        assert watch is not None
        await _turn(clock, watch)
        assert agent.asked == 1 and _said(caplog) == []
        agent.said["components"] = {"stt": "up", "llm": "down"}  # (the LLM's child killed; no session, no probe)
        await _turn(clock, watch)
        assert _said(caplog) == [_down(WATCHED)]
        await _turn(clock, watch)  # still down: said once per death,
        status, h = await _health(http, url)  # whoever sees it again
        assert status == 200 and h["status"] == "degraded"
        assert _said(caplog) == [_down(WATCHED)]
        agent.said["components"] = {"stt": "up", "llm": "up"}
        await _turn(clock, watch)
        assert _said(caplog) == [_down(WATCHED), (logging.INFO, "back-end llm is up again")]
        agent.said["components"] = {"stt": "up", "llm": "down"}  # dies again, a probe sees it first
        await _health(http, url)
        await _turn(clock, watch)
        assert _said(caplog) == [_down(WATCHED), (logging.INFO, "back-end llm is up again"), _down(ops.PROBE)]
        agent.said = RuntimeError("health broke")  # (agent_health's to say, once; the watch goes on)
        await _turn(clock, watch)
        await _turn(clock, watch)
        assert [r.getMessage() for r in caplog.records if "health() failed" in r.getMessage()] == [
            "the agent's health() failed; /api/health reports without it"]
    assert watch.done() and agent.watch_ended_at_stop is True  # (ended before the agent's stop, not left pending)


async def test_the_watch_waits_for_the_agents_start_and_ends_before_its_stop(caplog):
    caplog.set_level(logging.INFO, logger="kame.server")
    clock, gate = FakeClock(100.0), asyncio.Event()
    agent = CountingAgent(gate)
    agent.said["components"] = {"stt": "up", "llm": "down"}
    app = make_app(agent, ServerConfig(), clock=clock, manage_agent=True, load_in_background=True)
    state = app[SERVER_KEY].health_state
    async with serving(app):
        watch = _watch_task()
        assert watch is not None
        for _ in range(3):  # loading: no check, whatever the clock says
            clock.advance(ops.WATCH_S)
            await asyncio.sleep(0)
        assert agent.asked == 0 and not clock.sleepers() and state.loading
        gate.set()
        await state.wait_loaded()
        await _turn(clock, watch)
        assert agent.asked == 1 and _said(caplog) == [_down(WATCHED)]
    assert watch.done() and _watch_task() is None and agent.watch_ended_at_stop is True
    asked = agent.asked
    clock.advance(ops.WATCH_S)  # (stopped: no check after, nothing left to log)
    await asyncio.sleep(0)
    assert agent.asked == asked


async def test_no_watch_after_a_failed_start(caplog):
    from kame.errors import KameError

    class Failing(CountingAgent):
        async def start(self) -> None:
            raise KameError("front-end checkpoint '/x' does not exist")

    clock, agent = FakeClock(100.0), Failing()
    app = make_app(agent, ServerConfig(), clock=clock, manage_agent=True, load_in_background=True)
    async with serving(app):
        await app[SERVER_KEY].health_state.wait_loaded()
        for _ in range(100):  # (bounded: turns of the event loop)
            if _watch_task() is None:
                break
            await asyncio.sleep(0)
        assert _watch_task() is None and not clock.sleepers() and agent.asked == 0
