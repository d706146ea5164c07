"""The tandem agent's lifecycle as a library sees it: starts at once (two open_session on a fresh
agent), a start that fails or is cancelled, a second event loop, a restart after stop(), start's
blocking work off the loop, a metrics sink that raises, own STT / LLM objects, and the arguments
build_agent and TandemAgent refuse. Fake front-end (a stand-in kame.runtime.frontend module),
fake STT / LLM, FakeClock."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import types

import numpy as np
import pytest

from kame.config import load_config
from kame.errors import KameError
from kame.runtime import engine
from kame.runtime.backend import BackendBridge
from kame.runtime.base import ErrorEvent
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent, build_agent
from kame.runtime.metrics import GuardedSink, Metric, MetricsLog

from .fakes import CREATED, START, FakeFrameModel, FakeLLM, FakeSTT, Recorder, step, wait_for

F = 1920
LOUD = (np.ones(F) * 0.3).astype(np.float32)


class FakeFrontend(types.ModuleType):
    """Stands in for kame.runtime.frontend: counts loads, records the thread that imported its
    load_frame_models and built the frame models; ``gate`` holds a load until set, ``fail`` makes
    it raise."""

    def __init__(self) -> None:
        super().__init__("kame.runtime.frontend")
        self.loads, self.import_threads, self.build_threads = 0, [], []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail: Exception | None = None

    def __getattr__(self, name):  # (only for names the module lacks: the import's lookup)
        if name != "load_frame_models":
            raise AttributeError(name)
        self.import_threads.append(threading.current_thread())
        return self._load

    def _load(self, cfg):
        self.loads += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail is not None:
            raise self.fail

        def factory(b):
            self.build_threads.append(threading.current_thread())
            return FakeFrameModel(b)

        return factory, {"frontend": "fake", "frontend_random": True, "oracle_start_id": START,
                         "token_text": lambda t: f" t{t}", "text_tokenizer": None}


@pytest.fixture
def frontend(monkeypatch):
    fake = FakeFrontend()
    monkeypatch.setitem(sys.modules, "kame.runtime.frontend", fake)
    yield fake
    if fake.gate is not None:
        fake.gate.set()  # (a load thread still waiting ends)


def config(**overrides):
    return load_config(None, {"runtime.max_sessions": 2, "runtime.vad": "energy", "runtime.stats_interval_s": 0.0,
                              "runtime.max_input_backlog_s": 30.0, "backend.stt": "none", "backend.llm": "none",
                              **overrides})


def tickers():
    return [t for t in asyncio.all_tasks() if t.get_name() == "kame-ticker" and not t.done()]


# ------------------------------------------------------------------------------ concurrent start
async def test_two_sessions_opened_at_once_on_a_fresh_agent_start_it_once(frontend, fake_components):
    """(was: the front-end and the back-end loaded twice, two tickers and step threads, both
    sessions on row 0, one of them missing from agent.sessions and left open by stop())"""
    agent = TandemAgent(config(**{"backend.stt": "fake", "backend.llm": "fake"}), clock=FakeClock())
    s1, s2 = await asyncio.gather(agent.open_session(), agent.open_session())
    assert frontend.loads == 1 and len(CREATED) == 2  # one STT, one LLM
    assert {s1.row, s2.row} == {0, 1} and set(agent.sessions.values()) == {s1, s2}
    assert len(tickers()) == 1
    await agent.stop()
    assert s1.closed and s2.closed and not tickers()


async def test_a_start_that_fails_fails_every_caller_and_the_next_start_loads_again(frontend):
    frontend.fail = RuntimeError("no weights here")
    agent = TandemAgent(config(), clock=FakeClock())
    results = await asyncio.gather(agent.open_session(), agent.start(), return_exceptions=True)
    assert [str(r) for r in results] == ["no weights here"] * 2 and frontend.loads == 1
    frontend.fail = None
    s = await agent.open_session()
    assert frontend.loads == 2 and list(agent.sessions.values()) == [s]
    await agent.stop()


async def test_a_cancelled_caller_leaves_the_others_waiting_for_the_one_start(frontend):
    frontend.gate = threading.Event()
    agent = TandemAgent(config(), clock=FakeClock())
    first = asyncio.create_task(agent.open_session())
    second = asyncio.create_task(agent.open_session())
    await asyncio.to_thread(frontend.entered.wait, 30)
    first.cancel()
    await asyncio.wait({first})
    frontend.gate.set()
    s = await second
    assert first.cancelled() and frontend.loads == 1 and list(agent.sessions.values()) == [s]
    assert len(tickers()) == 1
    await agent.stop()


async def test_a_start_every_caller_gave_up_is_cancelled_and_a_later_one_loads_again(frontend):
    frontend.gate = threading.Event()
    agent = TandemAgent(config(), clock=FakeClock())
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(agent.start(), 0.05)  # (the load is held by the gate: it times out)
    frontend.gate.set()
    assert not tickers() and agent.worker is None  # not half-started
    await agent.start()
    assert frontend.loads == 2 and len(tickers()) == 1
    await agent.stop()


async def test_stop_while_starting_tells_the_waiting_callers(frontend):
    frontend.gate = threading.Event()
    agent = TandemAgent(config(), clock=FakeClock())
    opening = asyncio.create_task(agent.open_session())
    await asyncio.to_thread(frontend.entered.wait, 30)
    stopping = asyncio.create_task(agent.stop())
    with pytest.raises(KameError, match="stopped while it was starting"):
        await opening
    frontend.gate.set()
    await stopping
    assert not agent.sessions and not tickers() and agent.worker is None


# ------------------------------------------------------------------------------ event loops, restart
def test_an_agent_started_in_one_event_loop_runs_in_the_next(frontend):
    """asyncio.run(agent.start()) then asyncio.run(use()) (was: the first loop's ticker was dead
    but open_session took it for running: no output, no error)"""
    clock = FakeClock()
    agent = TandemAgent(config(), clock=clock)
    old = []

    async def first():
        await agent.start()
        old.append(await agent.open_session())
        await step(agent, clock, 2)

    async def second():
        s = await agent.open_session()
        rec = Recorder(s)
        await s.push_audio(LOUD)
        await step(agent, clock, 3)
        await s.close()
        await rec.task
        assert len(rec.audio()) == 3
        assert old[0].closed and not agent.sessions  # that loop's session was closed, its row freed
        await agent.stop()

    asyncio.run(first())
    asyncio.run(second())
    assert frontend.loads == 1  # the front-end was kept


async def test_an_agent_running_in_another_threads_loop_is_refused_with_what_to_do():
    """(was: taken for running here: sessions of two loops on one ticker)"""
    agent = TandemAgent(config(), clock=FakeClock(), frame_models=FakeFrameModel, backend=lambda s: None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(agent.start(), loop).result(30)
        for call in (agent.open_session, agent.stop):
            with pytest.raises(KameError, match="runs in another event loop .*: use it from that loop"):
                await call()
        asyncio.run_coroutine_threadsafe(agent.stop(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


class HeldResetModel(FakeFrameModel):
    """Its reset of a released row waits for ``go`` once ``hold`` is set (worker thread)."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size)
        self.hold, self.entered, self.go = False, threading.Event(), threading.Event()

    def reset(self, rows) -> None:
        if self.hold:
            self.entered.set()
            self.go.wait(30)
        super().reset(rows)


async def test_a_session_that_joins_while_the_ticker_resets_a_freed_row_gets_frames():
    """(was: the ticker, idle after the last session left, cleared the wake-up that session set
    while the freed row's reset ran, and slept: the new session never got a frame)"""
    clock, model = FakeClock(), []
    agent = TandemAgent(config(), clock=clock, frame_models=lambda b: model.append(HeldResetModel(b)) or model[-1],
                        backend=lambda s: None)
    await agent.start()
    s1 = await agent.open_session()
    await step(agent, clock)
    await s1.close()
    model[0].hold = True
    clock.advance(0.08)  # the ticker wakes to no session: it resets s1's row
    await asyncio.to_thread(model[0].entered.wait, 30)
    s2 = await agent.open_session()
    model[0].hold = False
    model[0].go.set()
    rec = Recorder(s2)
    await step(agent, clock, 2)
    await s2.close()
    await rec.task
    assert len(rec.audio()) == 2
    await agent.stop()


async def test_a_restart_after_stop_loads_the_components_stop_closed(frontend, fake_components):
    """(was: stop() closed the shared STT / LLM, and the next start used the closed ones)"""
    agent = TandemAgent(config(**{"backend.stt": "fake", "backend.llm": "fake"}), clock=FakeClock())
    await agent.open_session()
    first = agent._backend
    await agent.stop()
    s = await agent.open_session()
    assert len(CREATED) == 4 and agent._backend is not first
    assert s.backend.stt is CREATED[2][0]
    await agent.stop()


async def test_start_loads_the_front_end_builds_the_models_and_the_vad_off_the_event_loop(frontend, monkeypatch):
    """(was: the front-end's import (torch), the frame models and a probe silero VAD on the loop)"""
    vad_threads = []

    def vad_factory(kind, **kw):
        vad_threads.append(threading.current_thread())
        return None

    monkeypatch.setattr(engine, "make_vad_factory", vad_factory)
    agent = TandemAgent(config(), clock=FakeClock())
    await agent.start()
    loop_thread = threading.current_thread()
    for where in (frontend.import_threads, frontend.build_threads, vad_threads):
        assert where and loop_thread not in where
    await agent.stop()


# ------------------------------------------------------------------------------ the metrics sink
async def test_a_metrics_sink_that_raises_costs_no_audio_and_is_logged_once(caplog):
    """(was: every frame failed: no audio, and ErrorEvents blamed the front-end)"""
    calls = []

    def broken_sink(m):
        calls.append(m.name)
        raise KeyError(m.name)

    clock = FakeClock()
    agent = TandemAgent(config(), clock=clock, metrics=broken_sink, frame_models=FakeFrameModel,
                        backend=lambda s: None)
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    with caplog.at_level(logging.ERROR, logger="kame.runtime.metrics"):
        for _ in range(4):
            await s.push_audio(LOUD)
            await step(agent, clock)
        s.metric("oracle_lag", 0.1, clock.now())  # a session's call of the sink
        s.producer_metric(Metric("llm_ttft", 0.2, clock.now()))  # (the STT's and the producer's)
    await s.close()
    await rec.task
    await agent.stop()
    assert len(rec.audio()) == 4 and not [o for o in rec.items if isinstance(o, ErrorEvent)]
    assert "step_time" in calls and "oracle_lag" in calls and "llm_ttft" in calls
    logged = [r for r in caplog.records if "broken_sink" in r.getMessage()]
    assert len(logged) == 1 and "logged once" in logged[0].getMessage()


async def test_a_sink_that_returns_a_coroutine_is_said_once_and_the_coroutine_closed(caplog):
    async def record(m):
        pass

    sink = GuardedSink(lambda m: record(m))
    with caplog.at_level(logging.ERROR, logger="kame.runtime.metrics"):
        sink(Metric("step_time", 0.01, 0.0))
        sink(Metric("step_time", 0.01, 0.0))
    assert len([r for r in caplog.records if "returned an awaitable" in r.getMessage()]) == 1


def test_an_async_sink_or_a_clock_without_now_and_sleep_is_refused_when_the_agent_is_built():
    async def async_sink(m):
        pass

    class AsyncCallable:
        async def __call__(self, m):
            pass

    for sink in (async_sink, AsyncCallable()):
        with pytest.raises(TypeError, match="is an async def, but a sink is called, not awaited"):
            build_agent(config(), metrics=sink)
    with pytest.raises(TypeError, match="not callable"):
        TandemAgent(config(), metrics="metrics.log")
    with pytest.raises(TypeError, match=r"is not a kame Clock \(it has no now\(\) or sleep\(\)\).*clock=None"):
        build_agent(config(), clock=time.monotonic)
    assert isinstance(TandemAgent(config(), metrics=MetricsLog()).metrics, GuardedSink)


# ------------------------------------------------------------------------------ own components, build_agent
async def test_own_stt_and_llm_objects_serve_the_tandem():
    """TandemAgent(cfg, components={"stt": obj, "llm": obj}) (was: taken as names for the info
    Meta only; the config's backend (here none) ran)"""
    stt, llm = FakeSTT(), FakeLLM()
    clock = FakeClock()
    agent = TandemAgent(config(), clock=clock, frame_models=FakeFrameModel, components={"stt": stt, "llm": llm})
    await agent.start()
    s = await agent.open_session()
    assert isinstance(s.backend, BackendBridge) and s.backend.stt is stt
    rec = Recorder(s)
    for _ in range(30):
        await s.push_audio(LOUD)
        await step(agent, clock)
        for _ in range(20):  # the back-end's tasks run between frames
            await asyncio.sleep(0)
    await wait_for(lambda: llm.calls > 0)
    info = rec.meta("info")[0]
    assert (info["stt"], info["llm"]) == ("FakeSTT", "FakeLLM") and rec.meta("transcript")
    assert agent._backend.shared == (stt, llm)  # stop() closes them, as the cascade closes its own
    await s.close()
    await rec.task
    await agent.stop()


def test_tandem_components_it_cannot_use_are_refused_with_what_to_do():
    class NotAnLLM:
        def stream_chat(self, messages):  # (a plain generator: 'async for' cannot read it)
            yield "hi"

    with pytest.raises(TypeError, match=r"not a tts; a tts object is the cascade's.*registry.register"):
        TandemAgent(config(), components={"tts": object()})
    with pytest.raises(TypeError, match=r"an own llm needs an async generator method stream_chat"):
        TandemAgent(config(), components={"llm": NotAnLLM()})
    with pytest.raises(TypeError, match="either backend= .* or own STT / LLM objects"):
        TandemAgent(config(), components={"stt": FakeSTT()}, backend=lambda s: None)
    with pytest.raises(TypeError, match=r"'none' is a name, not an STT: .* backend.stt = 'none'"):
        TandemAgent(config(), components={"stt": "none"})  # (tests/runtime/test_own_components.py)
    agent = TandemAgent(config(), components={"frontend": "fake"})  # names: the info Meta's
    assert agent.components == {"frontend": "fake"} and not agent._own


def test_build_agent_refuses_keywords_the_chosen_agent_does_not_take():
    with pytest.raises(TypeError, match=r"mode = 'tandem' \(TandemAgent\) takes no colour= \(it takes clock=, "
                                        r"metrics=, frame_models="):
        build_agent(config(), colour="blue")
    with pytest.raises(TypeError, match=r"mode = 'cascade' .* takes no frame_models= \(it takes clock=, metrics=, "
                                        r"components=\)"):
        build_agent(load_config(None, {"mode": "cascade"}), frame_models=FakeFrameModel)


async def test_a_start_its_callers_gave_up_does_not_fail_the_next_caller():
    """(review, helper-82) the only caller of a start is cancelled, and a new caller comes while
    that start unwinds: it got "the agent was stopped while it was starting" though nobody called
    stop(); it now waits for the old start to end and runs a new one."""
    from kame.runtime.engine import StartOnce

    once, gate, starts = StartOnce(), asyncio.Event(), []

    async def start():
        starts.append(1)
        try:
            await gate.wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # (a load in a thread takes a moment to unwind)
            raise

    first = asyncio.create_task(once.run(start))
    await asyncio.sleep(0.01)
    first.cancel()  # (a client's wait_for(open_session(), ...) timed out)
    await asyncio.gather(first, return_exceptions=True)
    second = asyncio.create_task(once.run(start))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.wait_for(second, 5)
    assert len(starts) == 2


async def test_a_frame_loop_that_died_in_its_loop_is_restarted_for_the_same_sessions(caplog):
    """(review, helper-82) the next start() took a ticker that had failed in this very loop for
    one of an ended loop: it closed every live session ("the agent's previous event loop has
    ended"). Now a new ticker serves them."""
    import logging

    from .fakes import FakeFrameModel, step
    from kame.config import load_config
    from kame.runtime.clock import FakeClock
    from kame.runtime.engine import TandemAgent

    caplog.set_level(logging.INFO, logger="kame.runtime.engine")
    clock = FakeClock()
    agent = TandemAgent(load_config(None, {"runtime.max_sessions": 2, "runtime.vad": "energy"}), clock=clock,
                        frame_models=lambda b: FakeFrameModel(b), backend=lambda s: None, token_text=lambda t: "")
    s = await agent.open_session()
    await step(agent, clock, 2)
    agent._ticker.cancel()  # (as a bug that ends the frame loop would)
    await asyncio.wait({agent._ticker})
    await agent.start()
    assert not s.closed
    frames = agent.frames
    await step(agent, clock, 2)
    assert agent.frames >= frames + 2 and not s.closed
    assert not [r for r in caplog.records if "previous event loop" in r.getMessage()]
    await agent.stop()
