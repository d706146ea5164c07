"""FakeClock.sleepers(): the sleeps still waiting on the clock, and the runtime fakes' step()
built on it (it advances the clock only while the ticker sleeps on it)."""

import asyncio
import threading

import pytest

from kame.runtime.base import AgentAudio
from kame.runtime.clock import FakeClock

from .fakes import Recorder, step, ticker_waits, wait_for
from .test_engine import make_agent


async def test_sleepers_are_the_sleeps_still_waiting_soonest_first():
    clock = FakeClock()
    a, b, c = (asyncio.create_task(clock.sleep(t)) for t in (2.0, 1.0, 3.0))
    await asyncio.sleep(0)
    assert clock.sleepers() == [(1.0, b), (2.0, a), (3.0, c)]
    c.cancel()  # (its entry stays in the heap until it is due: not a sleeper)
    assert clock.sleepers() == [(1.0, b), (2.0, a)]
    clock.advance(1.0)  # b is woken: no sleeper, though it has not run yet
    assert clock.sleepers() == [(2.0, a)]
    await b
    clock.advance(1.0)
    await a
    assert clock.sleepers() == []  # (c's entry is still in the heap, due at 3.0)
    await clock.sleep(0)  # (due at once: never waits)
    assert clock.sleepers() == []


async def test_step_waits_for_the_frame_the_ticker_runs_at_once_after_a_late_one():
    """A frame that ends late is followed at once by a re-anchored one, without the clock: step()
    returns after both, with the ticker asleep again (was: it returned after the late one, and the
    next step() advanced the clock while the other was in the worker: a frame late for nothing)."""
    slow = {"n": 0}
    loop = asyncio.get_running_loop()

    def hook():  # this step takes 0.2 s of the clock (advanced from the worker, thread-safely)
        if slow["n"] > 0:
            slow["n"] -= 1
            done = threading.Event()
            loop.call_soon_threadsafe(lambda: (clock.advance(0.2), done.set()))
            done.wait(5)

    agent, clock, log = make_agent(hook=hook)
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    await step(agent, clock, 3)
    slow["n"] = 1
    await step(agent, clock)  # 0.12 s late
    assert agent.frames == 5 and ticker_waits(agent, clock)  # the late frame, then the re-anchored one
    await step(agent, clock, 2)
    assert agent.frames == 7 and log.values("missed_deadline") == pytest.approx([0.12])
    await s.close()
    await rec.task
    # 80 ms apart; the late frame (due at 0.24) ends at 0.44, the next one runs then; 80 ms apart again
    assert [round(o.t, 2) for o in rec.items if isinstance(o, AgentAudio)] == [0.0, 0.08, 0.16, 0.44, 0.44, 0.52, 0.6]
    await agent.stop()


async def test_step_takes_the_frame_of_a_ticker_woken_by_a_new_session_without_the_clock():
    agent, clock, _ = make_agent()
    await agent.start()
    s = await agent.open_session()
    await step(agent, clock, 2)
    await s.close()
    clock.advance(0.08)  # the ticker wakes to no session ...
    await wait_for(lambda: not agent._wake.is_set())  # ... and waits for one
    s = await agent.open_session()
    rec = Recorder(s)
    t = clock.now()
    await step(agent, clock, 2)  # the first frame at once, the second 80 ms later
    assert agent.frames == 4 and clock.now() == pytest.approx(t + 0.08)
    await s.close()
    await rec.task
    assert [o.t for o in rec.items if isinstance(o, AgentAudio)] == pytest.approx([t, t + 0.08])
    await agent.stop()
