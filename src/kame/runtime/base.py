"""The agent/session interface that the server and file mode talk to.

Both the tandem runtime (kame.runtime.engine) and the cascade (kame.cascade) implement it,
so `kame serve --mode tandem|cascade` and `kame run --mode ...` share one protocol.

    agent: Agent = ...                     # built from a KameConfig
    await agent.start()
    session = await agent.open_session()   # raises CapacityError when full
    await session.push_audio(pcm)          # float32 mono 24 kHz, any length (buffered to 80 ms), in real
                                           # time: a backlog over runtime.max_input_backlog_s is dropped
    async for out in session.outputs():    # AgentAudio / AgentText / Meta, in order
        ...
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
    message: str
    t: float


Output = Union[AgentAudio, AgentText, Meta, ErrorEvent]


class BackendHealth:
    """A session's record of its back-end components ("stt", "llm", "tts"; each up until it
    fails) and what it sends about them, in either mode: every failure an ErrorEvent
    (``message``, else a default); on a change only, Meta {"type": "backend", "component",
    "status": "down"|"up", "error", "t"} (down, then up at the component's next success)."""

    def __init__(self, emit) -> None:
        self._emit = emit  # Output -> None: the session's output queue
        self.down: set[str] = set()

    def report(self, component: str, ok: bool, t: float, error: str | None = None,
               message: str | None = None) -> None:
        if not ok:
            self._emit(ErrorEvent(message or f"back-end {component} failed: {error}", t))
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
        """The session's outputs, in order, until it is closed."""

    @abstractmethod
    async def close(self) -> None:
        """End the session and free its resources (idempotent)."""


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
