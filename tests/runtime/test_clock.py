"""kame.runtime.clock.next_within: the next item of a stream within a time on the clock."""

import asyncio

import pytest

from kame.runtime.clock import END, FakeClock, MonotonicClock, NothingWithin, next_within, waits_for_reload

from ..backend.scripted_llm import ReloadingLLM
from ..backend.test_oracle_reload import run_for
from ..backend.test_retry_after_gate import settle


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


async def test_a_reload_of_the_model_is_waited_for_then_the_whole_limit_again():
    """``loading=``: the oracle's and the cascade's one wait for an LLM reloading its model."""
    clock, part, calls = FakeClock(), ReloadingLLM(), []

    async def answer_at(t):
        await clock.sleep(t)
        yield "answer"

    waiting = asyncio.ensure_future(next_within(answer_at(33.0), clock, 3.0, loading=part, limit=10.0,
                                                on_reload=lambda: calls.append(clock.now())))
    await asyncio.sleep(0)
    part.reload()
    await run_for(clock, 25.0)  # the 3 s timer ran out during the load: it waits on
    part.loaded()
    await run_for(clock, 15.0)  # the load ended at 25 s: the whole limit (10 s) again; the answer came at 33 s
    assert waiting.done() and waiting.result() == "answer" and len(calls) == 1  # (on_reload: once)

    waiting = asyncio.ensure_future(next_within(answer_at(1e9), clock, 3.0, loading=part, limit=10.0))
    await asyncio.sleep(0)
    part.reload()
    await run_for(clock, 20.0)
    part.loaded()
    await run_for(clock, 12.0)  # loaded, then nothing for the whole limit
    with pytest.raises(NothingWithin) as exc:
        await waiting
    assert exc.value.reload_waited > 0 and exc.value.reloaded  # (it says so: "stalled after it reloaded")


async def test_a_reload_that_ends_before_the_timer_runs_out_gets_the_whole_limit_again():
    """The state said "up" when the timer ran out, but a load had begun and ended within it
    (``loaded_at`` moved): the whole limit again, from then (was: NothingWithin at once)."""
    clock, part, calls = FakeClock(), ReloadingLLM(), []

    async def never():
        await clock.sleep(1e9)
        yield "never"

    waiting = asyncio.ensure_future(next_within(never(), clock, 10.0, loading=part, limit=4.0,
                                                on_reload=lambda: calls.append(clock.now())))
    await settle()  # (its timer sleeps from 0 s)
    await run_for(clock, 2.0)
    part.reload()
    await run_for(clock, 6.0)
    part.loaded()  # at 8 s
    await run_for(clock, 5.5)  # 13.5 s: it ran out at 10 s and granted 4 s more
    assert not waiting.done() and calls == [10.0]
    await run_for(clock, 0.5)
    with pytest.raises(NothingWithin) as exc:
        await asyncio.wait_for(waiting, 5.0)
    assert exc.value.reloaded and exc.value.reload_waited == 0.0  # (it never saw it loading)


class _ReadingPrompt:
    """An LLM whose child reads a prompt, which it cannot stop in (the embedded LLM's ``reading_prompt``;
    its end moves ``loaded_at`` and sets ``finished_at``)."""

    state, loaded_at, finished_at, reading_prompt = "up", 0.0, None, False

    def begins(self) -> None:
        self.reading_prompt = True

    def ends(self) -> None:
        self.loaded_at = self.finished_at = self.loaded_at + 1.0  # (before reading_prompt, as the embedded LLM does)
        self.reading_prompt = False


async def test_a_cancelled_requests_prompt_read_is_waited_for_as_a_reload_and_worded_so():
    """Review r7 finding 1: was NothingWithin when the read outlasted the timer."""
    clock, part, said = FakeClock(), _ReadingPrompt(), []

    async def never():
        await clock.sleep(1e9)
        yield "never"

    waiting = asyncio.ensure_future(next_within(never(), clock, 3.0, loading=part, limit=10.0,
                                                on_reload=lambda: said.append(waits_for_reload("LLM embedded", part))))
    await settle()
    part.begins()
    await run_for(clock, 20.0)  # the 3 s timer ran out during the read: it waits on
    assert not waiting.done()
    part.ends()  # at 20 s (seen at 21 s at the latest: RELOAD_POLL_S)
    await run_for(clock, 9.5)
    assert not waiting.done()  # the whole limit again, from its end
    await run_for(clock, 2.0)
    with pytest.raises(NothingWithin) as exc:
        await asyncio.wait_for(waiting, 5.0)
    assert said == ["waits for LLM embedded, which reads a prompt (it cannot stop in it, nor say anything before its "
                    "first token)"]
    assert exc.value.why("LLM embedded", "10.00", "plain") == ("LLM embedded stalled: nothing for 10.00 s after it "
                                                               "finished reading a prompt")

    # one that began and ended within the timer: the whole limit again, said as such
    said.clear()
    waiting = asyncio.ensure_future(next_within(never(), clock, 3.0, loading=part, limit=10.0,
                                                on_reload=lambda: said.append(waits_for_reload("LLM embedded", part))))
    await settle()
    part.begins()
    await run_for(clock, 1.0)
    part.ends()
    await run_for(clock, 11.5)  # ran out at 3 s, then 10 s more (to 13 s)
    assert not waiting.done()
    await run_for(clock, 1.5)
    with pytest.raises(NothingWithin):
        await asyncio.wait_for(waiting, 5.0)
    assert said == ["waits for LLM embedded, which was reading a prompt"]
