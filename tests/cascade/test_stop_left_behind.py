"""An LLM stream that swallows its cancellation in a loop (a plugin catching CancelledError): the
cascade agent's stop() gives it LEAVE_AFTER_S more, then names it in a warning and detaches it from
the loop, so the program's asyncio.run(main()) ends (was: stop() returned and asyncio.run's end
waited for the task for ever, silently). (asyncio.run's end may still log an ERROR for the async
generators it runs: the warning says so.)"""

import asyncio
import logging

from kame.runtime import interrupt
from kame.runtime.clock import FakeClock

from .fakes import FakeTTS
from .test_open_close import CleanupLLM, _closed_mid_reply
from .test_session import _agent


async def test_stop_detaches_a_stream_that_swallows_its_cancellation(monkeypatch, caplog):
    from kame.cascade import session as cascade_session

    monkeypatch.setattr(cascade_session, "STOP_WAIT_S", 0.05)
    monkeypatch.setattr(interrupt, "LEAVE_AFTER_S", 0.05)
    clock = FakeClock()
    llm = CleanupLLM(clock)
    released = asyncio.Event()

    async def never(self=llm):
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                pass  # swallowed, every time

    llm.done.wait = never
    agent, _ = await _agent(clock, llm, FakeTTS(clock))
    await _closed_mid_reply(agent, clock)
    try:
        with caplog.at_level(logging.WARNING, logger="kame.runtime.interrupt"):
            await asyncio.wait_for(agent.stop(), 30)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not [t.get_name() for t in others if "reply" in t.get_name()]  # (asyncio.run's end would wait)
        assert any(r.getMessage().startswith("cascade: ") and "did not stop within 0.05 s" in r.getMessage()
                   and "left behind" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        released.set()
        for _ in range(50):
            await asyncio.sleep(0)
