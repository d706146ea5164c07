"""An LLM stream that swallows its cancellation in a loop (a plugin catching CancelledError): the
cascade agent's stop() gives it LEAVE_AFTER_S more, then names it in a warning and detaches it from
the loop, so the program's asyncio.run(main()) ends (was: stop() returned and asyncio.run's end
waited for the task for ever, silently). (asyncio.run's end may still log an ERROR for the async
generators it runs: the warning says so.)"""

import asyncio
import logging

from .test_open_close import stubborn_reply


async def test_stop_detaches_a_stream_that_swallows_its_cancellation(monkeypatch, caplog):
    agent, _, released = await stubborn_reply(monkeypatch)
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
