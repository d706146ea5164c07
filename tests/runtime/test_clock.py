"""kame.runtime.clock.next_within: the next item of a stream within a time on the clock."""

import asyncio

import pytest

from kame.runtime.clock import END, FakeClock, MonotonicClock, NothingWithin, next_within


async def _items(*xs, wait=0.0):
    for x in xs:
        await asyncio.sleep(wait)
        yield x


async def test_items_then_the_end_then_nothing_within():
    clock = FakeClock()
    stream = _items("a", "b")
    assert await next_within(stream, clock, 1.0) == "a"
    assert await next_within(stream, clock, 1.0) == "b"
    assert await next_within(stream, clock, 1.0) is END

    async def late():
        await clock.sleep(5.0)
        yield "too late"

    waiting = asyncio.ensure_future(next_within(late(), clock, 1.0))
    for _ in range(3):
        await asyncio.sleep(0)
    clock.advance(1.0)
    with pytest.raises(NothingWithin):
        await waiting


async def test_a_stream_that_ignores_its_cancellation_does_not_hang_its_reader(monkeypatch):
    """Was: waited for it forever (an LLM or TTS stream that swallows CancelledError)."""
    import kame.runtime.clock as clk

    monkeypatch.setattr(clk, "STOP_WAIT_S", 0.2)

    async def stubborn():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(30)  # ignores the first cancel (ends at the next: the test's teardown)
        yield

    with pytest.raises(NothingWithin):
        await asyncio.wait_for(next_within(stubborn(), MonotonicClock(), 0.05), 5.0)
