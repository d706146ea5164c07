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
decode is not. The frames a stopped stream had not processed go to its ``on_discard`` hook (counted).
Errors: a recognizer crash ends ``stream`` with BackendError (never a hang). A service error
(a recognizer's final raising BackendError, e.g. an HTTP endpoint down) does the same unless
``on_error`` is given: then ``on_error(exc)`` is called on the loop, the utterance is
committed with its last partial (if any) and the stream goes on with the next utterance.
A failure that cost no transcript (``Recognizer.error_after_final``: the final came, a helper
failed on the way, e.g. the embedded STT's pocketsphinx child died) is reported after that final
to the stream's ``on_fault`` hook (kame.runtime.sttloop gives it: the session reports the STT
down, the stream goes on), else to ``on_error``; with neither it ends the stream.
Stopping: when the consumer stops the stream (its session closed), the worker gives up at its next
step (before each recognizer call, not only at the next frame), ``close()``s the recognizer of an
unfinished utterance and never opens a new one; a recognizer call that waits for a shared
resource may give up too (``stream_stop_event``; pocketsphinx's child process lock does).
Log lines, the recognizers' too, name the session the stream runs for (its ``owner`` hook, which
kame.runtime.sttloop gives): "session c2: STT stream ended: ...". A failure of work
still under way after the consumer stopped the stream (its session closed, or restarted it: e.g.
an HTTP request whose connection kame itself closed) is not the service's fault: it is logged
at debug level as such, not as a warning blaming the service.
Hooks: a stream's ``owner``, ``on_fault`` and ``on_discard`` are those its opener gave
``kame.backend.stt.base.open_stream`` (``stream_hooks()``), read once as the stream starts.
The worker thread is kame.backend.stt.streamworker; this module is the event-loop side and the
recognizers' interface.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import AsyncIterable, AsyncIterator, Callable

import numpy as np

from ...audio import check_pcm
from ...errors import AudioFormatError, BackendError, ConfigError, KameError
from ...runtime.clock import Clock, MonotonicClock
from ...runtime.metrics import Metric, MetricsSink, null_sink
from ..options import number
from ..types import FRAME_SIZE, AudioFrame, Transcript, Word
from ..vad import VAD_RATE, VADConfig, check_vad, vad_used_as
from .base import STT, owner_prefix, stream_hooks
from .spec import STREAMING_RULES
# (the worker thread of a stream, and the recognizers' side of its stop, which they import from here)
from .streamworker import StreamStopped, _Worker, stream_stop_event

__all__ = ["INBOX_FRAMES", "Recognizer", "BufferedRecognizer", "SegmentedSTT", "StreamStopped", "stream_stop_event"]

INBOX_FRAMES = 188  # ~15 s of 80 ms frames handed to the worker and not processed yet, at most


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
        hooks = stream_hooks()  # (its opener's: kame.backend.stt.base.open_stream)
        worker = _Worker(self, _poster(loop, out), owner_prefix(), _on_loop(loop, room.release),
                         on_fault=hooks.on_fault or self.on_error)
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
            (hooks.on_discard or (lambda n: None))(worker.stop() or 0)  # (its inbox: never processed)
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


def _newer_partial_waiting(q: asyncio.Queue) -> bool:
    items = list(q._queue)  # type: ignore[attr-defined]  (peek; asyncio.Queue has no API)
    return bool(items) and items[0][0] == "partial"
