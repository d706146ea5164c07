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

The stream's hooks are given where it is opened, as keywords of ``open_stream`` (kame.runtime.sttloop
passes all three), and belong to the stream it returns: they are set around each of its steps and
its close, in the task reading it, and reset after (two streams read in one task each have their
own; a bare ``stt.stream(...)`` has none). An STT reads them with ``stream_hooks()`` (a
StreamHooks) in its ``stream()``, or in a task or thread it starts there in a copy of the context
(an STT that does not read them works as before: they are this module's concern, not each STT's):
  ``owner=SESSION_ID``: an STT's log lines name the session ("session c2: ...": ``owner_prefix()``);
  ``on_fault=fn``: ``fn(exc)`` hears a failure the stream goes on from, having lost no transcript
    (kame's SegmentedSTT: a Recognizer's ``error_after_final``; without it, its ``on_error`` hears it,
    and with neither it ends the stream);
  ``on_discard=fn``: ``fn(n)`` hears how many frames the stream had taken and not processed when it
    was stopped (restarted or closed: lost; the supervisor counts them).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, AsyncIterable, AsyncIterator, Callable

from ...errors import BackendError
from ..llm.base import check_stream, clean_text, component_name, yielded
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


@dataclass(frozen=True)
class StreamHooks:
    """What the opener of a stream gives it (``open_stream``'s keywords; the module's doc)."""

    owner: str = ""  # the session the stream runs for ("": none)
    on_fault: Callable[[BackendError], None] | None = None  # hears a failure the stream goes on from
    on_discard: Callable[[int], None] | None = None  # hears the frames a stopped stream had not processed


_HOOKS: contextvars.ContextVar[StreamHooks] = contextvars.ContextVar("kame_stt_stream_hooks", default=StreamHooks())


def stream_hooks() -> StreamHooks:
    """The hooks of the stream being read (``open_stream``'s, during each of its steps; also in the
    tasks and threads its STT starts in a copy of that context); StreamHooks() (none) elsewhere."""
    return _HOOKS.get()


def owner_prefix() -> str:
    """The prefix of an STT's log lines: "session ID: " in a stream a session opened (its steps, and
    the tasks and threads the STT starts in a copy of their context), else ""."""
    owner = _HOOKS.get().owner
    return f"session {owner}: " if owner else ""


def open_stream(stt: Any, frames: AsyncIterable[AudioFrame], metrics=None, owner: str = "", *,
                on_fault: Callable[[BackendError], None] | None = None,
                on_discard: Callable[[int], None] | None = None) -> AsyncIterator[Transcript]:
    """``stt.stream(frames)``, with ``metrics=`` (this stream's metrics sink) if given and the STT
    takes it, checked (kame.backend.llm.base.check_stream: a BackendError naming the STT's method
    if it is no async iterator); ``owner``, ``on_fault`` and ``on_discard`` are the stream's hooks
    (``stream_hooks()``, the module's doc), set while ``stt.stream`` is called and while each step
    or close of the returned stream runs (a _HookedStream; the STT's own iterator is its .iterator)."""
    hooks = StreamHooks(owner, on_fault, on_discard)
    token = _HOOKS.set(hooks)  # (an STT whose plain def stream() reads them as it is called)
    try:
        kw = {"metrics": metrics} if metrics is not None and takes_stream_metrics(stt) else {}
        return _HookedStream(aiter(check_stream("stt", stt, stt.stream(frames, **kw))), hooks)
    finally:
        _HOOKS.reset(token)


class _HookedStream:
    """What ``open_stream`` returns: the STT's stream, each step and its close run with the stream's
    hooks, set in the task reading it and reset after (was: set in the opener's task for good, so a
    later stream read there had them, and of two streams it opened, both had the second's)."""

    def __init__(self, iterator: AsyncIterator[Transcript], hooks: StreamHooks) -> None:
        self.iterator, self.hooks = iterator, hooks

    def __aiter__(self) -> _HookedStream:
        return self

    async def __anext__(self) -> Transcript:
        return await self._hooked(self.iterator.__anext__)

    async def aclose(self) -> None:
        """The STT's stream's ``aclose()`` (its ``finally`` runs: the worker stops), if it has one."""
        close = getattr(self.iterator, "aclose", None)
        if close is not None:
            await self._hooked(close)

    async def _hooked(self, step: Callable[[], Any]) -> Any:
        token = _HOOKS.set(self.hooks)
        try:
            return await step()
        finally:
            # (a ValueError: the step was closed outside its task, by the GC of a task left behind,
            # whose context holds the token: nothing of it to undo here, nor to set in this context)
            with contextlib.suppress(ValueError):
                _HOOKS.reset(token)


def check_transcript(item: Any, stt: Any) -> Transcript:
    """``item`` if it is a Transcript of Words (str text, finite times), else BackendError("STT
    NAME broke its interface: yielded dict {...}, expected Transcript") or one naming the bad word.
    Its words' text cleaned as an LLM's pieces are (kame.backend.llm.base.clean_text: a lone
    surrogate, which the openai STT's json.loads makes of a server's "\\ud83d", is U+FFFD; control
    characters are removed, of a terminal escape its ESC only, separators a space); a word left
    with nothing but U+FFFD (the STT's own, or a lone surrogate's) and white space is dropped, its
    times too (was: the raw text went into the conversation, the embedded LLM's tokenizer failed on it with
    a TypeError on this turn and every later one, and the tandem's oracle made no prediction for
    the rest of the session). A clean transcript is returned as it is (the same object)."""
    broke = f"STT {component_name(stt)} broke its interface"
    if not isinstance(item, Transcript):
        raise BackendError(f"{broke}: yielded {yielded(item)}, expected Transcript (kame.backend.types)")
    words = item.words if isinstance(item.words, (tuple, list)) else None
    if words is None:
        raise BackendError(f"{broke}: Transcript.words is {yielded(item.words)}, expected a tuple of Word")
    cleaned: list[Word] = []
    changed = False
    for w in words:
        if not isinstance(w, Word):
            raise BackendError(f"{broke}: a transcript word is {yielded(w)}, expected Word(text, start, end)")
        if not isinstance(w.text, str):
            raise BackendError(f"{broke}: a transcript word's text is {yielded(w.text)}, expected str")
        if not (is_finite_number(w.start) and is_finite_number(w.end)):  # (not start <= end: a real STT's rounding may cross them)
            raise BackendError(f"{broke}: word {w.text!r} has times {w.start!r}..{w.end!r}: expected finite "
                               f"seconds on the clock of the frames' t (AudioFrame.t)")
        text = clean_text(w.text)
        if not text.replace("\ufffd", "").strip():  # (nothing but what was cleaned out, U+FFFD or white space:
            # noise from the STT, such as the "\ufffd" whisper emits for a character cut at a token boundary,
            # dropped)
            changed = True
        elif text is w.text:
            cleaned.append(w)
        else:
            cleaned.append(replace(w, text=text))
            changed = True
    return replace(item, words=tuple(cleaned)) if changed else item
