"""The one monotonic clock of kame, injectable for tests.

Everything that is timestamped (audio frames, transcripts, oracle events, metrics) reads
time from a ``Clock``. Production code uses ``MonotonicClock``; tests and simulated-real-time
file mode use ``FakeClock``, which only moves when told to.

    clock = FakeClock()
    await clock.sleep(0.08)   # returns once someone calls clock.advance(>= 0.08)

``next_within`` is the stall timer of the oracle and the cascade's reply on such a clock; given the
LLM (``loading=``), it waits for a reload of its model (``state`` "loading", or one that began and
ended within the timer: ``loaded_at`` moved) instead of calling it a stall, bounded by RELOAD_WAIT_S;
and so while the embedded LLM's child reads a prompt, which it cannot stop in (``reading_prompt``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import weakref
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


# the tasks ``leave`` let run on (a component's that ignored its cancellation), while they run: an
# agent's stop() gives them a last chance and then detaches them (kame.runtime.interrupt.end_left_behind).
# One for the whole process, not one per agent: a stop() also ends those that other kame code (another
# agent, a session of its own) left on the same event loop, and names them under its own "tandem"/"cascade".
LEFT_BEHIND: "weakref.WeakSet[asyncio.Future]" = weakref.WeakSet()


def leave(tasks) -> None:
    """Let ``tasks`` run on unwatched: their outcome is taken when they end (no "exception was
    never retrieved") and they are not reported again as "destroyed but pending" at exit; they
    are added to LEFT_BEHIND (the process's, held weakly; an agent's stop() looks at those of its
    loop still running, whoever left them)."""
    for t in tasks:
        t.add_done_callback(lambda t: t.cancelled() or t.exception())
        t._log_destroy_pending = False
        LEFT_BEHIND.add(t)


async def cancel_within(tasks, timeout: float) -> list:
    """Cancel ``tasks`` (futures) and wait at most ``timeout`` s (wall time) for them to unwind;
    those still running are left (``leave``) and returned: a component that swallows its
    cancellation must not hang whoever stops it. Outcomes of the ended ones are taken, never
    raised (a cancellation of the caller itself still propagates: those still running are left
    then too)."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    if not tasks:
        return []
    try:
        done, pending = await asyncio.wait(tasks, timeout=timeout)
    except BaseException:  # (the caller cancelled while it waited: they run on unwatched, as below)
        leave([t for t in tasks if not t.done()])
        raise
    for t in done:
        t.cancelled() or t.exception()
    leave(pending)
    return [t for t in tasks if t in pending]


# While a component reloads its model (``state`` "loading", as /api/health shows it: the embedded
# LLM's child restarting after it died; its requests wait for it), or reads a prompt (``reading_prompt``:
# its own request's or one before it, which it cannot stop in), next_within's timer waits on, looking
# again every RELOAD_POLL_S, for at most RELOAD_WAIT_S of such waits in all (more than the embedded
# LLM's own bounds of both together: a read of up to LOAD_TIMEOUT_S (600 s) + its grace, then a kill
# and a load of up to 600 s, each ended by the LLM itself; the reads of the requests queued ahead of a
# consumer count too, so a long queue of long prompts can reach it: NothingWithin.why says so); after
# the wait, the whole limit again. (The embedded LLM moves loaded_at at a read's end only for a read of
# at least RELOAD_POLL_S: a shorter one held no timer up for longer than one poll.)
RELOAD_POLL_S = 1.0
RELOAD_WAIT_S = 1300.0


class NothingWithin(Exception):
    """next_within's timer ran out (not a TimeoutError: the stream's own may pass through).
    ``reload_waited``: the seconds of it spent waiting for a reload of the model (0.0: none;
    RELOAD_WAIT_S or more: the load never ended); ``reloaded``: a load of the model ended during
    it (waited for, or begun and ended within the timer), and the whole limit after it passed too
    (``after``: "it reloaded its model", or "it finished reading a prompt"); ``read``: some of
    ``reload_waited`` was for prompt reads (the embedded LLM's ``reading_prompt``)."""

    def __init__(self, message: str, reload_waited: float = 0.0, reloaded: bool = False,
                 after: str = "it reloaded its model", read: bool = False) -> None:
        super().__init__(message)
        self.reload_waited, self.reloaded, self.after, self.read = reload_waited, reloaded, after, read

    def why(self, what: str, limit: str, plain: str) -> str:
        """The stall's message for ``what`` ("LLM embedded"): ``plain`` unless a reload of its model
        was waited for (``limit``: the whole limit after it, as it should be written)."""
        if self.reload_waited >= RELOAD_WAIT_S:  # (reads: the prompts of requests queued ahead of it, or its own)
            doing = "(re)loading its model or reading prompts" if self.read else "(re)loading its model"
            return f"{what} still {doing} after {self.reload_waited:.0f} s"
        if self.reloaded:
            return f"{what} stalled: nothing for {limit} s after {self.after}"
        return plain


def reloading(part) -> bool:
    """``part`` (an LLM; kame.runtime.backend.WatchedLLM passes its LLM's on) is (re)loading its
    model (its ``state`` is "loading"), or it reads a prompt (``reading_prompt``: the embedded LLM's child,
    which cannot stop in that read nor say how far it is: the request whose prompt it is and those
    queued behind it wait for it)."""
    return getattr(part, "state", None) == "loading" or _reading_prompt(part)


def _reading_prompt(part) -> bool:
    return getattr(part, "reading_prompt", False) is True  # (not a mock's attribute)


def _finished_reading(part) -> bool:
    """The last wait that moved ``part``'s ``loaded_at`` was a prompt read (its ``finished_at``), not a load."""
    mark = loaded_mark(part)
    return mark is not None and getattr(part, "finished_at", None) == mark


def waits_for_reload(what: str, part) -> str:
    """How a log line says that a stall timer waits for ``what`` ("LLM embedded") because of a
    reload of ``part``'s model, called from next_within's ``on_reload`` (while ``part``'s state
    still tells which): one still going on ("is (re)loading"), or one that began and ended
    within the timer ("was (re)loading": its ``loaded_at`` moved); or a prompt read (``reading_prompt``;
    "was reading" when its ``finished_at`` is that mark)."""
    if _reading_prompt(part):
        return f"waits for {what}, which reads a prompt (it cannot stop in it, nor say anything before its first token)"
    if not reloading(part) and _finished_reading(part):
        return f"waits for {what}, which was reading a prompt"
    return f"waits for {what}, which {'is' if reloading(part) else 'was'} (re)loading its model"


def loaded_mark(part):
    """When ``part``'s last load of its model ended (its ``loaded_at``, on its own clock: only
    compared with an earlier one; None: it does not say). A reload that began and ended between two
    looks at its ``state`` (a short one) moves it."""
    return getattr(part, "loaded_at", None)


class _ReloadTimer:
    """The clock of one next_within wait given ``loading``: the timeout, then, while ``part``
    reloads its model, on until the load is over and ``limit`` s more have passed (the reloaded
    model reads the prompt first), at most RELOAD_WAIT_S of reload in all (``reload_waited``).
    A load that began and ended within the timeout (or within such a grant: ``loaded_mark``
    moved) also gets ``limit`` s more, from when the timer ran out (``reloaded``: one did).
    ``on_reload()`` is called once, when the first wait for a reload starts (``part``'s state
    still says then whether the load is going on: waits_for_reload)."""

    def __init__(self, clock: Clock, part, limit: float, on_reload) -> None:
        self.clock, self.part, self.limit, self.on_reload = clock, part, limit, on_reload
        self.reload_waited = 0.0
        self.waited = False  # it has waited for a reload (on_reload was called)
        self.reloaded = False  # a load ended during the wait: it granted the limit again
        self.after = ""  # what the last grant followed (NothingWithin.why)
        self.read = False  # some of the wait was for a prompt read (``reading_prompt``)
        self.mark = loaded_mark(part)  # (at the wait's start, then at each grant's)

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        while self.reload_waited < RELOAD_WAIT_S:
            read = False  # the last thing waited for was a prompt read (a short one does not move the mark)
            if reloading(self.part):
                self._waits()
                while reloading(self.part) and self.reload_waited < RELOAD_WAIT_S:
                    read = _reading_prompt(self.part)
                    self.read = self.read or read
                    t = self.clock.now()
                    await self.clock.sleep(RELOAD_POLL_S)
                    self.reload_waited += self.clock.now() - t
                if self.reload_waited >= RELOAD_WAIT_S:
                    return
            elif loaded_mark(self.part) == self.mark:
                return  # no load since the wait (or the last grant) began: the timer ran out
            else:
                self._waits()  # a load began and ended within the timer
            moved = loaded_mark(self.part) != self.mark
            self.mark = loaded_mark(self.part)  # (the embedded LLM sets it before its state leaves "loading")
            self.reloaded = True
            self.after = ("it finished reading a prompt" if (_finished_reading(self.part) if moved else read)
                          else "it reloaded its model")
            await self.clock.sleep(self.limit)  # loaded: the whole limit again

    def _waits(self) -> None:
        if not self.waited and self.on_reload is not None:
            self.on_reload()
        self.waited = True


async def next_within(stream, clock: Clock, timeout: float, *, loading=None, limit: float | None = None,
                      on_reload=None):
    """The next item of the async iterator ``stream``, END at its end, or NothingWithin after
    ``timeout`` s on ``clock`` (the pending ``__anext__`` is cancelled, and so is a stream whose
    producer hangs). The oracle's and the cascade's stall timers.

    ``loading``: the LLM behind ``stream``. A reload of its model (``reloading``: the embedded
    LLM's child restarting after it died; or its child reading a prompt, this request's or one
    before it, ``reading_prompt``) is no stall: a timer that runs out during one waits on
    for the load, then ``limit`` s more (default ``timeout``: the whole first-piece or
    between-pieces limit), at most RELOAD_WAIT_S of reload in all; a timer that runs out after a
    load that began and ended within it (its ``loaded_at`` moved, ``loaded_mark``) gets ``limit`` s
    more too. ``on_reload()`` is called when it starts waiting for one (count it, log it:
    ``waits_for_reload`` words it, the load going on or ended).
    NothingWithin's ``reload_waited`` says how long it waited, ``reloaded`` that a load ended, and
    its ``why`` words the stall."""
    reload = None if loading is None else _ReloadTimer(clock, loading, timeout if limit is None else limit,
                                                        on_reload)
    nxt = asyncio.ensure_future(stream.__anext__())
    if hasattr(nxt, "set_name"):  # (named for run_to_end's warning, should it never stop)
        nxt.set_name(f"next item of {getattr(stream, '__qualname__', type(stream).__name__)}")
    timer = asyncio.ensure_future((reload or clock).sleep(max(0.0, timeout)))
    try:
        done, _ = await asyncio.wait({nxt, timer}, return_when=asyncio.FIRST_COMPLETED)
        if nxt in done:
            try:
                return nxt.result()
            except StopAsyncIteration:
                return END
        raise NothingWithin(f"nothing within {timeout:g} s", *((reload.reload_waited, reload.reloaded, reload.after,
                                                                reload.read) if reload else ()))
    finally:  # (a stream that ignores its cancellation is left after STOP_WAIT_S, not its reader hung)
        await cancel_within((nxt, timer), STOP_WAIT_S)
