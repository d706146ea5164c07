"""Prompt reads and the stall timers of the requests queued behind them (review r7 findings 2 and 5),
with a stand-in child (no model load) and FakeClocks:

- the end of a read moves the embedded LLM's ``loaded_at`` (a wait that began and ended within a
  timer: the whole limit again) only for a read of at least kame.runtime.clock.RELOAD_POLL_S (was:
  every read, however short, so a request queued behind N others got about (1+N) times its first-piece
  limit, and said it waited for a prompt read when it waited for another request's generation);
- a timer that saw a short read going on says "after it finished reading a prompt" (that read does
  not move ``loaded_at``), and one that waited RELOAD_WAIT_S for reads says so, not "(re)loading its
  model" only."""

import asyncio

import pytest

from kame.backend import childproc
from kame.runtime import clock as clock_mod
from kame.runtime.clock import RELOAD_WAIT_S, FakeClock, NothingWithin, next_within, waits_for_reload

from .test_llm_embedded_hung import MSGS, _llm, _until, requests
from .test_llm_embedded_prefill import _wait_for, _worker
from .test_llm_embedded_read_signals import _close


def _reads_when_told(conn, cancel, flags):
    """Loads; each request: says it reads a prompt of 5 tokens, "reads" until flags[0] is set, gives
    "hello", then goes on "generating" until flags[1] is set, and ends."""
    for req_id in requests(conn):
        conn.send(("prompt", req_id, 5))
        _wait_for(lambda: flags[0])
        conn.send(("text", req_id, "hello"))
        _wait_for(lambda: flags[1])
        conn.send(("end", req_id, (1, 0.0)))


@pytest.mark.parametrize("poll_s, counts", [(600.0, False), (0.0, True)], ids=["short read", "long read"])
async def test_a_read_shorter_than_a_poll_gives_the_request_behind_it_no_more_time(monkeypatch, poll_s, counts):
    """A's read ends within B's 1 s first-piece timer (B queued behind A, whose generation then goes
    on): a read shorter than RELOAD_POLL_S (600 s here: any) held B's timer up for less than a poll,
    and B stalls when its limit runs out; one at least that long (0 s here: any) gets B the limit again."""
    monkeypatch.setattr(clock_mod, "RELOAD_POLL_S", poll_s)
    flags = childproc.CTX.Array("b", 2, lock=False)
    worker = _worker(_reads_when_told, flags)
    clock, said, streams, b = FakeClock(), [], [], None
    try:
        llm = _llm(worker, stall_timeout=30)
        streams.append(llm.stream_chat(MSGS))
        a = asyncio.ensure_future(streams[0].__anext__())
        await _until(lambda: worker.reading_prompt)  # A's child reads
        streams.append(llm.stream_chat(MSGS))
        b = asyncio.ensure_future(next_within(streams[1], clock, 1.0, loading=llm, limit=1.0,
                                              on_reload=lambda: said.append(waits_for_reload("LLM embedded", llm))))
        await _until(lambda: len(clock.sleepers()) == 1)  # (B's timer runs, from before the read's end)
        flags[0] = 1  # A's read ends: its first piece; its generation goes on
        assert await asyncio.wait_for(a, 20) == "hello"
        assert (worker.finished_at == worker.loaded_at > 0) is counts and not worker.reading_prompt
        clock.advance(1.0)  # B's limit runs out
        await _until(lambda: b.done() or any(d > 1.0 for d, _ in clock.sleepers()))
        if counts:  # (as before: the whole limit again after the read)
            assert not b.done() and said == ["waits for LLM embedded, which was reading a prompt"]
            clock.advance(1.0)
        with pytest.raises(NothingWithin) as stalled:
            await asyncio.wait_for(b, 20)
        assert stalled.value.reloaded is counts
        assert stalled.value.why("LLM embedded", "1", "plain") == (
            "LLM embedded stalled: nothing for 1 s after it finished reading a prompt" if counts else "plain")
        assert said == (["waits for LLM embedded, which was reading a prompt"] if counts else [])
    finally:
        flags[0] = flags[1] = 1
        for stream in streams:
            await _close(stream, b)
        worker.close()


class _Part:
    """An LLM as the stall timers see it: ``reading_prompt`` while it reads a prompt; ``loaded_at`` set by a
    load at 5.0 (a short read does not move it)."""
    state, reading_prompt, loaded_at, finished_at = "up", False, 5.0, None


async def _settle(clock, t):
    clock.set(t)
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_timer_that_saw_a_short_read_says_it_followed_a_read():
    part, clock = _Part(), FakeClock()

    async def never():
        await clock.sleep(1e9)
        yield "never"

    part.reading_prompt = True
    waiting = asyncio.ensure_future(next_within(never(), clock, 1.0, loading=part, limit=1.0))
    await _settle(clock, 0.0)
    await _settle(clock, 1.0)  # it runs out during the read: waits on
    part.reading_prompt = False  # a short read: loaded_at stays the load's
    await _settle(clock, 2.0)  # its poll sees the end: the limit again
    await _settle(clock, 3.0)
    with pytest.raises(NothingWithin) as stalled:
        await asyncio.wait_for(waiting, 5)
    assert stalled.value.why("LLM embedded", "1", "plain") == (
        "LLM embedded stalled: nothing for 1 s after it finished reading a prompt")  # (was: "reloaded its model")


async def test_a_timer_that_waited_its_whole_reload_wait_for_reads_says_so():
    part, clock = _Part(), FakeClock()

    async def never():
        await clock.sleep(1e9)
        yield "never"

    part.reading_prompt = True  # (a queue of long reads, each ended by the next's start)
    waiting = asyncio.ensure_future(next_within(never(), clock, 1.0, loading=part, limit=1.0))
    await _settle(clock, 0.0)
    for t in range(1, int(RELOAD_WAIT_S) + 3):
        await _settle(clock, float(t))
        if waiting.done():
            break
    with pytest.raises(NothingWithin) as stalled:
        await asyncio.wait_for(waiting, 5)
    assert stalled.value.why("LLM embedded", "1", "plain") == (
        f"LLM embedded still (re)loading its model or reading prompts after {RELOAD_WAIT_S:.0f} s")
