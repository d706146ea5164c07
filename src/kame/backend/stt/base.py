"""The streaming STT interface.

    stt = registry.create("stt", "embedded")
    async for tr in stt.stream(frames):      # frames: AsyncIterable[AudioFrame] (24 kHz, 80 ms)
        ...                                   # tr: Transcript (partial or final), words timed
                                              # on the same clock as the frames' ``t``

The stream ends when ``frames`` ends (after flushing a last final). Heavy compute runs in a
worker thread, never on the event loop. Every item must be a ``Transcript``; consumers check
that with ``check_transcript`` (anything else is the STT failing, with a message saying what it
yielded).

Per-stream metrics: an STT created with a metrics sink (the agent's) may also accept
``stream(frames, metrics=sink)``, a sink for that one stream's metrics (the session's, which
tags them with the session and forwards them to the agent's sink) used instead of its own.
``open_stream(stt, frames, metrics)`` passes it to STTs that take it (kame's own do:
kame.backend.stt.streaming.SegmentedSTT) and leaves it out for the others; what ``stream``
returned that is no async iterator is a BackendError naming the STT's method (``check_stream``).

``open_stream(..., owner=SESSION_ID)`` also sets ``STREAM_OWNER`` for the task that iterates the
stream (kame.runtime.sttloop does): an STT's log lines can name the session ("session c2: ...").
"""

from __future__ import annotations

import contextvars
import inspect
from abc import ABC, abstractmethod
from typing import Any, AsyncIterable, AsyncIterator

from ...errors import BackendError
from ..llm.base import check_stream, component_name, yielded
from ..options import is_finite_number
from ..types import AudioFrame, Transcript, Word


class STT(ABC):
    name: str = "stt"

    @abstractmethod
    def stream(self, frames: AsyncIterable[AudioFrame]) -> AsyncIterator[Transcript]:
        """Transcribe a live audio stream into partial and final transcripts."""


def takes_stream_metrics(stt: Any) -> bool:
    """Whether ``stt.stream`` accepts the per-stream ``metrics`` keyword."""
    try:
        params = inspect.signature(stt.stream).parameters
    except (TypeError, ValueError):
        return False
    return "metrics" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


STREAM_OWNER: contextvars.ContextVar[str] = contextvars.ContextVar("kame_stt_stream_owner", default="")


def owner_prefix() -> str:
    """The prefix of an STT's log lines: "session ID: " in a stream a session opened (its task, and
    the threads it starts in a copy of its context), else ""."""
    owner = STREAM_OWNER.get()
    return f"session {owner}: " if owner else ""


def open_stream(stt: Any, frames: AsyncIterable[AudioFrame], metrics=None, owner: str = "") -> AsyncIterator[Transcript]:
    """``stt.stream(frames)``, with ``metrics=`` (this stream's metrics sink) if given and the STT
    takes it, checked (kame.backend.llm.base.check_stream: a BackendError naming the STT's method
    if it is no async iterator); ``owner`` (the session) is STREAM_OWNER in the calling task from
    here on."""
    if owner:
        STREAM_OWNER.set(owner)
    if metrics is not None and takes_stream_metrics(stt):
        return check_stream("stt", stt, stt.stream(frames, metrics=metrics))
    return check_stream("stt", stt, stt.stream(frames))


def check_transcript(item: Any, stt: Any) -> Transcript:
    """``item`` if it is a Transcript of Words with finite times, else BackendError("STT NAME
    broke its interface: yielded dict {...}, expected Transcript") or one naming the bad word."""
    broke = f"STT {component_name(stt)} broke its interface"
    if not isinstance(item, Transcript):
        raise BackendError(f"{broke}: yielded {yielded(item)}, expected Transcript (kame.backend.types)")
    words = item.words if isinstance(item.words, (tuple, list)) else None
    if words is None:
        raise BackendError(f"{broke}: Transcript.words is {yielded(item.words)}, expected a tuple of Word")
    for w in words:
        if not isinstance(w, Word):
            raise BackendError(f"{broke}: a transcript word is {yielded(w)}, expected Word(text, start, end)")
        if not (is_finite_number(w.start) and is_finite_number(w.end)):  # (not start <= end: a real STT's rounding may cross them)
            raise BackendError(f"{broke}: word {w.text!r} has times {w.start!r}..{w.end!r}: expected finite "
                               f"seconds on the clock of the frames' t (AudioFrame.t)")
    return item
