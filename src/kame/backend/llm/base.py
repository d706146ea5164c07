"""The streaming chat LLM interface.

    llm = registry.create("llm", "openai:gpt-4.1")
    async for piece in llm.stream_chat([ChatMessage("system", ...), ChatMessage("user", ...)]):
        ...   # text pieces (str) as they arrive

Cancelling the consuming task cancels the request. Errors raise kame.errors.BackendError.
Every piece must be a ``str`` (possibly empty); a stream that yields anything else (None, an
int, a dict) has broken the interface, and its consumers treat that as the LLM failing:
``check_piece`` raises a BackendError that says what it yielded.
Implementations: kame.backend.llm.openai (OpenAI-compatible HTTP), kame.backend.llm.embedded
(SmolLM2 offline). ``await llm.aclose()`` releases connections.
"""

from __future__ import annotations

import reprlib
from abc import ABC, abstractmethod
from typing import Any, AsyncIterator, Sequence

from ...errors import BackendError
from ..types import ChatMessage


class LLM(ABC):
    name: str = "llm"

    @abstractmethod
    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        """Stream the reply's text pieces (each a str)."""

    async def aclose(self) -> None:
        """Release connections/resources (no-op by default; idempotent)."""


def component_name(part: Any) -> str:
    """How messages name an STT / LLM / TTS: its ``name`` (else its class's)."""
    return str(getattr(part, "name", None) or type(part).__name__)


def describe(llm: Any) -> str:
    """How errors name an LLM: its endpoint if it has one, else its name (else its class)."""
    return str(getattr(llm, "url", None) or component_name(llm))


def yielded(item: Any) -> str:
    """``int 42``, ``None``, ``dict {'text': 'hi'}``: what a component handed over, for an error."""
    return "None" if item is None else f"{type(item).__name__} {reprlib.repr(item)}"


def check_piece(piece: Any, llm: Any, error: type[Exception] = BackendError) -> str:
    """``piece`` if it is text, else ``error`` (BackendError) "LLM NAME broke its interface:
    yielded int 42, expected str (a text piece)"."""
    if isinstance(piece, str):
        return piece
    raise error(f"LLM {describe(llm)} broke its interface: yielded {yielded(piece)}, "
                       "expected str (a text piece)")
