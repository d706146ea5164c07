"""The agent/session interface that the server and file mode talk to.

Both the tandem runtime (kame.runtime.engine) and the cascade (kame.cascade) implement it,
so `kame serve --mode tandem|cascade` and `kame run --mode ...` share one protocol.

    agent: Agent = ...                     # built from a KameConfig
    await agent.start()
    session = await agent.open_session()   # raises CapacityError when full
    await session.push_audio(pcm)          # float32 mono 24 kHz, any length (buffered to 80 ms), in real
                                           # time: a backlog over runtime.max_input_backlog_s is dropped
    async for out in session.outputs():    # AgentAudio / AgentText / Meta, in order; ONE reader per
        ...                                # session (a second open one: ReaderError): dispatch by type
    session.input_backlog_s                # audio pushed and not stepped yet (s); 0.0 if none is buffered
    await session.close()
    await agent.stop()

Outputs:
  AgentAudio  a chunk of agent speech (float32 24 kHz; the tandem yields one 80 ms frame each)
  AgentText   a piece of the agent's text (inner monologue / LLM reply text)
  Meta        a JSON-able dict: {"type": "transcript"|"oracle"|"metric"|"info"|..., ...}
  ErrorEvent  a recoverable error for the client (the session goes on)
"""

from __future__ import annotations

import asyncio
import re
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Union

import numpy as np

from ..errors import KameError


def _why(exc: BaseException) -> str:
    """An error for the session (the "error" of a {"type": "backend"} Meta, in both agents):
    kame's own errors say it all, others get their type."""
    return str(exc) if isinstance(exc, KameError) else f"{type(exc).__name__}: {exc}"


class CapacityError(KameError):
    """The agent is serving its maximum number of sessions."""


class SessionIdError(KameError, ValueError):
    """open_session(id) with the id of a session that is still open."""


class ReaderError(KameError, RuntimeError):
    """A session's outputs() called while another reader of it is open: each output goes to one
    reader, so two would each silently get part of them."""


UNWINDING_MIN = 4  # closed sessions whose STT streams may unwind at once, at least (room_to_unwind)


async def room_to_unwind(unwinding: Callable[[], set], max_sessions: int, wait_s: float) -> None:
    """Closed sessions free their place at once while their STT streams unwind in the background
    (both agents' close()); this bounds how many may unwind at once, so a client that opens and
    closes sessions in a burst cannot pile up STT streams: with max_sessions (at least
    UNWINDING_MIN) or more still unwinding, a new session waits up to ``wait_s`` (wall time) for
    one of them, then is refused (CapacityError). ``unwinding()``: the agent's current set of
    them (read again after the wait: sessions close meanwhile); each has ``stopped`` and
    ``wait_stopped()``."""
    cap = max(UNWINDING_MIN, max_sessions)
    left = [x for x in unwinding() if not x.stopped]
    if len(left) < cap:
        return
    waits = {asyncio.ensure_future(x.wait_stopped()) for x in left}
    try:
        await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    left = [x for x in unwinding() if not x.stopped]
    if len(left) >= cap:
        raise CapacityError(f"{len(left)} closed sessions are still shutting down their speech recognition; "
                            f"try again in a moment")


def session_id_for(session_id: str | None, open_ids, make: Callable[[], str]) -> str:
    """The id of a new session (both agents' rule): ``session_id`` unless an open session has it
    (SessionIdError); without one, the first of make(), make(), ... that no open session has."""
    if session_id is not None and session_id in open_ids:
        raise SessionIdError(f"session id {session_id!r} is in use by an open session; close it first or "
                             f"give another id (or none: the agent makes one)")
    sid = session_id
    while sid is None or sid in open_ids:
        sid = make()
    return sid


@dataclass(frozen=True)
class AgentAudio:
    pcm: np.ndarray  # float32 [N] at 24 kHz
    t: float


@dataclass(frozen=True)
class AgentText:
    text: str
    t: float


@dataclass(frozen=True)
class Meta:
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorEvent:
    message: str  # all there is to say (`kame run` records it)
    t: float
    brief: str | None = None  # what a remote client is told instead (client_form); None: made from message


Output = Union[AgentAudio, AgentText, Meta, ErrorEvent]

# ---- what a remote client is told of a failure ----------------------------------------------
# A back-end's error names its internal URL, the upstream server's answer, where the API key comes
# from: for the operator (the log, `kame run`), not for `kame serve`'s clients. They get the
# component and a short cause; the server logs the rest (kame.server.ops.for_client).

SEE_LOG = "see the server log"
_CAUSES = (  # (a pattern in kame's back-end errors, the short cause; {c}: the component, upper-case)
    (re.compile(r"\bHTTP (\d{3})\b"), "HTTP {0} from the {c} server"),
    (re.compile(r"\bcannot connect\b|ConnectionRefused|ClientConnector", re.I), "cannot reach the {c} server"),
    (re.compile(r"\bstalled\b", re.I), "stalled"),
    (re.compile(r"\btimed out\b|\bTimeoutError\b", re.I), "timed out"),
    (re.compile(r"\bover the .* limit\b"), "its answer was too large"),
)


def backend_brief(component: str, error: str | None) -> str:
    """A back-end failure as a remote client is told it: "llm back-end failed (HTTP 401 from the
    LLM server); see the server log" (no cause class found: none said)."""
    for pattern, cause in _CAUSES:
        if m := pattern.search(error or ""):
            return f"{component} back-end failed ({cause.format(*m.groups(), c=component.upper())}); {SEE_LOG}"
    return f"{component} back-end failed; {SEE_LOG}"


def internal_error(what: str, exc: BaseException, t: float) -> ErrorEvent:
    """The ErrorEvent of a failure inside kame (a frame step, hybrid routing, building a prompt):
    "what: exc" for `kame run` and the log; a remote client is told ``what`` only (the exception's
    text may name files, hosts, a plugin's internals)."""
    return ErrorEvent(f"{what}: {exc}", t, f"{what}; {SEE_LOG}")


def client_form(out: Output) -> Output:
    """``out`` as `kame serve` sends it: an ErrorEvent says its ``brief`` (set where it is made:
    internal_error, BackendHealth), one without a brief its message as it is; a "backend" Meta's
    "error" is backend_brief's. Other outputs, and those with nothing to hide, are returned as they are."""
    if isinstance(out, ErrorEvent):
        text = out.message if out.brief is None else out.brief
        return out if text == out.message else ErrorEvent(text, out.t, text)
    if isinstance(out, Meta) and isinstance(out.data, dict) and out.data.get("type") == "backend" \
            and out.data.get("error") and isinstance(out.data.get("component"), str):
        return Meta({**out.data, "error": backend_brief(out.data["component"], str(out.data["error"]))})
    return out


def _task() -> asyncio.Task | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # (no running loop)
        return None


class OutputReader:
    """What a session's outputs() returns: the items of its output queue until the end marker
    (left queued, so a later reader ends at once too). It is over for good when the marker comes,
    when it is closed (``aclose()``, contextlib.aclosing) or when waiting for an item raises (its
    task was cancelled); the items it did not take stay queued for the next reader."""

    def __init__(self, slot: "SingleReader") -> None:
        self._slot = slot
        self.done = False
        self._task = _task()  # the task reading it (its creator until it is iterated)

    @property
    def open(self) -> bool:
        """Not over, and its task has not ended (one cancelled in its loop body may still be
        referenced by its traceback: it reads no more)."""
        return not self.done and (self._task is None or not self._task.done())

    def __aiter__(self) -> "OutputReader":
        return self

    async def __anext__(self) -> Output:
        if self.done:
            raise StopAsyncIteration
        if self._slot._last() is not self:  # read on after a newer reader took over (this one's task had ended)
            self.done = True
            raise ReaderError(f"this outputs() reader of session {self._slot._id} was replaced by a newer one "
                              f"(outputs() was called again once the task reading this one had ended); read "
                              f"the newer one")
        self._task = _task()
        queue, end = self._slot._queue, self._slot._end
        try:
            item = await queue.get()  # (a cancelled get() takes no item)
        except BaseException:
            self.done = True  # as an async generator: an exception ends it
            raise
        if item is end:
            queue.put_nowait(item)
            self.done = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self.done = True


class SingleReader:
    """A session's outputs(), one reader at a time (the tandem's, the cascade's and the echo agent's
    sessions). A reader is open from outputs() until it is over (OutputReader), the task reading it
    has ended, or nothing refers to it any more (a loop left with ``break``); outputs() while one is
    open raises ReaderError (was: both read the one queue, each silently got part of the outputs)."""

    def __init__(self, queue: asyncio.Queue, end: object, session_id: str) -> None:
        self._queue, self._end, self._id = queue, end, session_id
        self._last: Callable[[], OutputReader | None] = lambda: None

    @property
    def reading(self) -> bool:
        """A reader is open (file mode's: the cascade's close() lets its STT flush for it)."""
        r = self._last()
        return r is not None and r.open

    def open(self) -> OutputReader:
        if self.reading:
            raise ReaderError(
                f"session {self._id} already has an outputs() reader; each output goes to one reader, so a "
                f"second would silently split them. Read them in one loop that dispatches by type "
                f"(isinstance(out, AgentAudio) / AgentText / Meta / ErrorEvent) and hands them on, or end "
                f"the first reader before starting another (leave its loop, cancel its task, or await "
                f"its aclose()); nothing is lost in between")
        r = OutputReader(self)
        self._last = weakref.ref(r)
        return r


class BackendHealth:
    """A session's record of its back-end components ("stt", "llm", "tts"; each up until it
    fails) and what it sends about them, in either mode: every failure an ErrorEvent
    (``message``, else a default; its ``brief`` for remote clients: backend_brief); on a change
    only, Meta {"type": "backend", "component", "status": "down"|"up", "error", "t"} (down, then
    up at the component's next success)."""

    def __init__(self, emit) -> None:
        self._emit = emit  # Output -> None: the session's output queue
        self.down: set[str] = set()

    def report(self, component: str, ok: bool, t: float, error: str | None = None,
               message: str | None = None) -> None:
        if not ok:
            self._emit(ErrorEvent(message or f"back-end {component} failed: {error}", t,
                                  backend_brief(component, error)))
        if ok == (component in self.down):  # a change
            (self.down.discard if ok else self.down.add)(component)
            self._emit(Meta({"type": "backend", "component": component, "status": "up" if ok else "down",
                             "error": error, "t": t}))


class Session(ABC):
    id: str

    @abstractmethod
    async def push_audio(self, pcm: np.ndarray) -> None:
        """Feed user audio (float32 mono 24 kHz, any length)."""

    @abstractmethod
    def outputs(self) -> AsyncIterator[Output]:
        """The session's outputs, in order, until it is closed. One reader at a time (ReaderError)."""

    @abstractmethod
    async def close(self) -> None:
        """End the session and free its resources (idempotent)."""

    @property
    def input_backlog_s(self) -> float:
        """User audio pushed and not stepped yet, in seconds (kame serve lets it be stepped after a
        client's END_INPUT); 0.0 for a session that does not buffer (the cascade's is only a last
        part-frame waiting for more audio: it hands each whole 80 ms frame to its STT and VAD within push_audio)."""
        return 0.0


class Agent(ABC):
    max_sessions: int

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def open_session(self, session_id: str | None = None) -> Session: ...


CLOSE_COMPONENT_S = 5.0  # one component's aclose() at most, then the agent stops without it


async def close_components(parts, what: str = "") -> None:
    """``await part.aclose()`` for each shared component that has one (HTTP sessions of STT, LLM,
    TTS), each for at most CLOSE_COMPONENT_S; a failure or a hang is logged, never raised: a dead
    back-end (or a plugin whose aclose never returns) must not stop an agent stopping."""
    import logging

    from .clock import cancel_within

    for part in parts:
        aclose = getattr(part, "aclose", None)
        if aclose is not None:
            task = asyncio.ensure_future(aclose())
            done, _ = await asyncio.wait({task}, timeout=CLOSE_COMPONENT_S)  # (not wait_for: it waits for a
            if not done:  # cancelled aclose that swallows its cancellation)
                await cancel_within([task], 0)
                logging.getLogger(__name__).warning("%sclosing %s did not end within %.0f s; left", what,
                                                    type(part).__name__, CLOSE_COMPONENT_S)
            elif not task.cancelled() and task.exception() is not None:
                logging.getLogger(__name__).warning("%sclosing %s failed: %s", what, type(part).__name__,
                                                    task.exception())
