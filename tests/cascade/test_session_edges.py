"""A cascade session at its edges, on a FakeClock (QA report qa1, findings 4, 6, 8, 9): an STT
that stops reading once the caller stopped pushing, open_session() across a stop(), a reply over
when close() comes, and a first push_audio of a whole recording."""

import asyncio
import threading

import numpy as np
import pytest

from kame.errors import KameError
from kame.runtime.base import ErrorEvent
from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeLLM, FakeSTT, FakeTTS, speech_frame
from .test_session import _agent


class DeafSTT(FakeSTT):
    """Reads no audio at all (a plugin STT stuck in its own call)."""

    async def stream(self, frames):
        await asyncio.Event().wait()
        yield None


async def test_an_stt_that_stops_reading_is_reported_when_no_more_audio_comes():
    """(was: the stall was checked only when a frame was pushed: a program that pushed one
    utterance and waited for the reply never heard that its STT was stuck)"""
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=DeafSTT(),
                            **{"backend.stt_stall_s": 1.0})
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(speech_frame(), frames=3)  # one short utterance, then nothing more is pushed
    for _ in range(20):  # 1.6 s on the clock, no push
        clock.advance(0.08)
        await d.settle()
    errors = [o.message for o in d.out if isinstance(o, ErrorEvent)]
    assert len(errors) == 1 and "STT fake-stt stalled: it has taken no audio for 1.0 s" in errors[0]
    assert [(m["component"], m["status"]) for m in d.metas("backend")] == [("stt", "down")]
    await d.close()
    await agent.stop()


async def test_open_session_while_stop_runs_is_a_kame_error_not_a_cancellation():
    """(was: stop() closed the VAD thread, which cancelled the session's VAD call: its caller got
    a bare CancelledError, as if it had been cancelled itself)"""
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock))
    gate = threading.Event()
    agent._vad_pool.submit(gate.wait)  # the VAD thread busy: the session's VAD call waits in its queue
    opening = asyncio.create_task(agent.open_session())
    for _ in range(20):
        await asyncio.sleep(0)
    stopping = asyncio.create_task(agent.stop())  # (closes the VAD thread: the queued call is cancelled)
    try:
        with pytest.raises(KameError, match="the agent stopped while session c[0-9]+ was opening"):
            await opening
    finally:
        gate.set()
        await stopping


async def test_a_reply_over_before_close_gets_its_agent_turn_though_no_tick_came_between():
    """(was: a reply over between two playback ticks got no "agent_turn" when close() came first;
    the turn looked cut off. A reply close() cuts short gets none, as kame run and kame client
    expect: a turn without one was under way when the session ended.)"""
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, [""], delay=0.05), FakeTTS(clock))  # (it says nothing)
    s = await agent.open_session()
    d = Driver(clock, s)
    s.stt.say("hello", clock.now())
    await d.settle()
    clock.advance(0.06)  # the LLM's stream is over; the next playback tick is at 0.08
    await d.settle()
    assert [m["turn"] for m in d.metas("turn")] == [1] and not d.metas("agent_turn") and not s._reply.active
    await d.close()
    (turn,) = d.metas("agent_turn")
    assert turn["turn"] == 1 and not turn["interrupted"] and turn["text"] == ""
    await agent.stop()


async def test_the_first_push_is_bounded_by_the_input_backlog_as_later_ones():
    """runtime.max_input_backlog_s (1 s) ahead of the clock, the first chunk too (was: the first
    push_audio took any amount: 30 s at once, nothing dropped; the tandem keeps 1 s)"""
    clock = FakeClock(start=5.0)
    stt = FakeSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt)
    s = await agent.open_session()
    d = Driver(clock, s)
    await s.push_audio(np.zeros(30 * 24000, np.float32))  # 30 s at once, as the session opens
    await d.settle()
    assert s.stats.dropped_input_s == pytest.approx(30 - 1.0 - 0.08)  # (its first frame may predate the opening)
    await d.close()
    # (and at close the last part-frame: 1.08 s is 13.5 frames)
    assert [m for m in d.metas("stats") if m["final"]][0]["dropped_input_s"] == pytest.approx(28.92 + 0.04)
    await agent.stop()

