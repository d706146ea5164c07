"""A closed tandem session's place is free as soon as its close() is called: its STT stream
unwinds in the background (was: close() waited for it, 0.5-0.8 s with the embedded STT, the row
still taken: a client reconnecting right after a clean close got "capacity"). The agent's stop()
still waits for the streams that unwind; the final stats are still right; quick open/close cycles
leave nothing behind. And a session closed during a late step does not count that frame's
missed deadline (it was not due the frame: "frames 0, missed deadlines 1")."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from kame.runtime.backend import BackendBridge

from .fakes import Recorder, SlowCloseSTT, step, wait_for
from .test_engine import make_agent

F = 1920


def slow_agent(stt, max_sessions=1):
    def factory(s):
        return BackendBridge(s, stt, None, s.clock)

    factory.shared = (stt,)  # (the agent's stop() closes it)
    return make_agent(max_sessions=max_sessions, backend=factory)


async def test_a_new_session_opens_while_the_old_ones_stt_still_unwinds():
    stt = SlowCloseSTT()
    agent, clock, _ = slow_agent(stt, max_sessions=1)
    await agent.start()
    s1 = await agent.open_session()
    rec = Recorder(s1)
    await s1.push_audio(np.full(3 * F, 0.1, np.float32))
    await step(agent, clock, 3)
    closing = asyncio.ensure_future(s1.close())
    await wait_for(lambda: stt.unwinding == 1)  # its stream was cancelled and waits to unwind
    s2 = await agent.open_session()  # was: CapacityError (the row was held until the stream unwound)
    assert closing.done() and s2.row == s1.row
    await rec.task  # s1's outputs ended, with its final stats
    assert rec.meta("stats")[-1]["final"]
    await s2.push_audio(np.full(F, 0.1, np.float32))
    await step(agent, clock)  # the new session runs meanwhile
    assert s2.stats.frames == 1 and stt.unwinding == 1
    stt.release.set()
    await s2.close()
    await agent.stop()
    assert stt.log == ["stream unwound", "stream unwound", "stt closed"]


async def test_stop_waits_for_the_streams_of_sessions_closed_before():
    stt = SlowCloseSTT()
    agent, clock, _ = slow_agent(stt)
    await agent.start()
    s = await agent.open_session()
    await step(agent, clock)
    await s.close()
    await wait_for(lambda: stt.unwinding == 1)
    stopping = asyncio.ensure_future(agent.stop())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not stopping.done() and stt.log == []  # the shared STT is not closed under its stream
    stt.release.set()
    await stopping
    assert stt.log == ["stream unwound", "stt closed"]
    assert agent._unwinding == set()


class QuickSTT:
    """Unwinds after a few turns of the loop (not at once)."""

    async def stream(self, frames):
        try:
            async for _ in frames:
                pass
        finally:
            for _ in range(3):
                await asyncio.sleep(0)
        yield


async def test_many_quick_open_close_cycles_leave_nothing_behind():
    agent, clock, _ = make_agent(max_sessions=2, backend=lambda s: BackendBridge(s, QuickSTT(), None, s.clock))
    await agent.start()
    s = await agent.open_session()
    await step(agent, clock)
    await s.close()
    await s.backend.wait_stopped()
    threads = threading.active_count()  # (the step thread runs)
    bridges = []
    for k in range(60):
        s = await agent.open_session()
        bridges.append(s.backend)
        if k % 3 == 0:
            await s.push_audio(np.full(F, 0.1, np.float32))
            await step(agent, clock)
        await s.close()  # and at once the next: its row is free (max_sessions 2 would refuse the third)
    assert len(agent._unwinding) <= 3  # (those done are forgotten as the next close comes)
    await wait_for(lambda: all(b.stopped for b in bridges))
    assert agent.sessions == {} and sorted(agent._free) == [0, 1]
    assert threading.active_count() <= threads
    await agent.stop()
    assert agent._unwinding == set()
    me = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not me and not t.done()] == []


async def test_a_session_closed_during_a_late_step_counts_no_missed_deadline():
    """The session closed while its first frame was stepping; the step ended late. It got no
    frame (frames 0): it missed no deadline (was: missed_deadlines 1)."""
    entered, go = threading.Event(), threading.Event()
    armed = [True]

    def hook():
        if armed[0]:
            armed[0] = False
            entered.set()
            go.wait(5)

    agent, clock, log = make_agent(hook=hook)
    await agent.start()
    s = await agent.open_session()
    await wait_for(entered.is_set)  # its first step runs
    await s.close()
    clock.advance(0.2)  # the step ends 0.12 s late
    go.set()
    await wait_for(lambda: agent.frames == 1)
    assert agent.missed == 1  # (the agent's frame was late)
    assert s.stats.frames == 0 and s.stats.missed_deadlines == 0 and s.stats.max_lateness == 0
    await agent.stop()


async def test_sessions_closed_in_a_burst_cannot_pile_up_unwinding_stt_streams(monkeypatch):
    """A place is free at once, but at most max_sessions (at least UNWINDING_MIN) closed
    sessions' STT streams may unwind at the same time: the next session waits for one of them
    (up to STOP_WAIT_S), then is refused (was: a client cycling quickly piled up STT streams, one
    thread each, without bound)."""
    from kame.runtime import base, engine

    monkeypatch.setattr(engine, "STOP_WAIT_S", 0.05)
    stt = SlowCloseSTT()
    agent, clock, _ = slow_agent(stt, max_sessions=1)
    await agent.start()
    for n in range(base.UNWINDING_MIN):
        s = await agent.open_session()
        await step(agent, clock)
        await s.close()
        await wait_for(lambda: stt.unwinding == n + 1)
    with pytest.raises(base.CapacityError, match="4 closed sessions are still shutting down"):
        await agent.open_session()
    assert stt.streams == base.UNWINDING_MIN  # (no stream started for it)
    monkeypatch.setattr(engine, "STOP_WAIT_S", 30.0)
    opening = asyncio.ensure_future(agent.open_session())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not opening.done()  # it waits for one to unwind ...
    stt.release.set()
    s = await opening  # ... and opens once one has
    await s.close()
    await agent.stop()
