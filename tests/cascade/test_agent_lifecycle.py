"""The cascade agent's lifecycle as a library sees it: two sessions opened at once on a fresh agent
load the components once, a start that fails or is stopped reaches every caller, a metrics sink
that raises costs no reply, and build_agent passes the caller's own components on."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from kame.cascade import agent as cascade_agent
from kame.cascade.agent import build_cascade_agent
from kame.config import load_config
from kame.errors import KameError
from kame.runtime.clock import FakeClock
from kame.runtime.engine import build_agent

from ..runtime.fakes import wait_for
from .fakes import Driver, FakeLLM, FakeSTT, FakeTTS, FakeVAD, speech_frame


class ClosingSTT(FakeSTT):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class ClosingLLM(FakeLLM):
    def __init__(self, clock) -> None:
        super().__init__(clock, ["Hi."])
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class Loads:
    """Stands in for the registry's STT / LLM creation in kame.cascade.agent: counts what it made;
    ``gate`` holds the STT's creation until set, ``fail`` makes the LLM's raise."""

    def __init__(self, clock) -> None:
        self.clock, self.made = clock, []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail: Exception | None = None

    def stt(self, spec, *args, **kwargs):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        self.made.append(ClosingSTT())
        return self.made[-1]

    def llm(self, spec, *args, **kwargs):
        if self.fail is not None:
            raise self.fail
        self.made.append(ClosingLLM(self.clock))
        return self.made[-1]


@pytest.fixture
def loads(monkeypatch):
    made = Loads(FakeClock())
    monkeypatch.setattr(cascade_agent, "create_stt", made.stt)
    monkeypatch.setattr(cascade_agent, "create_llm", made.llm)
    yield made
    if made.gate is not None:
        made.gate.set()  # (a load thread still waiting ends)


def make_agent(loads, **kwargs):
    cfg = load_config(None, {"mode": "cascade", "runtime.max_sessions": 2})
    return build_cascade_agent(cfg, clock=loads.clock, components={"tts": FakeTTS(loads.clock), "vad_factory": FakeVAD},
                               **kwargs)


async def test_two_sessions_opened_at_once_on_a_fresh_agent_load_the_components_once(loads):
    """(was: the STT and the LLM created twice, and stop() closed only one of each)"""
    agent = make_agent(loads)
    s1, s2 = await asyncio.gather(agent.open_session(), agent.open_session())
    assert len(loads.made) == 2 and s1.stt is s2.stt is agent.stt
    await agent.stop()
    assert all(part.closed for part in loads.made)


async def test_a_start_that_fails_fails_every_caller_and_the_next_start_loads_again(loads):
    loads.fail = RuntimeError("no such model")
    agent = make_agent(loads)
    results = await asyncio.gather(agent.open_session(), agent.start(), return_exceptions=True)
    assert [str(r) for r in results] == ["no such model"] * 2 and len(loads.made) == 1  # (the STT, once)
    loads.fail = None
    s = await agent.open_session()
    assert list(agent.sessions.values()) == [s]
    await agent.stop()


async def test_a_cancelled_caller_leaves_the_others_waiting_for_the_one_load(loads):
    loads.gate = threading.Event()
    agent = make_agent(loads)
    first = asyncio.create_task(agent.open_session())
    second = asyncio.create_task(agent.open_session())
    await asyncio.to_thread(loads.entered.wait, 30)
    first.cancel()
    await asyncio.wait({first})
    loads.gate.set()
    s = await second
    assert first.cancelled() and len(loads.made) == 2 and list(agent.sessions.values()) == [s]
    await agent.stop()


async def test_stop_while_starting_tells_the_waiting_callers(loads):
    loads.gate = threading.Event()
    agent = make_agent(loads)
    opening = asyncio.create_task(agent.open_session())
    await asyncio.to_thread(loads.entered.wait, 30)
    stopping = asyncio.create_task(agent.stop())
    with pytest.raises(KameError, match="stopped while it was starting"):
        await opening
    loads.gate.set()
    await stopping
    assert not agent.sessions and not agent._started and agent.stt is None  # (the load's result dropped)


async def test_a_metrics_sink_that_raises_costs_no_reply_and_is_logged_once(caplog):
    """(was: the reply's first metric raised inside its pipeline)"""
    calls = []

    def broken_sink(m):
        calls.append(m.name)
        raise KeyError(m.name)

    clock = FakeClock()
    stt, llm, tts = FakeSTT(), FakeLLM(clock, ["Paris is the capital."]), FakeTTS(clock)
    agent = build_cascade_agent(load_config(None, {"mode": "cascade"}), clock=clock, metrics=broken_sink,
                                components={"stt": stt, "llm": llm, "tts": tts, "vad_factory": FakeVAD})
    s = await agent.open_session()
    d = Driver(clock, s)
    with caplog.at_level(logging.ERROR, logger="kame.runtime.metrics"):
        await d.step(speech_frame(), frames=10)
        await d.step(frames=2)
        s.stt.say("what is the capital of france", clock.now())
        await d.step(frames=40)
    assert tts.texts == ["Paris is the capital."] and d.voiced() and "llm_ttft" in calls
    assert len([r for r in caplog.records if "broken_sink" in r.getMessage()]) == 1
    await d.close()
    await agent.stop()


def test_an_async_sink_or_a_clock_without_now_and_sleep_is_refused_when_the_agent_is_built():
    async def async_sink(m):
        pass

    cfg = load_config(None, {"mode": "cascade"})
    with pytest.raises(TypeError, match="is an async def, but a sink is called, not awaited"):
        build_cascade_agent(cfg, metrics=async_sink)
    with pytest.raises(TypeError, match=r"is not a kame Clock \(it has no now\(\) or sleep\(\)\)"):
        build_agent(cfg, clock=time.monotonic)


async def test_build_agent_passes_own_components_to_the_cascade(monkeypatch):
    """build_agent(cascade_cfg, components={...}) (was: dropped, and the config's models loaded)"""

    def no_load(spec, *args, **kwargs):
        raise AssertionError(f"{spec} loaded from the config")

    monkeypatch.setattr(cascade_agent, "create_stt", no_load)
    monkeypatch.setattr(cascade_agent, "create_llm", no_load)
    clock = FakeClock()
    mine = {"stt": FakeSTT(), "llm": FakeLLM(clock, ["Hi."]), "tts": FakeTTS(clock), "vad_factory": FakeVAD}
    agent = build_agent(load_config(None, {"mode": "cascade"}), clock=clock, components=mine)
    await agent.start()
    assert (agent.stt, agent.llm, agent.tts) == (mine["stt"], mine["llm"], mine["tts"])
    await agent.stop()


class StuckVAD(FakeVAD):
    """A plugin VAD whose push blocks (on ``release``) once ``entered`` is armed."""

    entered = threading.Event()
    release = threading.Event()

    def push(self, pcm, t):
        StuckVAD.entered.set()
        StuckVAD.release.wait()
        return super().push(pcm, t)


async def test_stop_leaves_a_plugin_vad_stuck_in_its_call(loads, monkeypatch, caplog):
    """The cascade's VAD runs on a daemon thread: a plugin VAD that never returns holds neither
    stop() (it waits StepWorker.STOP_GRACE_S, then leaves the thread with a warning) nor the exit
    (was: stop() joined a ThreadPoolExecutor's thread, for ever)."""
    from kame.runtime.worker import StepWorker

    monkeypatch.setattr(StepWorker, "STOP_GRACE_S", 0.2)
    StuckVAD.entered.clear(), StuckVAD.release.clear()
    cfg = load_config(None, {"mode": "cascade", "runtime.max_sessions": 2})
    agent = build_cascade_agent(cfg, clock=loads.clock, components={"tts": FakeTTS(loads.clock), "vad_factory": StuckVAD})
    try:
        s = await agent.open_session()
        push = asyncio.create_task(s.push_audio(speech_frame()))
        while not StuckVAD.entered.is_set():
            await asyncio.sleep(0.01)
        pool = agent._vad_pool
        with caplog.at_level(logging.WARNING, "kame.cascade.agent"):
            await asyncio.wait_for(agent.stop(), 30)
        warned = [r.getMessage() for r in caplog.records if "VAD thread did not end" in r.getMessage()]
        assert len(warned) == 1 and "(custom)" in warned[0]
        assert pool._thread.daemon and not pool.ended.done()
    finally:
        StuckVAD.release.set()  # (the stuck call ends)
    await asyncio.wait_for(asyncio.wrap_future(pool.ended), 30)
    push.cancel()
    await asyncio.gather(push, return_exceptions=True)


class SlowUnwindSTT(FakeSTT):
    """Its stream, once cancelled, unwinds only when ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release, self.unwinding, self.started = asyncio.Event(), 0, 0

    async def stream(self, frames):
        self.started += 1
        try:
            async for tr in super().stream(frames):
                yield tr
        finally:
            self.unwinding += 1
            await self.release.wait()
            self.unwinding -= 1


async def test_sessions_closed_in_a_burst_cannot_pile_up_unwinding_stt_streams(monkeypatch):
    """As the tandem's: at most max_sessions (at least UNWINDING_MIN) closed sessions' STT
    streams unwind at once; the next session waits for one (up to STOP_WAIT_S), then is refused."""
    from kame.runtime import base

    monkeypatch.setattr(cascade_agent, "STOP_WAIT_S", 0.05)
    clock, stt = FakeClock(), SlowUnwindSTT()
    cfg = load_config(None, {"mode": "cascade", "runtime.max_sessions": 1})
    agent = build_cascade_agent(cfg, clock=clock, components={"stt": stt, "llm": FakeLLM(clock, ["Hi."]),
                                                              "tts": FakeTTS(clock), "vad_factory": FakeVAD})
    for n in range(base.UNWINDING_MIN):
        s = await agent.open_session()
        await wait_for(lambda: stt.started == n + 1)
        await s.close()
        await wait_for(lambda: stt.unwinding == n + 1)
    with pytest.raises(base.CapacityError, match="4 closed sessions are still shutting down"):
        await agent.open_session()
    stt.release.set()
    s = await agent.open_session()
    await s.close()
    await agent.stop()


async def test_a_session_waiting_for_room_is_refused_if_a_whole_stop_ran_meanwhile(monkeypatch):
    """(was: opened on the stopped agent: no VAD thread, its STT / LLM / TTS closed)"""
    from kame.runtime import base

    monkeypatch.setattr(cascade_agent, "STOP_WAIT_S", 30.0)
    clock, stt = FakeClock(), SlowUnwindSTT()
    cfg = load_config(None, {"mode": "cascade", "runtime.max_sessions": 1})
    agent = build_cascade_agent(cfg, clock=clock, components={"stt": stt, "llm": FakeLLM(clock, ["Hi."]),
                                                              "tts": FakeTTS(clock), "vad_factory": FakeVAD})
    for n in range(base.UNWINDING_MIN):  # as many closed sessions still unwinding as may be
        s = await agent.open_session()
        await wait_for(lambda: stt.started == n + 1)
        await s.close()
        await wait_for(lambda: stt.unwinding == n + 1)
    real, stopped = cascade_agent.room_to_unwind, asyncio.Event()

    async def room(*args):
        await real(*args)  # the opener waits for one of them ...
        await stopped.wait()  # ... and runs again only once stop() has returned (as the loop may order it)

    monkeypatch.setattr(cascade_agent, "room_to_unwind", room)
    opening = asyncio.ensure_future(agent.open_session())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not opening.done()
    stt.release.set()  # (so stop() can end)
    await agent.stop()
    assert not agent._stopping_now and agent._vad_pool is None
    stopped.set()
    with pytest.raises(KameError, match="the agent was stopped while a session was opening"):
        await opening
    assert agent.sessions == {}
