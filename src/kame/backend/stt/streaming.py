"""The machinery shared by kame's STTs: VAD-segmented utterances, decoded in a worker thread.

    stt = PocketsphinxSTT(clock=clock, metrics=sink)        # any SegmentedSTT subclass
    async for tr in stt.stream(frames):                     # frames: AsyncIterable[AudioFrame]
        print(tr.final, tr.text, [(w.start, w.end) for w in tr.words])

Pipeline of one ``stream`` call:
  event loop: a feeder task checks each frame (AudioFormatError) and hands it to the worker;
  worker thread: 24 -> 16 kHz, StreamingVAD, and a ``Recognizer`` (one per utterance) that
    sees the utterance audio (with ~0.3 s pre-roll) and is asked for a partial at most every
    ``partial_interval`` s of audio; when the VAD reports end of speech (``min_silence``) or
    the utterance reaches ``max_utterance`` s, it is asked for the final. A recognizer whose
    final is a request to a service starts it without waiting (``Recognizer.final_future``):
    the worker goes on with the next utterance (its VAD, partials and final) while it is in
    flight, and emits the finals in order as they come (so one may come after the next
    utterance's first partials; was: a request slower than the gap to the next utterance held
    that one's partials and final up, a lag growing for the rest of the session).
  Results go back to the loop, which stamps ``Transcript.t`` from the injected clock and
  emits the metrics "stt_partial_latency" (t - end of the newest word) and
  "stt_final_latency" (t - end of speech), labelled with the STT, to ``stream(frames,
  metrics=sink)``'s sink if given (a session's: it tags them with the session), else to the
  STT's own (``metrics=`` at construction).
Bounded work: if the worker is behind (more than ``max_lag`` s of audio waiting), or the VAD
hears a pause (>= ``pause_skip`` s, the end of speech may be coming and the final needs the
CPU), partial decodes are skipped.
Bounded backlog: the feeder hands the worker at most INBOX_FRAMES (15 s) of audio it has not
processed yet; while that many wait, it takes no more frames from ``frames``, so a recognizer
slower than real time holds the audio back in the caller's iterator (was: an unbounded inbox,
minutes behind). kame's sessions feed it from kame.runtime.sttloop.STTSupervisor's queue: at most
20 s more (the oldest dropped, counted in ``stt_dropped_s``); a stream that takes nothing while
audio waits there is stalled after max(``backend.stt_stall_s``, ``decode_stall_s``), so one slow
decode is not. The frames a stopped stream had not processed go to ``STREAM_ON_DISCARD`` (counted).
Errors: a recognizer crash ends ``stream`` with BackendError (never a hang). A service error
(a recognizer's final raising BackendError, e.g. an HTTP endpoint down) does the same unless
``on_error`` is given: then ``on_error(exc)`` is called on the loop, the utterance is
committed with its last partial (if any) and the stream goes on with the next utterance.
A failure that cost no transcript (``Recognizer.error_after_final``: the final came, a helper
failed on the way, e.g. the embedded STT's pocketsphinx child died) is reported after that final
to the stream's fault handler (``STREAM_ON_FAULT``, which kame.runtime.sttloop sets: the session
reports the STT down, the stream goes on), else to ``on_error``; with neither it ends the stream.
Stopping: when the consumer stops the stream (its session closed), the worker gives up at its next
step (before each recognizer call, not only at the next frame), ``close()``s the recognizer of an
unfinished utterance and never opens a new one; a recognizer call that waits for a shared
resource may give up too (``stream_stop_event``; pocketsphinx's child process lock does).
Log lines, the recognizers' too, name the session the stream runs for (``STREAM_OWNER``, which
kame.runtime.sttloop sets): "session c2: STT stream ended: ...". A failure of work
still under way after the consumer stopped the stream (its session closed, or restarted it: e.g.
an HTTP request whose connection kame itself closed) is not the service's fault: it is logged
at debug level as such, not as a warning blaming the service.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import logging
import threading
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import AsyncIterable, AsyncIterator, Callable

import numpy as np

from ...audio import check_pcm
from ...errors import AudioFormatError, BackendError, ConfigError, KameError
from ...runtime.clock import Clock, MonotonicClock
from ...runtime.metrics import Metric, MetricsSink, null_sink
from ..options import number
from ..priority import lower_thread_priority
from ..types import FRAME_SIZE, AudioFrame, Transcript, Word
from ..vad import VAD_RATE, StreamingVAD, VADConfig, check_vad, vad_used_as
from .base import STT, owner_prefix
from .spec import STREAMING_RULES

log = logging.getLogger(__name__)

INBOX_FRAMES = 188  # ~15 s of 80 ms frames handed to the worker and not processed yet, at most

# the stop event of the stream the current worker thread serves (None outside a stream's worker)
_STREAM_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("kame_stt_stream_stop",
                                                                                     default=None)


# who hears this task's streams' error_after_final (the module's doc; kame.runtime.sttloop sets it), and
# how many frames a stream had not processed when it stopped (restarted or closed: lost; sttloop counts them)
STREAM_ON_FAULT: contextvars.ContextVar[Callable[[BackendError], None] | None] = contextvars.ContextVar(
    "kame_stt_stream_on_fault", default=None)
STREAM_ON_DISCARD: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar(
    "kame_stt_stream_on_discard", default=None)


def stream_stop_event() -> threading.Event | None:
    """The event set when the stream this worker thread serves is stopped by its consumer (None
    when not called from a stream's worker): a recognizer that waits for something shared (a
    lock, a child process) should give up with ``StreamStopped`` once it is set."""
    return _STREAM_STOP.get()


class StreamStopped(BackendError):
    """A recognizer call gave up because its stream was stopped (nobody wants the result)."""


class Recognizer(ABC):
    """One utterance's decoder; all methods run in the worker thread.

    Word times it returns are in seconds from the start of the utterance audio it was fed.
    ``accept`` gets ~80 ms chunks at ``sample_rate``: 24 kHz = the frames as given, or 16 kHz
    (their length varies by a few samples: the first is 1269, then 1280 each).
    """

    sample_rate: int = VAD_RATE
    lag: float = 0.0  # s of audio waiting behind this chunk (set by the worker before accept)
    # set by ``final``: its final is good but a helper failed (reported after it: the module's doc)
    error_after_final: BackendError | None = None

    @abstractmethod
    def accept(self, pcm16k: np.ndarray) -> None:
        """Append float32 audio at ``sample_rate`` (cheap incremental work only)."""

    @abstractmethod
    def partial(self) -> list[Word] | None:
        """Current hypothesis of the whole utterance (None: nothing new to say)."""

    def pause(self, speech_end: float) -> None:
        """The VAD hears a pause after ``speech_end`` (s from the utterance start): the end of
        the utterance may be coming (``pause_skip`` s before the VAD can be sure). A
        recognizer may start its final decode now, speculatively. Default: nothing."""

    @abstractmethod
    def final(self, speech_end: float | None = None) -> list[Word]:
        """Best hypothesis of the complete utterance; the recognizer is done after this.

        ``speech_end``: where the VAD saw speech end (s from the utterance start), if known;
        the audio after it is silence (trimming it avoids whisper's silence hallucinations).
        """

    def final_future(self, speech_end: float | None = None) -> Future | None:
        """Start the final without waiting for it (a recognizer whose final is a request to a
        service): a Future done when its result is there. The worker then goes on with the next
        utterances and calls ``final`` (which must not wait any more) once it is done, finals in
        order. None (the default): ``final`` is called now, and waited for."""
        return None

    def close(self) -> None:
        """The stream was stopped before this utterance's final: give back what the recognizer
        holds (a decoder, a thread), without waiting. Default: nothing."""


class BufferedRecognizer(Recognizer):
    """A recognizer that keeps the whole utterance (decoders that re-read the growing buffer)."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.n = 0  # samples received

    def accept(self, pcm16k: np.ndarray) -> None:
        self.chunks.append(pcm16k)
        self.n += pcm16k.shape[0]

    def audio(self, n: int | None = None) -> np.ndarray:
        """The first ``n`` samples (all by default)."""
        x = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        return x if n is None else x[:n]


class SegmentedSTT(STT, ABC):
    """An STT made of a VAD segmenter + a per-utterance ``Recognizer`` in a worker thread."""

    name = "segmented"
    partial_interval = 0.08  # s of audio between partial requests (subclasses override)
    pause_skip = 0.24  # no partial requests once the VAD has heard this much trailing silence
    decode_stall_s = 30.0  # s one decode may hold the stream (its inbox full) before it is a stall (sttloop)

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        metrics: MetricsSink | None = None,
        vad: VADConfig | dict | None = None,
        partial_interval: float | None = None,
        max_lag: float = 0.5,
        max_utterance: float = 25.0,
        preroll: float = 0.3,
        on_error: Callable[[BackendError], None] | None = None,
        nice: int = 0,
    ) -> None:
        who = f"{self.name} STT"
        self.clock = clock or MonotonicClock()
        self.metrics = metrics or null_sink
        self.vad_config = vad if isinstance(vad, VADConfig) else VADConfig(**(vad or {}))
        with vad_used_as(f"the {who}'s end-of-utterance detector: "):
            check_vad(self.vad_config)  # a missing VAD package fails here, not in every stream's worker
        if partial_interval is not None:
            self.partial_interval = number(who, "partial_interval", partial_interval,
                                           **STREAMING_RULES["partial_interval"])
        # skip partial decodes while more audio than this waits (inf: never)
        self.max_lag = number(who, "max_lag", max_lag, **STREAMING_RULES["max_lag"])
        self.max_utterance = number(who, "max_utterance", max_utterance, **STREAMING_RULES["max_utterance"])
        self.preroll = number(who, "preroll", preroll, **STREAMING_RULES["preroll"])
        if on_error is not None and not callable(on_error):
            raise ConfigError(f"{who}: on_error must be a function taking the BackendError, got {on_error!r}")
        self.on_error = on_error  # recoverable service errors go here instead of ending stream
        # the worker thread (and the decode threads it starts) runs this much lower
        self.nice = number(who, "nice", nice, min=0, cast=int)

    @abstractmethod
    def new_recognizer(self) -> Recognizer:
        """Build the decoder for a new utterance (called in the worker thread)."""

    async def _open(self) -> None:
        """Per-stream setup on the event loop (e.g. an HTTP session); default: nothing."""

    async def _close(self) -> None:
        """Undo ``_open``."""

    # ---------------------------------------------------------------- event-loop side
    async def stream(self, frames: AsyncIterable[AudioFrame], *,
                     metrics: MetricsSink | None = None) -> AsyncIterator[Transcript]:
        """``metrics``: this stream's metrics sink (e.g. the session's), instead of the STT's."""
        sink = metrics or self.metrics
        loop = asyncio.get_running_loop()
        await self._open()
        out: asyncio.Queue = asyncio.Queue()
        room = asyncio.Semaphore(INBOX_FRAMES)  # frames the worker's inbox may still take
        worker = _Worker(self, _poster(loop, out), owner_prefix(), _on_loop(loop, room.release),
                         on_fault=STREAM_ON_FAULT.get() or self.on_error)
        self._loop = loop  # for recognizers that do I/O on the loop (openai)
        # (in a copy of this task's context: the recognizers' log lines name the session too)
        thread = threading.Thread(target=contextvars.copy_context().run, args=(worker.run,),
                                  name=f"kame-stt-{self.name}", daemon=True)
        thread.start()

        async def feed() -> None:
            try:
                source = aiter(frames)
                while True:
                    await room.acquire()  # (before the next frame is taken: a slow worker leaves it
                    try:                  # waiting in the caller's queue, where it is bounded and counted)
                        frame = await anext(source)
                    except StopAsyncIteration:
                        break
                    pcm = _check_frame(frame)
                    worker.put(pcm, float(frame.t))
            except Exception as exc:  # bad input / a failing frame source: re-raised as is
                out.put_nowait(("input_error", exc))
            finally:
                worker.close()

        feeder = asyncio.create_task(feed())
        try:
            while True:
                item = await out.get()
                kind = item[0]
                if kind == "done":
                    return
                if kind == "service_error":  # (the stream goes on)
                    item[2](item[1])
                    continue
                if kind == "input_error":
                    raise item[1]
                if kind == "error":
                    exc = item[1]
                    if isinstance(exc, KameError):
                        raise exc
                    raise BackendError(f"{self.name} STT failed: {type(exc).__name__}: {exc}") from exc
                _, words, end_of_speech = item
                if kind == "partial" and _newer_partial_waiting(out):
                    continue  # the consumer is slow: only the newest partial matters
                now = self.clock.now()
                tr = Transcript(tuple(words), kind == "final", now)
                if kind == "partial" and words:
                    sink(Metric("stt_partial_latency", now - words[-1].end, now, labels={"stt": self.name}))
                if kind == "final" and end_of_speech is not None:
                    sink(Metric("stt_final_latency", now - end_of_speech, now, labels={"stt": self.name}))
                yield tr
        finally:
            (STREAM_ON_DISCARD.get() or (lambda n: None))(worker.stop() or 0)  # (its inbox: never processed)
            if not feeder.done():
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
            await loop.run_in_executor(None, thread.join, 5.0)
            await self._close()


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable) -> Callable:
    """The worker's way to call ``fn`` on the stream's loop (hand it an item, free a place in its
    inbox); a no-op once the loop is closed (a worker still unwinding at interpreter exit has
    nobody to tell)."""
    def call(*args) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            if not loop.is_closed():
                raise
    return call


def _poster(loop: asyncio.AbstractEventLoop, out: asyncio.Queue) -> Callable[[tuple], None]:
    """The worker's way to hand an item to the stream (_on_loop)."""
    return _on_loop(loop, out.put_nowait)


def _check_frame(frame: AudioFrame) -> np.ndarray:
    pcm = getattr(frame, "pcm", None)
    if pcm is None:
        raise AudioFormatError(f"expected AudioFrame, got {type(frame).__name__}")
    n = np.shape(pcm)[0] if np.ndim(pcm) else 0
    if n != FRAME_SIZE and n in _OTHER_RATES:
        raise AudioFormatError(f"STT frames must be 80 ms at 24 kHz ({FRAME_SIZE} samples); got {n} samples, "
                               f"which looks like 80 ms at {_OTHER_RATES[n]} Hz: resample with kame.audio.resample")
    return check_pcm(pcm, FRAME_SIZE)  # 1920 samples = 80 ms at 24 kHz, float, mono


_OTHER_RATES = {640: 8000, 1280: 16000, 1764: 22050, 3528: 44100, 3840: 48000}


def _text(words: list[Word]) -> str:
    return " ".join(w.text for w in words)


def _newer_partial_waiting(q: asyncio.Queue) -> bool:
    items = list(q._queue)  # type: ignore[attr-defined]  (peek; asyncio.Queue has no API)
    return bool(items) and items[0][0] == "partial"


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
