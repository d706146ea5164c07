"""A request queued behind one cancelled while the embedded LLM's child reads its prompt (review r7
finding 1), with stand-in children (no model load): the dispatcher waits for that read (the child
cannot stop in it), and the stall timers of the request behind it, next_within's (the oracle's and
the cascade's) and stream_chat's own, wait for it as for a reload (``reading_prompt``), then count from
its end (was: "LLM embedded stalled: nothing for 10.00 s", or "nothing from its child for 60 s
(hung, or a queue of requests that long)", each time the rest of the read outlasted them)."""

import asyncio
import logging

import pytest

from kame.backend import childproc
from kame.runtime import clock
from kame.runtime.backend import WatchedLLM
from kame.runtime.clock import MonotonicClock, next_within, waits_for_reload

from .test_llm_embedded_hung import MSGS, _llm, _until
from .test_llm_embedded_prefill import _cancel_during_the_read, _reads_until_told, _worker


async def _behind_a_cancelled_read(stall_timeout, wait, seen):
    """The first request reads its prompt until told (TOKENS x 0.1 s allowed) and is cancelled
    during the read; a second request's first piece is awaited by ``wait(llm, stream)``. Once
    ``seen()`` (the timer of the second runs out and it waits on) or the second request's end,
    the read ends. Returns the second request's first piece (or raises its error) and the log."""
    finish = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_reads_until_told, finish)
    first = worker.proc
    try:
        llm = _llm(worker, stall_timeout=stall_timeout)
        await _cancel_during_the_read(llm, worker)
        await _until(lambda: worker.cancel.value != 0)  # the dispatcher passed the cancel on (the read goes on)
        second = llm.stream_chat(MSGS)
        piece = asyncio.ensure_future(wait(llm, second))
        await _until(lambda: seen() or piece.done())
        finish.value = 1  # the read ends (its first token, then its end), then the second request runs
        try:
            return await asyncio.wait_for(piece, 20)
        finally:
            await second.aclose()
            assert worker.proc is first and worker.restarts == 0  # (no kill, no reload)
    finally:
        finish.value = 1
        worker.close()


@pytest.mark.parametrize("watched", [False, True], ids=["cascade", "oracle"])
async def test_the_oracles_and_the_cascades_timer_waits_for_a_cancelled_requests_prompt_read(monkeypatch, caplog,
                                                                                               watched):
    """(The tandem's oracle sees the LLM through kame.runtime.backend.WatchedLLM, which passes it on.)"""
    monkeypatch.setattr(clock, "RELOAD_POLL_S", 0.05)
    said = []

    async def wait(llm, stream):  # (the first-piece timer runs out during the read: 0.5 s)
        if watched:
            llm = WatchedLLM(llm, lambda ok, err: None, "embedded")
        return await next_within(stream, MonotonicClock(), 0.5, loading=llm, limit=20,
                                 on_reload=lambda: said.append(waits_for_reload("LLM embedded", llm)))

    with caplog.at_level(logging.DEBUG, logger="kame.backend.llm.embedded"):
        assert await _behind_a_cancelled_read(30, wait, lambda: said) == "hello"
    assert said == ["waits for LLM embedded, which reads a prompt (it cannot stop in it, nor say anything before "
                    "its first token)"]
    [rec] = [r for r in caplog.records if "finishes reading the prompt (1000 tokens)" in r.getMessage()]
    assert rec.levelno == logging.DEBUG and rec.getMessage().startswith(  # (not INFO: the oracle cancels all the time)
        "the embedded LLM child finishes reading the prompt (1000 tokens) of a cancelled request, which it cannot "
        "stop before its first token; a request behind it waits for that read (up to "), rec.getMessage()


async def test_stream_chats_own_timer_waits_for_a_cancelled_requests_prompt_read():
    async def wait(llm, stream):  # (its stall_timeout, 0.8 s, runs out during the read, several times)
        return await stream.__anext__()

    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await _behind_a_cancelled_read(0.8, wait, lambda: loop.time() - start > 2.0) == "hello"
