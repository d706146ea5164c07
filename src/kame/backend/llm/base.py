"""The streaming chat LLM interface.

    llm = registry.create("llm", "openai:gpt-4.1")
    async for piece in llm.stream_chat([ChatMessage("system", ...), ChatMessage("user", ...)]):
        ...   # text pieces as they arrive

Cancelling the consuming task cancels the request. Errors raise kame.errors.BackendError.
Implementations: kame.backend.llm.openai (OpenAI-compatible HTTP), kame.backend.llm.embedded
(SmolLM2 offline). ``await llm.aclose()`` releases connections.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import AsyncIterator, Sequence

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
        """Stream the reply's text pieces."""

    async def aclose(self) -> None:
        """Release connections/resources (no-op by default; idempotent)."""
