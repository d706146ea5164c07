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


class _Part:
    """A component with the embedded LLM's ``state``."""

    state = "up"


async def test_a_reload_of_the_model_is_waited_for_then_the_whole_limit_again():
    """``loading=``: the oracle's and the cascade's one wait for an LLM reloading its model."""
    clock, part, calls = FakeClock(), _Part(), []

    async def answer_at(t):
        await clock.sleep(t)
        yield "answer"

    async def run(seconds):
        for _ in range(int(seconds * 2)):
            clock.advance(0.5)
            for _ in range(10):
                await asyncio.sleep(0)

    waiting = asyncio.ensure_future(next_within(answer_at(33.0), clock, 3.0, loading=part, limit=10.0,
                                                on_reload=lambda: calls.append(clock.now())))
    await asyncio.sleep(0)
    part.state = "loading"
    await run(25.0)  # the 3 s timer ran out during the load: it waits on
    part.state = "up"
    await run(15.0)  # the load ended at 25 s: the whole limit (10 s) again; the answer came at 33 s
    assert waiting.done() and waiting.result() == "answer" and len(calls) == 1  # (on_reload: once)

    waiting = asyncio.ensure_future(next_within(answer_at(1e9), clock, 3.0, loading=part, limit=10.0))
    await asyncio.sleep(0)
    part.state = "loading"
    await run(20.0)
    part.state = "up"
    await run(12.0)  # loaded, then nothing for the whole limit
    with pytest.raises(NothingWithin) as exc:
        await waiting
    assert exc.value.reload_waited > 0  # (it says it waited for a reload: "stalled after it reloaded")
