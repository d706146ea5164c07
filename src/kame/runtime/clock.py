"""The one monotonic clock of kame, injectable for tests.

Everything that is timestamped (audio frames, transcripts, oracle events, metrics) reads
time from a ``Clock``. Production code uses ``MonotonicClock``; tests and simulated-real-time
file mode use ``FakeClock``, which only moves when told to.

    clock = FakeClock()
    await clock.sleep(0.08)   # returns once someone calls clock.advance(>= 0.08)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic time line (origin unspecified). Also read from other threads
        (the step worker stamps when it finished a frame), so it must not need the event loop."""

    async def sleep(self, seconds: float) -> None:
        """Wait until ``now()`` has advanced by ``seconds``."""


class MonotonicClock:
    """Wall-clock time from ``time.monotonic``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when ``advance``/``set`` is called.

    ``sleep`` coroutines wake (in deadline order) when the clock passes their deadline.
    ``sleepers()`` says who still waits (tests: advance once a loop sleeps, not mid-step).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._waiters: list[tuple[float, int, asyncio.Future[None], asyncio.Task | None]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + max(0.0, seconds)
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (deadline, next(self._seq), fut, asyncio.current_task()))
        await fut

    def sleepers(self) -> list[tuple[float, asyncio.Task | None]]:
        """(deadline, task) of each sleep() still waiting, soonest first. A cancelled sleep is left
        out (its entry stays in the heap until it is due), and so is one woken but not yet run."""
        return [(d, task) for d, _, fut, task in sorted(self._waiters, key=lambda w: w[:2]) if not fut.done()]

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def set(self, t: float) -> None:
        if t < self._now:
            raise ValueError(f"FakeClock cannot go back in time ({t} < {self._now})")
        self._now = t
        while self._waiters and self._waiters[0][0] <= t:
            fut = heapq.heappop(self._waiters)[2]
            if not fut.done():
                fut.set_result(None)


END = object()  # next_within: the stream ended
STOP_WAIT_S = 2.0  # wall time a cancelled __anext__ gets to unwind


def leave(tasks) -> None:
    """Let ``tasks`` run on unwatched: their outcome is taken when they end (no "exception was
    never retrieved") and they are not reported again as "destroyed but pending" at exit."""
    for t in tasks:
        t.add_done_callback(lambda t: t.cancelled() or t.exception())
        t._log_destroy_pending = False


async def cancel_within(tasks, timeout: float) -> list:
    """Cancel ``tasks`` (futures) and wait at most ``timeout`` s (wall time) for them to unwind;
    those still running are left (``leave``) and returned: a component that swallows its
    cancellation must not hang whoever stops it. Outcomes of the ended ones are taken, never
    raised (a cancellation of the caller itself still propagates)."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in done:
        t.cancelled() or t.exception()
    leave(pending)
    return [t for t in tasks if t in pending]


class NothingWithin(Exception):
    """next_within's timer ran out (not a TimeoutError: the stream's own may pass through)."""


async def next_within(stream, clock: Clock, timeout: float):
    """The next item of the async iterator ``stream``, END at its end, or NothingWithin after
    ``timeout`` s on ``clock`` (the pending ``__anext__`` is cancelled, and so is a stream whose
    producer hangs). The oracle's and the cascade's stall timers."""
    nxt = asyncio.ensure_future(stream.__anext__())
    if hasattr(nxt, "set_name"):  # (named for run_to_end's warning, should it never stop)
        nxt.set_name(f"next item of {getattr(stream, '__qualname__', type(stream).__name__)}")
    timer = asyncio.ensure_future(clock.sleep(max(0.0, timeout)))
    try:
        done, _ = await asyncio.wait({nxt, timer}, return_when=asyncio.FIRST_COMPLETED)
        if nxt in done:
            try:
                return nxt.result()
            except StopAsyncIteration:
                return END
        raise NothingWithin(f"nothing within {timeout:g} s")
    finally:  # (a stream that ignores its cancellation is left after STOP_WAIT_S, not its reader hung)
        await cancel_within((nxt, timer), STOP_WAIT_S)

