"""Both agents' health(): whether they run, the tandem's frame counters, and the state of each
shared component as it says it (an optional ``state`` attribute; "up" without one)."""

from __future__ import annotations

import asyncio
import logging

from kame.cascade.agent import build_cascade_agent
from kame.config import load_config
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent, component_state

from ..cascade.fakes import FakeLLM as CascadeLLM, FakeSTT as CascadeSTT, FakeTTS, FakeVAD
from .fakes import FakeFrameModel, FakeLLM, FakeSTT, step


class StatefulLLM(FakeLLM):
    """An LLM that says its state (as kame's embedded one does)."""

    state = "up"


def config():
    return load_config(None, {"runtime.max_sessions": 2, "runtime.vad": "energy", "runtime.stats_interval_s": 0.0,
                              "runtime.max_input_backlog_s": 30.0, "backend.stt": "none", "backend.llm": "none"})


async def test_tandem_health_says_running_counters_and_component_states():
    clock, llm = FakeClock(), StatefulLLM()
    agent = TandemAgent(config(), clock=clock, frame_models=FakeFrameModel, components={"stt": FakeSTT(), "llm": llm})
    assert agent.health()["started"] is False and agent.health()["running"] is False
    await agent.start()
    try:
        h = agent.health()
        assert h == {"started": True, "running": True, "frames": 0, "missed": 0, "failed_steps": 0,
                     "components": {"stt": "up", "llm": "up"}, "error": None}
        s = await agent.open_session()
        await step(agent, clock, 3)
        assert agent.health()["frames"] == 3
        llm.state = "loading"  # (its child restarting: no session has to fail a request first)
        assert agent.health()["components"] == {"stt": "up", "llm": "loading"}
        await s.close()
    finally:
        await agent.stop()
    assert agent.health()["started"] is False and agent.health()["components"] == {}


async def test_a_dead_frame_loop_is_not_running_and_the_agent_logs_why(caplog):
    clock = FakeClock()
    agent = TandemAgent(config(), clock=clock, frame_models=FakeFrameModel)
    await agent.start()

    async def broken_sleep(seconds):
        raise RuntimeError("the clock broke")

    clock.sleep = broken_sleep  # (the ticker sleeps on it after its first frame)
    try:
        with caplog.at_level(logging.ERROR, logger="kame.runtime.engine"):
            s = await agent.open_session()
            await asyncio.wait({agent._ticker})
            h = agent.health()
        assert h["started"] is True and h["running"] is False
        assert h["error"] == "the frame loop has ended: RuntimeError: the clock broke"
        said = [r for r in caplog.records if "the frame loop has ended" in r.getMessage()]
        assert len(said) == 1 and said[0].exc_info is not None and "the clock broke" in said[0].getMessage()
        await s.close()
    finally:
        await agent.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "cancel" in r.getMessage()]


async def test_cascade_health_says_running_and_component_states():
    clock = FakeClock()
    llm = CascadeLLM(clock, ["Hi."])
    llm.state = "down"
    agent = build_cascade_agent(load_config(None, {"mode": "cascade"}), clock=clock,
                                components={"stt": CascadeSTT(), "llm": llm, "tts": FakeTTS(clock),
                                            "vad_factory": FakeVAD})
    assert agent.health() == {"started": False, "running": False, "components": {}, "error": None}
    await agent.start()
    try:
        assert agent.health() == {"started": True, "running": True, "error": None,
                                  "components": {"stt": "up", "llm": "down", "tts": "up"}}
    finally:
        await agent.stop()
    assert agent.health()["running"] is False


def test_component_state_is_up_without_a_state_and_unknown_when_it_fails():
    class Broken:
        @property
        def state(self):
            raise OSError("gone")

    assert component_state(object()) == "up"
    assert component_state(StatefulLLM()) == "up"
    assert component_state(Broken()) == "unknown"
