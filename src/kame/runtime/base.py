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


def check_session_id(session_id) -> None:
    """The form of open_session's ``session_id`` (both agents check it first thing, before they
    start or wait for a place: was after, so a caller's wrong argument first loaded every model,
    and on a full agent was a CapacityError): one that is not a str or None is a TypeError, one
    with a control character (a newline) a SessionIdError: ids go into logs and JSON messages."""
    if session_id is not None and not isinstance(session_id, str):
        raise TypeError(f"open_session(session_id): expected a str or None, got {type(session_id).__name__} "
                        f"{session_id!r}; pass str({session_id!r}), or nothing for an id the agent makes")
    if session_id and re.search(r"[\x00-\x1f\x7f]", session_id):
        raise SessionIdError(f"session id {session_id!r} has a control character (a newline, a tab, ...); give "
                             f"one without (or none: the agent makes one)")


def session_id_for(session_id: str | None, open_ids, make: Callable[[], str]) -> str:
    """The id of a new session (both agents' rule): ``session_id`` unless an open session has it
    (SessionIdError); without one (None or ""), the first of make(), make(), ... that no open
    session has (was: "" was taken as given, and the tandem's session then made an id it never
    checked: two open sessions could share one). Its form: check_session_id, which open_session
    calls first."""
    if session_id and session_id in open_ids:
        raise SessionIdError(f"session id {session_id!r} is in use by an open session; close it first or "
                             f"give another id (or none: the agent makes one)")
    sid = session_id
    while not sid or sid in open_ids:
        sid = make()
    return sid


# components= keys an agent may take as objects (checked by own_components; an STT / LLM / TTS's
# method: kame.registry.ASYNC_ITERATORS)
OWN_PARTS = ("stt", "llm", "tts", "vad_factory", "prompt_fn")


def own_components(who: str, components: dict | None, takes: tuple[str, ...],
                   names: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """An agent's ``components=`` -> (names for its info Meta, the caller's own objects), checked
    the same way by both agents (was: the cascade took anything, and every turn then failed with
    Python's error; the tandem took a string under "llm" as a name, and ran backend.llm instead).
    Under a key in ``takes`` (those of OWN_PARTS the agent uses): an STT / LLM / TTS instance with
    its async generator method (kame.registry.async_method_problem: its reason is said; a class
    is refused: pass an instance), a callable vad_factory / prompt_fn; a string there is a
    TypeError (name a registered part in the config instead), unless the key is in ``names``
    (the tandem given backend=: nothing else names its STT / LLM): then a name for the info
    Meta; None is as if it were not given. Other keys are names for the info Meta (strings: an
    object under one is a misspelled key, refused with the key meant). A TypeError
    names ``who`` (e.g. "TandemAgent"), the key and what to do."""
    import inspect

    from .. import registry

    info, own = {}, {}
    for key, value in (components or {}).items():
        if key not in OWN_PARTS and value is not None and not isinstance(value, str):
            import difflib  # (an object under a misspelled key: was taken as a name, the default part used)

            close = difflib.get_close_matches(str(key), takes, n=1, cutoff=0.6)
            raise TypeError(f"{who}(components={{{key!r}: {type(value).__name__}}}): no part is called {key!r} (it "
                            f"takes {', '.join(takes)}; other keys are names for the info Meta, strings)"
                            + (f"; did you mean {close[0]!r}?" if close else ""))
        if key not in takes or (key in names and isinstance(value, str)):
            info[key] = value
            continue
        if value is None:
            continue
        where = f"{who}(components={{{key!r}: {type(value).__name__}}})"
        if isinstance(value, str):
            spec = {"stt": "backend.stt", "llm": "backend.llm", "tts": "cascade.tts", "vad_factory": "runtime.vad"}.get(key)
            use = (f"to use a registered one by its name, set it in the config: {spec} = {value!r} (load_config(None, "
                   f"['{spec}={value}']))" if spec else "the default one is made from the config (backend.*)")
            what = {"stt": "an STT", "llm": "an LLM", "tts": "a TTS"}.get(key, f"a {key}")
            raise TypeError(f"{where}: {value!r} is a name, not {what}: pass your own {key} object there, or leave "
                            f"the key out; {use}")
        method = registry.ASYNC_ITERATORS.get(key)
        if method is None:
            if not callable(value):
                made = "a VAD (one per session)" if key == "vad_factory" else "the chat messages from the turns so far"
                raise TypeError(f"{where}: a {key} is a callable that returns {made}")
        elif inspect.isclass(value):  # (its method is there, unbound: it passed, then failed at the first turn)
            raise TypeError(f"{who}(components={{{key!r}: {value.__name__}}}): {value.__name__} is a class; pass an "
                            f"instance: {value.__name__}(...)")
        elif problem := registry.async_method_problem(key, value):
            has = f"it has no {method}" if problem == "missing" else f"its {method} is {problem}"
            raise TypeError(f"{where}: an own {key} needs an async generator method {method}(...), and {has}: "
                            f"make it 'async def {method}(...)' that yields (kame reads it with 'async for'; "
                            f"docs/backend.md)")
        own[key] = value
    return info, own


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
    # an embedded back-end's child process (pocketsphinx's, the embedded LLM's): its next use restarts it
    (re.compile(r"\bchild process\b.*\b(?:died|exited)\b|\bchild exited\b"), "its process died; restarting"),
    (re.compile(r"\bchild process\b.*\b(?:hung|did not answer)\b"), "its process hung; restarting"),
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
    up at the component's next success; a down with "goes_on" is said again without it when the
    stream then ends while still down)."""

    def __init__(self, emit) -> None:
        self._emit = emit  # Output -> None: the session's output queue
        self.down: set[str] = set()
        self._went_on: set[str] = set()  # down with "goes_on" (its stream went on) and not up since

    def report(self, component: str, ok: bool, t: float, error: str | None = None,
               message: str | None = None, *, goes_on: bool = False) -> None:
        """``goes_on``: a failure its stream went on from, losing no transcript (an STT's
        error_after_final): the "down" Meta says ``"goes_on": true`` (a final may still come)."""
        if not ok:
            self._emit(ErrorEvent(message or f"back-end {component} failed: {error}", t,
                                  backend_brief(component, error)))
        ended = not ok and not goes_on and component in self._went_on  # (the stream that went on ended after all)
        if ok == (component in self.down) or ended:  # a change
            (self.down.discard if ok else self.down.add)(component)
            (self._went_on.add if goes_on and not ok else self._went_on.discard)(component)
            self._emit(Meta({"type": "backend", "component": component, "status": "up" if ok else "down",
                             "error": error, "t": t, **({"goes_on": True} if goes_on and not ok else {})}))


class Session(ABC):
    """One conversation with an agent (``await agent.open_session()``): push the user's audio in
    (``push_audio``), read the agent's outputs (``outputs()``: AgentAudio, AgentText, Meta,
    ErrorEvent, in order, one reader at a time), ``close()`` it when done. A failing part (STT,
    LLM, TTS) or unusable audio is an ErrorEvent in the outputs, never an exception: the session
    goes on. ``id``: its id (given to open_session, or made by the agent). docs/runtime.md."""

    id: str

    @abstractmethod
    async def push_audio(self, pcm: np.ndarray) -> None:
        """Feed user audio: a numpy float array, mono, 24 kHz, in [-1, 1], any length (buffered
        into 80 ms frames), in real time (audio more than runtime.max_input_backlog_s ahead is
        dropped, counted in "stats" dropped_input_s). Unusable audio (a list, int16 samples, more
        than one channel, NaN/inf, samples beyond +-16) is not raised: it is dropped, with an
        ErrorEvent("bad audio dropped: ...") in the outputs and one count in "stats" bad_audio.
        After close(): ignored."""

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
        part-frame waiting for more audio: it hands each whole 80 ms frame to its STT and VAD within push_audio:
        its own input_backlog_s)."""
        return 0.0

    async def pad_input(self) -> None:
        """Fill a last part-frame of ``input_backlog_s`` with silence, past the real-time cap, so that
        it is stepped too (kame serve after a client's END_INPUT: a PCM client's input is rarely
        whole 80 ms frames). Nothing here: a session that buffers a part-frame overrides this (was:
        the silence went through push_audio, whose cap dropped the client's oldest audio for it)."""

    def skip_flush(self) -> None:
        """Let close() wait for nothing more from the session's parts (kame serve's shutdown: its
        final stats are due at once). Nothing here: a session whose close waits (the cascade's, for
        a last transcript) overrides this."""


class Agent(ABC):
    """Serves up to ``max_sessions`` (runtime.max_sessions) sessions at once from one set of
    loaded parts; made by ``kame.build_agent(config)`` (mode "tandem": TandemAgent, "cascade":
    kame.cascade.agent.CascadeAgent). ``await open_session()`` gives a Session (it starts the
    agent if needed), ``await stop()`` closes them all and what start() loaded. docs/runtime.md."""

    max_sessions: int

    @abstractmethod
    async def start(self) -> None:
        """Load the agent's parts (in a worker thread: the event loop goes on). Any number of
        callers may start it at once: it loads once, the others wait for that load and get its
        error (a ConfigError naming the key, a load failure); the next start() tries again. A
        KameError while stop() runs. open_session() calls it, so calling it first is optional
        (it moves the load out of the first session's wait)."""

    @abstractmethod
    async def stop(self) -> None:
        """Close every open session (their outputs end), wait for their STT streams to unwind,
        close the shared STT / LLM / TTS and the agent's threads. Idempotent; a later start()
        (or open_session()) loads the parts again. A start() under way is cancelled (its callers
        get a KameError); an open_session() meanwhile is refused (KameError)."""

    @abstractmethod
    async def open_session(self, session_id: str | None = None) -> Session:
        """A new Session, starting the agent first if needed (its load errors are raised here).
        ``session_id``: a str (None or "": the agent makes one); the id of a session still open
        is a SessionIdError (a closed one's may be used again at once), one that is not a str a
        TypeError. CapacityError when max_sessions (runtime.max_sessions) are open; KameError
        when stop() runs meanwhile."""


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
