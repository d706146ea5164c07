"""Opening and closing cascade sessions: a closed session's place is free at once (a client that
reconnects is not refused "capacity" while the old STT stream unwinds), a reader still gets the
STT's last final (file mode), and the VAD is built off the event loop."""

import asyncio
import threading

import numpy as np
import pytest

from kame.backend.types import Transcript, Word
from kame.cascade import session as cascade_session
from kame.errors import KameError
from kame.runtime.base import CapacityError, Meta
from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeLLM, FakeTTS, FakeVAD, speech_frame
from .test_session import _agent


async def _spin(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class SlowToStopSTT:
    """Takes frames; once cancelled its stream needs ``release`` before it has unwound (as a
    worker thread finishing a decode). ``flushed``: its frames ended (it would decode a final)."""

    name = "slow-to-stop"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.flushed = self.unwound = 0

    async def stream(self, frames):
        try:
            async for _ in frames:
                pass
            self.flushed += 1
            await asyncio.Event().wait()
            yield
        finally:
            await self.release.wait()
            self.unwound += 1


class FinalAtEndSTT:
    """Says nothing until its frames end, then flushes the utterance under way as a final (after
    ``gate``, if given)."""

    name = "final-at-end"

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate

    async def stream(self, frames):
        t = 0.0
        async for f in frames:
            t = f.t + 0.08
        if self.gate is not None:
            await self.gate.wait()
        yield Transcript((Word("last", t - 0.6, t - 0.3), Word("words", t - 0.3, t)), True, t)


async def test_a_close_nobody_reads_frees_the_place_before_the_stt_has_stopped(monkeypatch):
    """A server's client left (close 1000): its reader is gone. close() frees the place and returns
    at once, without the STT's grace (was: up to CLOSE_GRACE_S + STOP_WAIT_S, ~7 s, during which a
    reconnect got HTTP 503 "capacity"); the stream is cancelled, not asked to flush a final nobody
    would get, and unwinds in the background; agent.stop() waits for it."""
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)
    clock, stt = FakeClock(), SlowToStopSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt, **{"runtime.max_sessions": 1})
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(speech_frame(), frames=5)
    d._task.cancel()  # the server's pump: cancelled when the client leaves, before session.close()
    await asyncio.gather(d._task, return_exceptions=True)
    closing = asyncio.create_task(s.close())
    await _spin()
    assert closing.done() and not agent.sessions  # freed, and close() is over
    again = await agent.open_session()  # the client reconnects: not refused
    assert not s.stopped and stt.unwound == 0  # while the old stream is still unwinding
    assert stt.flushed == 0  # it was not asked for a last final
    outs = [o async for o in s.outputs()]  # (the outputs still end with the final stats)
    assert isinstance(outs[-1], Meta) and outs[-1].data["type"] == "stats" and outs[-1].data["final"]
    stopping = asyncio.create_task(agent.stop())
    await _spin()
    assert not stopping.done()  # stop() waits for the old stream (no task left behind)
    stt.release.set()
    await stopping
    assert s.stopped and again.stopped and stt.unwound == 2


async def test_a_close_with_a_reader_flushes_the_last_final_and_frees_the_place_at_once(monkeypatch):
    """File mode reads the outputs until they end: close() lets the STT flush the utterance under
    way (its final still comes), and the session's place is free while it does (was: only after)."""
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)
    clock, gate = FakeClock(), asyncio.Event()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=FinalAtEndSTT(gate),
                            **{"runtime.max_sessions": 1})
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(speech_frame(), frames=5)
    closing = asyncio.create_task(d.close())
    await _spin()
    assert not closing.done() and not agent.sessions  # flushing; the place is free already
    other = await agent.open_session()
    gate.set()
    await closing
    finals = [m["text"] for m in d.metas("transcript") if m["final"]]
    assert finals == ["last words"] and d.metas("stats")[-1]["final"]
    await other.close()
    await agent.stop()


async def test_file_mode_still_gets_the_final_the_stt_flushes_at_the_end():
    """kame run --mode cascade ends its session with close() while it reads the outputs: the STT's
    last final (speech to the very end of the file) is in the record."""
    from kame.config import load_config
    from kame.runtime.filemode import run_conversation

    clock = FakeClock(start=0.08)
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=FinalAtEndSTT())
    pcm = np.concatenate([speech_frame()] * 10)  # speech until the end (no tail of silence)
    rec = await run_conversation(load_config(None, {"mode": "cascade"}), pcm, fast=True, agent=agent, clock=clock)
    assert [t["text"] for t in rec["transcripts"] if t["final"]] == ["last words"]


async def test_the_vad_is_built_off_the_event_loop():
    """A silero VAD is an onnxruntime session (~75-170 ms): built on the loop it stalled every
    other session (was: open_session called the factory there)."""
    clock, built_on = FakeClock(), []

    def factory():
        built_on.append(threading.get_ident())
        return FakeVAD()

    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), vad=factory)
    s = await agent.open_session()
    assert built_on and threading.get_ident() not in built_on
    await s.close()
    await agent.stop()


async def test_a_session_whose_vad_is_being_built_holds_its_place_and_id():
    clock, entered, go = FakeClock(), threading.Event(), threading.Event()

    def factory():
        entered.set()
        go.wait(30)
        return FakeVAD()

    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), vad=factory, **{"runtime.max_sessions": 1})
    first = asyncio.create_task(agent.open_session("alice"))
    await asyncio.to_thread(entered.wait, 30)
    with pytest.raises(CapacityError, match=r"^the only session is in use \(runtime.max_sessions\)$"):
        await agent.open_session()
    go.set()
    s = await first
    assert s.id == "alice" and list(agent.sessions) == ["alice"]
    # stop() while a session opens: it is refused, not left open behind the stopped agent
    entered.clear()
    go.clear()
    await s.close()
    opening = asyncio.create_task(agent.open_session("bob"))
    await asyncio.to_thread(entered.wait, 30)
    stopping = asyncio.create_task(agent.stop())
    await _spin()
    go.set()
    with pytest.raises(KameError, match="the agent stopped while session bob was opening"):
        await opening
    await stopping
    assert not agent.sessions


async def test_open_session_while_the_agent_stops_is_refused():
    """(was: a session opened while stop() closed the others stayed registered and running after
    the agent had stopped; its push_audio then raised RuntimeError)"""
    clock, stt = FakeClock(), SlowToStopSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt)
    s = await agent.open_session()
    stopping = asyncio.create_task(agent.stop())  # waits for s's STT stream to unwind
    await _spin()
    assert not stopping.done()
    with pytest.raises(KameError, match="the agent is stopping; no new session"):
        await agent.open_session()
    stt.release.set()
    await stopping
    assert s.stopped and not agent.sessions


class CleanupLLM(FakeLLM):
    """Its stream's cleanup (closing an HTTP response) waits for ``done``; records the order of
    that cleanup and of the component's own aclose()."""

    def __init__(self, clock) -> None:
        super().__init__(clock, ["Paris", " is", " the", " capital."] * 20, delay=0.2)
        self.done, self.order = asyncio.Event(), []

    async def stream_chat(self, messages, **kw):
        try:
            async for p in super().stream_chat(messages, **kw):
                yield p
        finally:
            await self.done.wait()
            self.order.append("stream cleaned up")

    async def aclose(self):
        self.order.append("component closed")


async def _closed_mid_reply(agent, clock):
    """A session asked a question, closed by a server whose client left while the reply streams."""
    from kame.runtime.base import AgentText

    s = await agent.open_session()
    d = Driver(clock, s)
    s.stt.say("what is the capital of france", clock.now())
    for _ in range(30):
        await d.step()
        if any(isinstance(o, AgentText) for o in d.out):
            break
    assert s._reply is not None and s._reply.active
    d._task.cancel()  # (the server's pump, before session.close())
    await asyncio.gather(d._task, return_exceptions=True)
    await s.close()
    return s


async def test_stop_waits_for_the_reply_a_close_cancelled():
    """A session closed mid-reply with nobody reading: its cancelled reply unwinds in the
    background, and the agent's stop() waits for it before closing the LLM (was: the LLM stream's
    cleanup ran after the LLM was closed, a task left after stop())."""

    clock = FakeClock()
    llm = CleanupLLM(clock)
    agent, _ = await _agent(clock, llm, FakeTTS(clock))
    s = await _closed_mid_reply(agent, clock)
    stopping = asyncio.create_task(agent.stop())
    await _spin()
    assert not stopping.done() and not s.stopped and llm.order == []
    llm.done.set()
    await stopping
    assert llm.order == ["stream cleaned up", "component closed"] and s.stopped


async def test_a_reader_that_awaits_between_items_still_gets_the_last_final(monkeypatch):
    """A reader counts from its first item until it ends or is closed, not only while it waits
    inside outputs() (was: one awaiting in its loop body, as the server's pump does, got no final).
    A reader that is closed (the server's pump, aclosing) no longer counts: close() does not flush."""
    import contextlib

    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=FinalAtEndSTT())
    s = await agent.open_session()
    got, busy = [], asyncio.Event()

    async def reader():
        async for out in s.outputs():
            if isinstance(out, Meta) and out.data.get("type") == "transcript" and out.data["final"]:
                got.append(out.data["text"])
            await busy.wait()  # work between items (a send to a slow client)

    task = asyncio.create_task(reader())
    for _ in range(5):
        await s.push_audio(speech_frame())
        clock.advance(0.08)
        await _spin(5)
    busy.set()
    await s.close()
    await task
    assert got == ["last words"]
    # a closed reader (the server's pump when its client left) does not hold close() up
    s2 = await agent.open_session()
    async with contextlib.aclosing(s2.outputs()) as outs:
        assert isinstance(await outs.__anext__(), Meta) and s2._readers == 1  # (its "info")
    assert s2._readers == 0  # (a pump cancelled in its loop body, then closed: no reader)
    await s2.close()
    await agent.stop()


async def stubborn_reply(monkeypatch):
    """A cascade agent whose session was closed mid-reply, its LLM stream swallowing its cancellation
    while closing (till ``released`` is set: the test's loop would wait for it); STOP_WAIT_S and
    LEAVE_AFTER_S cut to 0.05 s. -> (agent, llm, released)."""
    from kame.runtime import interrupt

    monkeypatch.setattr(cascade_session, "STOP_WAIT_S", 0.05)
    monkeypatch.setattr(interrupt, "LEAVE_AFTER_S", 0.05)  # (then stop() names it and detaches it)
    clock = FakeClock()
    llm = CleanupLLM(clock)  # its cleanup waits for llm.done, never set here ...
    released = asyncio.Event()

    async def never(self=llm):
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                pass  # ... and swallows the cancellation, every time

    llm.done.wait = never
    agent, _ = await _agent(clock, llm, FakeTTS(clock))
    await _closed_mid_reply(agent, clock)
    return agent, llm, released


async def test_stop_leaves_a_cancelled_reply_whose_stream_never_closes(monkeypatch):
    """An LLM stream that swallows its cancellation while closing: stop() waits for the cancelled
    reply at most STOP_WAIT_S (was: for ever, and kame run wrote nothing)."""
    agent, llm, released = await stubborn_reply(monkeypatch)
    await asyncio.wait_for(agent.stop(), 30)  # (returns: the stuck stream is left behind)
    assert llm.order == ["component closed"]
    released.set()
    await _spin()
