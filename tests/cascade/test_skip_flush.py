"""CascadeSession.skip_flush (kame serve's shutdown): close() waits for no last transcript of the
STT, though a reader waits, and a close already waiting for one stops waiting; the final "stats"
come at once and the stream unwinds in the background (agent.stop() waits for it). Without it a
reader's close still waits for the last final (file mode, a client's END_INPUT)."""

import asyncio

from kame.cascade import session as cascade_session
from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeLLM, FakeTTS, speech_frame
from .test_open_close import FinalAtEndSTT, SlowToStopSTT, _spin
from .test_session import _agent


async def test_skip_flush_ends_a_close_that_waits_for_the_last_final(monkeypatch):
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)
    clock, gate = FakeClock(), asyncio.Event()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=FinalAtEndSTT(gate))
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(speech_frame(), frames=5)
    closing = asyncio.create_task(d.close())
    await _spin()
    assert not closing.done()  # a reader: the close waits for the STT's last final
    s.skip_flush()
    await asyncio.wait_for(closing, 5)  # (was: until CLOSE_GRACE_S)
    assert d.metas("stats")[-1]["final"]
    assert not [m for m in d.metas("transcript") if m["final"]]
    gate.set()
    await agent.stop()


async def test_after_skip_flush_a_close_asks_for_no_last_final(monkeypatch):
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)
    clock, stt = FakeClock(), SlowToStopSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt)
    s = await agent.open_session()
    d = Driver(clock, s)  # (its reader reads on: without skip_flush the close would wait for a final)
    await d.step(speech_frame(), frames=5)
    s.skip_flush()
    await asyncio.wait_for(d.close(), 5)
    assert d.metas("stats")[-1]["final"]
    assert stt.flushed == 0 and stt.unwound == 0  # no last decode asked for; the stream still unwinds
    stopping = asyncio.create_task(agent.stop())
    await _spin()
    assert not stopping.done()  # stop() waits for it
    stt.release.set()
    await stopping
    assert s.stopped and stt.unwound == 1
