"""A component's own faults, as a plugin author meets them: an exception that is not kame's (a bug)
is logged with where it was raised and, with `kame -v`, its traceback; a stream that ignores its
cancellation is left behind under a name that says whose it is."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kame.backend.llm.base import text_stream
from kame.backend.types import ChatMessage
from kame.runtime.backend import BackendBridge
from kame.runtime.clock import FakeClock, next_within
from kame.runtime.interrupt import run_to_end
from kame.runtime.sttloop import STTSupervisor

from .test_backend_bridge import finish, make_agent, talk


class BuggySTT:
    async def stream(self, frames):
        {}["no such key"]  # (a plugin's bug)
        yield


@pytest.mark.parametrize("debug", [False, True])
async def test_an_stt_s_own_bug_is_logged_with_where_it_was_raised(caplog, debug):
    """Was "stt mystt failed: KeyError: 'no such key' (restart in 0.08 s)": no file, no line, no
    traceback even with -v."""
    line = BuggySTT.stream.__code__.co_firstlineno + 1
    caplog.set_level(logging.DEBUG if debug else logging.WARNING, logger="kame.runtime.backend")
    agent, clock, _ = make_agent(lambda s: BackendBridge(s, BuggySTT(), None, s.clock, retry_s=0.08, stt_name="mystt"))
    s, rec = await talk(agent, clock, 3)
    await finish(agent, s, rec)
    said = [r for r in caplog.records if r.name == "kame.runtime.backend" and r.levelno == logging.WARNING]
    assert said and said[0].getMessage() == (f"session {s.id}: stt mystt failed: KeyError: 'no such key' "
                                             f"(restart in 0.08 s) (at test_component_bugs.py:{line})")
    assert (said[0].exc_info is not None) is debug


class Stubborn:
    """A plugin LLM / STT whose stream swallows its cancellation (until ``released``)."""

    name = "stubborn"
    released = False

    async def _forever(self):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if self.released:
                    raise

    async def stream_chat(self, messages, **kw):
        await self._forever()
        yield "never"

    async def stream(self, frames):
        await self._forever()
        yield None


def test_a_stream_left_behind_is_named_after_its_component(caplog):
    """run_to_end's warning named the LLM's task "next item of text_stream" (whose?) and the STT's
    "stt-stream-s1"; each name now says the component, once with its count."""
    async def main():
        clock, stub = FakeClock(), Stubborn()
        for _ in range(2):  # (two readers of its replies: one name, counted)
            asyncio.ensure_future(next_within(text_stream(stub.stream_chat([ChatMessage("user", "hi")]), stub),
                                              clock, 3600))
        sup = STTSupervisor(stub, clock, who="s1", on_transcript=None, on_failure=None)
        asyncio.ensure_future(sup.run())
        for _ in range(5):
            await asyncio.sleep(0)
        return "done"

    with caplog.at_level(logging.WARNING, logger="kame.runtime.interrupt"):
        assert run_to_end(main(), leave_after=0.05) == "done"
    said = [r.getMessage() for r in caplog.records if "did not stop" in r.getMessage()]
    assert len(said) == 1, said
    assert "next item of LLM stubborn's reply (2 tasks)" in said[0], said
    assert "STT stubborn's stream (session s1)" in said[0], said


async def test_an_stt_stream_that_does_not_stop_is_named(caplog, monkeypatch):
    """Was "session s1: the STT stream did not stop within 2 s of its cancellation": whose?"""
    from kame.runtime import sttloop

    monkeypatch.setattr(sttloop, "STOP_WAIT_S", 0.05)
    stub = Stubborn()
    sup = STTSupervisor(stub, FakeClock(), who="s1", on_transcript=None, on_failure=None)
    run = asyncio.ensure_future(sup.run())
    for _ in range(5):
        await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.WARNING, logger="kame.runtime.sttloop"):
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
        assert [r.getMessage() for r in caplog.records if r.name == "kame.runtime.sttloop"] == [
            "session s1: STT stubborn's stream did not stop within 0 s of its cancellation"]
    finally:
        stub.released = True  # (let it end: the test's loop cancels what is left when it closes)
