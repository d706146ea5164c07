"""Edges of stopping the tandem: a session waiting for room while a whole stop() runs is refused
(was: opened on the stopped agent, worker None); a call to a closed step thread is a KameError
that names the thread (was: a bare RuntimeError, a 500 in the server); a closed session's
unwinding ends when the loop's end cancels it (was: it swallowed its own cancellation) and a
program that closes its sessions and ends its loop without stopping the agent gets no warning."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kame.errors import KameError
from kame.runtime import base, engine
from kame.runtime.worker import StepThread

from .fakes import SlowCloseSTT, step, wait_for
from .test_close_frees_at_once import slow_agent

ROOT = Path(__file__).resolve().parents[2]


async def test_a_session_waiting_for_room_is_refused_if_a_whole_stop_ran_meanwhile(monkeypatch):
    monkeypatch.setattr(engine, "STOP_WAIT_S", 30.0)
    stt = SlowCloseSTT()
    agent, clock, _ = slow_agent(stt, max_sessions=1)
    await agent.start()
    for n in range(base.UNWINDING_MIN):  # as many closed sessions still unwinding as may be
        s = await agent.open_session()
        await step(agent, clock)
        await s.close()
        await wait_for(lambda: stt.unwinding == n + 1)
    real, stopped = engine.room_to_unwind, asyncio.Event()

    async def room(*args):
        await real(*args)  # the opener waits for one of them ...
        await stopped.wait()  # ... and runs again only once stop() has returned (as the loop may order it)

    monkeypatch.setattr(engine, "room_to_unwind", room)
    opening = asyncio.ensure_future(agent.open_session())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not opening.done()
    stt.release.set()  # (so stop() can end)
    await agent.stop()
    assert not agent._stopping and agent.worker is None
    stopped.set()
    with pytest.raises(KameError, match="the agent was stopped while a session was opening"):
        await opening
    assert agent.sessions == {}


def test_a_call_to_a_closed_step_thread_is_a_kame_error_naming_the_thread():
    t = StepThread("kame-cascade-vad")
    t.close()
    with pytest.raises(KameError, match="the kame-cascade-vad thread is shut down .*start the agent again"):
        t.submit(lambda: 1)
    t.ended.result(10)


async def test_a_stopped_bridges_unwinding_ends_when_it_is_cancelled_itself():
    """asyncio.run's end cancels every task: the unwinding goes (was: it swallowed that
    cancellation and went on awaiting the STT stream); wait_stopped() does not raise it."""
    stt = SlowCloseSTT()
    agent, clock, _ = slow_agent(stt)
    await agent.start()
    s = await agent.open_session()
    await step(agent, clock)
    await s.close()
    await wait_for(lambda: stt.unwinding == 1)
    unwinding = s.backend._unwinding
    unwinding.cancel()
    await asyncio.wait({unwinding})
    assert unwinding.cancelled()
    await s.backend.wait_stopped()  # (returns: not the unwinding's cancellation)
    stt.release.set()
    await wait_for(lambda: stt.unwinding == 0)
    await agent.stop()


PROGRAM = textwrap.dedent("""
    import asyncio, gc, sys, time
    import numpy as np
    from kame.runtime.backend import BackendBridge
    from tests.runtime.fakes import FakeSTT
    from tests.runtime.test_engine import make_agent

    class JoinsSTT(FakeSTT):  # as the embedded STT: its stream, cancelled, joins a thread

        async def stream(self, frames):
            try:
                async for tr in super().stream(frames):
                    yield tr
            finally:
                await asyncio.to_thread(time.sleep, 0.05)

    async def main(slow):
        stt = JoinsSTT() if slow else FakeSTT()
        agent, clock, _ = make_agent(max_sessions=2, backend=lambda s: BackendBridge(s, stt, None, s.clock))
        for _ in range(2):
            s = await agent.open_session()
            await s.push_audio(np.full(1920, 0.1, np.float32))
            for _ in range(10):
                await asyncio.sleep(0)
            await s.close()  # and no agent.stop(): the loop ends with its STT stream unwinding

    for slow in (True, False):
        asyncio.run(main(slow))
        gc.collect()
    print("ended")
""")


def test_closing_sessions_and_ending_the_loop_without_stopping_the_agent_warns_of_nothing():
    out = subprocess.run([sys.executable, "-X", "dev", "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "ended" in out.stdout, out.stderr
    for bad in ("Task was destroyed", "never retrieved", "was never awaited", "Traceback"):
        assert bad not in out.stderr, out.stderr
