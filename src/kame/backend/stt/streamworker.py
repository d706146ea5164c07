"""The thread side of one stream of a SegmentedSTT (kame.backend.stt.streaming): the worker that
resamples the frames to 16 kHz, runs the VAD, feeds each utterance to its ``Recognizer``, asks for
partials (bounded: skipped while it is behind or the VAD hears a pause) and finals (in order, also
those a recognizer started without waiting: ``Recognizer.final_future``), maps word times onto the
frames' clock, and posts the results to the stream on the event loop. kame.backend.stt.streaming's
doc says what a stream does; this is how its worker does it.

Stopping: ``_Worker.stop()`` (the stream's consumer went away) makes the worker give up before its
next recognizer call (``StreamStopped``) and sets ``stream_stop_event()``, which a recognizer waiting
for something shared reads (kame.backend.stt.streaming re-exports both, the recognizers' API).
"""

from __future__ import annotations

import bisect
import contextvars
import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ...errors import BackendError
from ..priority import lower_thread_priority
from ..types import Word
from ..vad import VAD_RATE, StreamingVAD, VADConfig

if TYPE_CHECKING:
    from .streaming import Recognizer, SegmentedSTT

log = logging.getLogger(__package__ + ".streaming")  # (the stream's log lines, one logger as before the split)

# the stop event of the stream the current worker thread serves (None outside a stream's worker)
_STREAM_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("kame_stt_stream_stop",
                                                                                     default=None)


def stream_stop_event() -> threading.Event | None:
    """The event set when the stream this worker thread serves is stopped by its consumer (None
    when not called from a stream's worker): a recognizer that waits for something shared (a
    lock, a child process) should give up with ``StreamStopped`` once it is set."""
    return _STREAM_STOP.get()


class StreamStopped(BackendError):
    """A recognizer call gave up because its stream was stopped (nobody wants the result)."""


def _text(words: list[Word]) -> str:
    return " ".join(w.text for w in words)


@dataclass
class _Final:
    """An utterance whose final was asked for (``future``: started, Recognizer.final_future;
    ``error``: refused at once), not emitted yet."""

    rec: Recognizer
    utt_start: int  # 16 kHz sample index of its audio's start
    last_words: list[Word] | None  # its last partial, on the clock
    eos: float  # its end of speech, on the clock
    speech_end: float  # the same, from its start
    future: Future | None = None
    error: BackendError | None = None

    @property
    def ready(self) -> bool:
        return self.future is None or self.future.done()


class _Worker:
    """The thread side of one stream: resampling, VAD, recognizers, bounded decoding."""

    def __init__(self, stt: SegmentedSTT, post: Callable[[tuple], None], who: str = "",
                 freed: Callable[[], None] = lambda: None,
                 on_fault: Callable[[BackendError], None] | None = None) -> None:
        self.stt, self.post, self.freed = stt, post, freed  # freed: a frame left the inbox
        self.on_fault = on_fault  # hears an error_after_final (None: it ends the stream)
        self.who = who  # the log lines' prefix ("session c2: " or "")
        self.cond = threading.Condition()
        # frames not yet processed (at most INBOX_FRAMES: the feeder waits for ``freed``)
        self.inbox: deque[tuple[np.ndarray, float]] = deque()
        self.closed = False  # no more frames will come
        self.stopped = False  # the consumer went away: exit now
        self.stop_event = threading.Event()  # the same, for recognizers waiting on something shared
        self.rec: Recognizer | None = None  # the open utterance's, until its final is asked for
        self.finals: deque[_Final] = deque()  # finals asked for, not emitted yet, in order
        self.open_words: list[Word] | None = None  # the open utterance's newest partial posted

    # called from the loop
    def put(self, pcm: np.ndarray, t: float) -> None:
        with self.cond:
            self.inbox.append((pcm, t))
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()

    def stop(self) -> int:  # (returns how many frames its inbox held: never processed)
        with self.cond:
            self.stopped = self.closed = True
            self.stop_event.set()
            self.cond.notify()
            return len(self.inbox)

    def _wake(self, _future: Future) -> None:
        """A final's Future is done (any thread): the worker emits it."""
        with self.cond:
            self.cond.notify()

    def _go_on(self) -> None:
        """Before each step that costs (a recognizer call): give up if the consumer has gone."""
        if self.stopped:
            raise StreamStopped("the STT stream was stopped by its consumer")

    # thread
    def run(self) -> None:
        _STREAM_STOP.set(self.stop_event)  # (this thread runs in its own copy of the context)
        try:
            lower_thread_priority(self.stt.nice)  # before any decode thread is started from here
            try:
                self._run()
            finally:
                self._close_unfinished()
            self.post(("done",))
        except StreamStopped:  # the consumer stopped the stream: nobody waits for anything more
            self.post(("done",))
        except BackendError as exc:  # a service's error (a server down, a timeout): expected, said in one line
            if self.stopped:  # the consumer had gone: kame dropped the work (e.g. closed its connection)
                log.debug("%sthe STT stream was stopped by its consumer (its session closed, or restarted the "
                          "stream); the request or decode under way then ended: %s", self.who, exc)
            else:
                log.warning("%sSTT stream ended: %s", self.who, exc)
            self.post(("error", exc))
        except BaseException as exc:  # noqa: BLE001 - any crash must reach the consumer
            log.exception("%sSTT worker crashed", self.who)
            self.post(("error", exc))

    def _run(self) -> None:
        stt = self.stt
        vad = StreamingVAD(VADConfig(**vars(stt.vad_config)))
        # (16 kHz, 24 kHz) frames heard just before speech started
        preroll: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=max(1, round(stt.preroll / 0.08)))
        # 16 kHz sample index <-> clock time, per frame (frames may have gaps in t)
        self.frame_idx: list[int] = []
        self.frame_t: list[float] = []
        n16 = 0
        rec: Recognizer | None = None
        utt_start = 0  # 16 kHz sample index where the current utterance's audio starts
        utt_len = 0
        last_partial_at = 0
        paused = False  # the current pause was announced to the recognizer
        while True:
            with self.cond:
                while not self.inbox and not self.closed and not (self.finals and self.finals[0].ready):
                    self.cond.wait()
                if self.stopped:
                    return
                if not self.inbox and self.closed:
                    break
                item = self.inbox.popleft() if self.inbox else None
                lag = len(self.inbox) * 0.08
            if item is not None:
                self.freed()  # (the feeder may take the next frame)
            self._emit_finals()
            if item is None:
                continue
            pcm, t = item
            x, t16 = vad.to_16k(pcm, t)  # ~[1280] at 16 kHz (1269 for the first frame), x[0] at t16
            self.frame_idx.append(n16)
            self.frame_t.append(t16)
            events = vad.push_16k(x, t16)
            if rec is None and (vad.in_speech or any(e.kind == "start" for e in events)):
                self._go_on()  # never a new utterance for a stopped stream
                rec = self.rec = stt.new_recognizer()
                utt_len = sum(chunk[0].shape[0] for chunk in preroll)
                utt_start = n16 - utt_len
                for chunk in preroll:
                    self._go_on()
                    rec.accept(chunk[0] if rec.sample_rate == VAD_RATE else chunk[1])
                last_partial_at, self.open_words, paused = 0, None, False
                preroll.clear()
            n16 += x.shape[0]
            if rec is None:
                preroll.append((x, pcm))
            # time marks before the oldest audio a recognizer can still get (the open utterance's
            # start, else the pre-roll's) are never read again: in silence and in continuous speech
            # (utterances cut at max_utterance) the lists stay as short as one utterance
            # (and a final not emitted yet needs its utterance's marks)
            oldest = utt_start if rec is not None else n16 - sum(c[0].shape[0] for c in preroll)
            self._forget_time_marks(min(oldest, self.finals[0].utt_start) if self.finals else oldest)
            if rec is None:
                continue
            rec.lag = lag
            self._go_on()
            rec.accept(x if rec.sample_rate == VAD_RATE else pcm)
            utt_len += x.shape[0]
            ended = [e for e in events if e.kind == "end"]
            if ended or utt_len >= stt.max_utterance * VAD_RATE:
                eos = ended[0].t if ended else self.time_of(n16)
                self._finalize(rec, utt_start, self.open_words, eos)
                rec = None
                continue
            due = (utt_len - last_partial_at) >= stt.partial_interval * VAD_RATE - 1
            pausing = vad.st.silence >= stt.pause_skip  # likely the end: keep the CPU for the final
            if pausing and not paused and vad.st.last_speech_end is not None:
                self._go_on()
                rec.pause(vad.st.last_speech_end - self.time_of(utt_start))
            paused = pausing
            if due and lag <= stt.max_lag and not pausing:
                last_partial_at = utt_len
                self._go_on()
                words = rec.partial()
                if words is not None:
                    words = self.to_clock(words, utt_start)
                    if self.open_words is None or _text(words) != _text(self.open_words):
                        self.open_words = words
                        self.post(("partial", words, None))
        if rec is not None:  # the input ended in an utterance: its speech ends where the VAD last heard voice
            # if it was already in the silence that would end it (was: the input's end, so the final decoded
            # that silence too, and again after a decode begun at the pause: a close after END_INPUT waited twice)
            pending = vad.last_voice if vad.in_speech and vad.st.silence > 0 else None
            self._finalize(rec, utt_start, self.open_words, self.time_of(n16) if pending is None else pending)
        self._emit_finals(wait=True)

    def _close_unfinished(self) -> None:
        """Stopped (or failed) before the open utterance's final, or before finals asked for were
        emitted: their recognizers let go now."""
        recs = [self.rec, *(job.rec for job in self.finals)]
        self.rec = None
        self.finals.clear()
        for rec in recs:
            if rec is not None:
                self._close(rec)

    def _close(self, rec: Recognizer) -> None:
        try:
            rec.close()
        except Exception:  # noqa: BLE001 - the stream is ending anyway; say it, go on
            log.debug("%sclosing an unfinished recognizer failed", self.who, exc_info=True)

    def _forget_time_marks(self, idx: int) -> None:
        """Drop the time marks of frames before the one holding 16 kHz sample ``idx``."""
        k = bisect.bisect_right(self.frame_idx, idx) - 1
        if k > 0:
            del self.frame_idx[:k], self.frame_t[:k]

    def _finalize(self, rec: Recognizer, utt_start: int, last_words, eos: float) -> None:
        """Ask for the utterance's final (started, not waited for, if the recognizer can:
        ``final_future``) and emit the finals that are ready."""
        self._go_on()
        job = _Final(rec, utt_start, last_words, eos, eos - self.time_of(utt_start))
        self.finals.append(job)
        self.rec = None  # (the job holds it until it is emitted)
        try:
            job.future = rec.final_future(job.speech_end)
        except BackendError as exc:  # refused at once (e.g. a server's Retry-After): said in its turn
            job.error = exc
        if job.future is not None:
            job.future.add_done_callback(self._wake)
        self._emit_finals()

    def _emit_finals(self, wait: bool = False) -> None:
        """Emit the finals asked for, in order, while the oldest is ready (``wait``: all of them,
        waiting for each to be ready, or the stream's stop: the input has ended). A final emitted
        while a later utterance has no final yet is followed by its newest partial again: every
        consumer takes a final as the end of the current utterance and clears its partial (the
        oracle's prompt, the page's partial line, kame run's wait for a reply): _post_newest_partial."""
        emitted = False
        while self.finals and (wait or self.finals[0].ready):
            if not self.finals[0].ready:  # (final() is called once its result is there, never to wait)
                if emitted:
                    self._post_newest_partial()
                    emitted = False
                with self.cond:
                    while not (self.finals[0].ready or self.stopped):
                        self.cond.wait()
            self._emit(self.finals[0])
            self.finals.popleft()
            emitted = True
        if emitted:
            self._post_newest_partial()

    def _post_newest_partial(self) -> None:
        """After a final: the newest partial of an utterance whose final has not come yet, posted
        again (the open one's, else that of the newest one whose final is in flight), if any."""
        words = self.open_words if self.rec is not None and self.open_words else None
        if words is None and self.finals:
            words = self.finals[-1].last_words
        if words:
            self.post(("partial", words, None))

    def _emit(self, job: _Final) -> None:
        self._go_on()
        try:
            if job.error is not None:
                raise job.error
            words = self.to_clock(job.rec.final(job.speech_end), job.utt_start)
        except BackendError as exc:
            if self.stt.on_error is None or self.stopped:  # (stopped: nobody takes the partial; run() says why)
                raise
            log.warning("%sfinal transcription failed, committing the last partial: %s", self.who, exc)
            self._close(job.rec)  # the stream goes on: whatever it still holds goes now
            self.post(("service_error", exc, self.stt.on_error))
            words = job.last_words or []
        if words or job.last_words:  # an utterance that produced no text at all stays silent
            self.post(("final", words, job.eos))
        failed = getattr(job.rec, "error_after_final", None)  # (a duck-typed recognizer may lack it)
        if failed is not None:  # (after its final: in order, whatever the consumer does meanwhile)
            if self.on_fault is None or self.stopped:  # nobody to tell: the stream ends with it (run())
                raise failed
            self.post(("service_error", failed, self.on_fault))

    def time_of(self, idx: float) -> float:
        """Clock time of 16 kHz sample index ``idx`` (interpolated inside its frame)."""
        k = max(0, bisect.bisect_right(self.frame_idx, idx) - 1)
        return self.frame_t[k] + (idx - self.frame_idx[k]) / VAD_RATE

    def to_clock(self, words: list[Word], utt_start: int) -> list[Word]:
        return [
            Word(w.text, round(self.time_of(utt_start + w.start * VAD_RATE), 3),
                 round(self.time_of(utt_start + w.end * VAD_RATE), 3))
            for w in words
        ]
