"""One session's STT stream, supervised the same way by both agents (the tandem's
kame.runtime.backend.BackendBridge, the cascade's kame.cascade.session.CascadeSession).

    sup = STTSupervisor(stt, clock, who="s1", retry_s=1.0, on_transcript=..., on_failure=...)
    task = asyncio.create_task(sup.run())   # until end() / cancellation
    sup.push(AudioFrame(pcm, t))            # from the frame ticker: never blocks
    sup.end()                               # no more audio: the running stream flushes and ends
    sup.dropped_frames, sup.running
    sup.drop_queued()                       # at close, once its stream is stopped: what it never read, counted

A stream that raises, ends by itself, yields something that is not a Transcript, or stalls (it
has taken no audio for ``stall_s``, a kame STT longer (below), while frames wait for it: checked
at each push and by a timer on the clock, so also once no more audio comes) is stopped
(STOP_WAIT_S of wall time to unwind) and started again after ``retry_s``, doubled for each
failure in a row up to MAX_RETRY_S until a transcript comes, and at least as long as a BackendError's ``retry_after``
(an HTTP 429's Retry-After; capped as everywhere, kame.backend.policy.honoured), so a
rate-limited server is not called again before it asked. ``on_failure(exc, wait)`` hears of
each failure (``wait``: the seconds before the restart; None for a failure the stream reported
and went on from, having lost no transcript: the stream's ``on_fault`` hook, e.g. the
embedded STT's pocketsphinx child died mid-utterance, whose final came from whisper; was: the
stream ended, and its restart lost what the user said next; ``restart_note(wait)`` words it),
``on_transcript(tr)`` gets each transcript (awaited; its first after a failure is the sign the
STT is up again). While the STT is down its audio is dropped, not queued (its stream restarts on
live audio); at most MAX_QUEUED_FRAMES wait for a running stream (the oldest dropped); what a
stopped stream held and had not processed is lost with it (the stream's ``on_discard`` hook).
All are counted in ``dropped_frames``.
A stream takes frames only as it gets to them (kame's own STTs hold at most ~15 s they have not
processed: kame.backend.stt.streaming.INBOX_FRAMES), so an STT slower than real time fills this
queue: it stays about 35 s behind (plus the decode under way), the audio dropped is counted, and a
warning says so once each time the queue fills (was: kame's STTs took every frame at once into a
backlog of their own with no bound, minutes behind on a busy machine, nothing dropped or said).
Such an STT takes no frame while one decode runs, so the stall is declared only after
max(``stall_s``, the STT's ``decode_stall_s``: 30 s for kame's, SegmentedSTT; 45 s the embedded STT's) (was: ``stall_s``,
so a decode over 5 s behind was a stall: a restart and a lost utterance for an STT that works).
A session opened under ``unpaced()`` (file mode's --fast: its clock runs far ahead of the STT)
bounds nothing: no queue cap, no stall; its STT gets all the audio it reaches before the session
closes (what it has not by then is counted as dropped at the close).
The stream's task is named after the STT ("STT NAME's stream (session s1)"): a stream that ignores
its cancellation is left behind by that name (kame.runtime.interrupt.run_to_end).
Each stream is opened with its hooks (kame.backend.stt.base.open_stream): ``owner`` the session
(``who``, named in the STT's log lines), ``on_fault`` and ``on_discard`` the supervisor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
from typing import AsyncIterator, Awaitable, Callable

from ..backend.llm.base import component_name
from ..backend.policy import backoff, honoured
from ..backend.stt.base import check_transcript, open_stream
from ..backend.types import FRAME_S, AudioFrame, Transcript
from ..errors import BackendError
from .clock import STOP_WAIT_S, Clock, cancel_within

log = logging.getLogger(__name__)

STALL_S = 5.0  # an STT that takes no audio for this long while frames wait for it has stalled
MAX_QUEUED_FRAMES = 250  # 20 s of audio waiting for a running STT stream, then the oldest is dropped
MAX_RETRY_S = 30.0  # the longest wait between restarts of a failing STT
_UNPACED = contextvars.ContextVar("kame_stt_unpaced", default=False)  # (unpaced())


@contextlib.contextmanager
def unpaced(on: bool = True):
    """The STT supervisors of the sessions opened meanwhile (in this task) bound nothing: no queue
    cap, no stall, for a clock that runs ahead of wall time (file mode's --fast; ``on`` False: as usual)."""
    token = _UNPACED.set(on)
    try:
        yield
    finally:
        _UNPACED.reset(token)


def restart_note(wait: float | None) -> str:
    """What follows an STT failure, as the sessions say it (``on_failure``'s ``wait``)."""
    return "the stream goes on and its next utterance tries again" if wait is None else \
        f"restarting the stream in {wait:g} s"


class STTSupervisor:
    def __init__(self, stt, clock: Clock, *, who: str, retry_s: float = 1.0, stall_s: float = STALL_S,
                 on_transcript: Callable[[Transcript], Awaitable[None]],
                 on_failure: Callable[[BaseException, float | None], None], metrics=None) -> None:
        self.stt, self.clock, self.who = stt, clock, who  # who: the session, for log lines
        self.retry_s, self.stall_s, self.metrics = retry_s, stall_s, metrics
        # no frame taken for this long while frames wait: a stall (a kame STT's one decode may hold it longer)
        self._stall_after = math.inf if _UNPACED.get() else max(stall_s, getattr(stt, "decode_stall_s", 0) or 0)
        self._max_queued = math.inf if _UNPACED.get() else MAX_QUEUED_FRAMES
        self.on_transcript, self.on_failure = on_transcript, on_failure
        self.dropped_frames = 0  # user frames the STT never got (queue full, stalled, down)
        self._frames: asyncio.Queue | None = asyncio.Queue()  # the stream's input (None: the STT is down)
        self._progress_at = clock.now()  # when the STT last took a frame, or was last owed none
        self._stall: asyncio.Future | None = None  # resolved (with the reason) when the STT stalls
        self._failures = 0  # in a row (a transcript resets it)
        self._full = False  # the queue filled (said once) and has not been empty since
        self._ended = False

    @property
    def dropped_s(self) -> float:
        """Seconds of user audio the STT never got (``dropped_frames``: a session's stt_dropped_s)."""
        return round(self.dropped_frames * FRAME_S, 2)

    @property
    def running(self) -> bool:
        """A stream is running (False while the STT is down, waiting to restart)."""
        return self._frames is not None and self._stall is not None

    def push(self, frame: AudioFrame) -> None:
        if self._ended:
            return
        q = self._frames
        if q is None:  # the STT is down: its stream restarts on live audio
            self.dropped_frames += 1
            return
        if q.empty():
            self._progress_at = self.clock.now()  # it had all the audio so far
            self._full = False
        else:
            self._check_stall(q)
        if q.qsize() >= self._max_queued:
            q.get_nowait()
            self.dropped_frames += 1
            if not self._full:
                self._full = True
                log.warning("session %s: STT %s is at least %.0f s behind real time (it transcribes slower than the "
                            "audio comes): the oldest audio waiting for it is dropped, counted in the session's stats "
                            "(stt_dropped_s); use a faster STT (backend.stt) or give it more CPU",
                            self.who, component_name(self.stt), MAX_QUEUED_FRAMES * FRAME_S)
        q.put_nowait(frame)

    def _check_stall(self, q: asyncio.Queue) -> float:
        """The stall check (at each push, and by the running stream's timer, _watch): frames wait in
        ``q`` and the STT has taken none for _stall_after -> the running stream's stall is set.
        Returns the clock seconds left before it would have stalled (_stall_after when none waits)."""
        now = self.clock.now()
        if q.empty():
            return self._stall_after
        left = self._progress_at + self._stall_after - now
        if left <= 0 and self._stall is not None and not self._stall.done():
            self._stall.set_result(f"STT {component_name(self.stt)} stalled: it has taken no audio for {now - self._progress_at:.1f} s "
                                   f"({q.qsize() * FRAME_S:.1f} s of audio waiting for it)")
        return left

    async def _watch(self, q: asyncio.Queue, stall: asyncio.Future) -> None:
        """The running stream's stall timer, on the clock: the check at each push alone missed an
        STT that stopped reading once the caller had stopped pushing (a program that pushed one
        utterance and waited for its reply never heard of it; the tandem pushes silence always)."""
        while not stall.done():
            left = self._check_stall(q)
            if left <= 0 or math.isinf(left):  # (stalled: set; or never: unpaced)
                return
            await self.clock.sleep(max(left, FRAME_S))  # (at least a frame: a float sum just short wakes once)

    def end(self) -> None:
        """No more audio: the running stream gets the end of its frames (it flushes a last final)."""
        self._ended = True
        if self._frames is not None:
            self._frames.put_nowait(None)

    def drop_queued(self) -> int:
        """At close, once the stream is stopped without reading on: the frames still waiting for it
        are dropped and counted in ``dropped_frames`` (was: lost uncounted); returns how many."""
        q, n = self._frames, 0
        while q is not None and not q.empty():
            n += q.get_nowait() is not None
        if q is not None and self._ended:
            q.put_nowait(None)  # (its end stays queued)
        self.dropped_frames += n
        return n

    async def run(self) -> None:
        while not self._ended:
            if self._frames is None:
                self._frames = asyncio.Queue()
            q = self._frames
            self._progress_at = self.clock.now()
            stall = self._stall = asyncio.get_running_loop().create_future()
            # (named after the STT: the task run_to_end leaves behind if it ignores its cancellation)
            run = asyncio.create_task(self._transcribe(q), name=f"STT {component_name(self.stt)}'s stream "
                                                               f"(session {self.who})")
            watch = asyncio.create_task(self._watch(q, stall), name=f"STT {component_name(self.stt)}'s stall "
                                                                    f"timer (session {self.who})")
            try:
                try:
                    await asyncio.wait({run, stall}, return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    watch.cancel()
                    await self._stop(run)
                    raise
                watch.cancel()
                if not run.done():  # stalled: it no longer reads the audio
                    await self._stop(run)
                    raise BackendError(stall.result())
                run.result()  # the STT's own failure, if any
                if self._ended:
                    return  # its frames ended (end())
                raise BackendError("the STT stream ended by itself")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: report, wait, restart
                if self._ended:
                    return
                self._frames = None
                self.dropped_frames += q.qsize()  # the audio it left waiting is lost with it
                self._failures += 1
                wait = backoff(self.retry_s, self._failures, max(self.retry_s, MAX_RETRY_S))
                # (the server's Retry-After, honoured as everywhere: policy.honoured; its message says so)
                wait = max(wait, honoured(getattr(exc, "retry_after", None)))
                self.on_failure(exc, wait)
            finally:
                self._stall = None
            await self.clock.sleep(wait)

    async def _frame_iter(self, q: asyncio.Queue) -> AsyncIterator[AudioFrame]:
        while True:
            f = await q.get()
            self._progress_at = self.clock.now()
            if f is None:
                return
            yield f

    async def _transcribe(self, q: asyncio.Queue) -> None:
        """One STT stream: each transcript, checked, to on_transcript; a failure it goes on from,
        to on_failure (with no wait: nothing restarts)."""
        stream = open_stream(self.stt, self._frame_iter(q), self.metrics, owner=self.who,
                             on_fault=lambda exc: self.on_failure(exc, None), on_discard=self._discarded)
        try:
            async for item in stream:
                tr = check_transcript(item, self.stt)  # before "up": a broken STT is not working
                self._failures = 0
                await self.on_transcript(tr)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _discarded(self, n: int) -> None:
        """A stopped stream had ``n`` frames it had not processed (restarted or closed): lost, counted."""
        self.dropped_frames += n

    async def _stop(self, task: asyncio.Task) -> None:
        """Cancel a stream's task, giving it STOP_WAIT_S (wall time) to unwind: an STT that
        ignores the cancellation must not hold up its restart or the session's close."""
        if await cancel_within([task], STOP_WAIT_S):
            log.warning("session %s: STT %s's stream did not stop within %.0f s of its cancellation",
                        self.who, component_name(self.stt), STOP_WAIT_S)
