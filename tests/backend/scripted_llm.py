"""A scripted in-process LLM test double (tests only, never registered).

    llm = ScriptedLLM()                        # each stream_chat call becomes a Call
    ... producer starts a prediction ...
    call = llm.calls[-1]; call.send("The", " capital"); call.end()   # or call.fail(exc)
    call.closed  # True once the consumer closed/cancelled the stream
    llm = ScriptedLLM(auto=["Hello", " there."])   # every call streams these at once and ends

``ReloadingLLM``: one with the embedded LLM's ``state`` and ``loaded_at`` (its child reloading
its model: ``llm.reload()`` ... ``llm.loaded()``).

``TokenizerLLM``: refuses what the embedded LLM's tokenizer refuses (a lone surrogate: its
TypeError; a control character too), else replies "Fine."; ``llm.calls``: each call's contents.

Also ``cancel_after_first_piece(llm, messages)``: start a stream, cancel its task once a piece
arrived (any LLM; the cancellation tests of the real ones).
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Sequence

from kame.backend.llm.base import LLM
from kame.backend.types import ChatMessage

_END = object()


class Call:
    def __init__(self, messages, max_tokens, temperature) -> None:
        self.messages = list(messages)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closed = False  # the consumer stopped early (cancel/close)
        self.finished = False  # streamed to the end
        self.yielded: list[str] = []

    def send(self, *pieces: str) -> None:
        for p in pieces:
            self.queue.put_nowait(p)

    def end(self) -> None:
        self.queue.put_nowait(_END)

    def fail(self, exc: BaseException) -> None:
        self.queue.put_nowait(exc)


class ScriptedLLM(LLM):
    name = "scripted"

    def __init__(self, auto: list[str] | None = None) -> None:
        self.auto = auto
        self.calls: list[Call] = []

    async def stream_chat(self, messages: Sequence[ChatMessage], *, max_tokens=None, temperature=None) -> AsyncIterator[str]:
        call = Call(messages, max_tokens, temperature)
        self.calls.append(call)
        if self.auto is not None:
            call.send(*self.auto)
            call.end()
        try:
            while True:
                item = await call.queue.get()
                if item is _END:
                    call.finished = True
                    return
                if isinstance(item, BaseException):
                    raise item
                call.yielded.append(item)
                yield item
        finally:
            if not call.finished:
                call.closed = True


class ReloadingLLM(ScriptedLLM):
    """A scripted LLM with the embedded LLM's ``state`` ("up", "loading") and ``loaded_at`` (it
    moves when a load of its model ends: kame.runtime.clock.loaded_mark; a count here)."""

    name = "embedded"

    def __init__(self, auto: list[str] | None = None) -> None:
        super().__init__(auto)
        self.state, self.loaded_at = "up", 0.0

    def reload(self) -> None:
        self.state = "loading"

    def loaded(self) -> None:
        self.loaded_at += 1.0  # (before the state, as the embedded LLM sets them)
        self.state = "up"


class TokenizerLLM:
    """Fails as the embedded LLM's tokenizer does on a lone surrogate (the same TypeError), and on a
    control character in any message; else replies "Fine." (after 0.1 s of ``clock``, if given)."""

    name = "strict"

    def __init__(self, clock=None) -> None:
        self.clock, self.calls = clock, []

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        self.calls.append([m.content for m in messages])
        for m in messages:
            try:
                m.content.encode("utf-8")
            except UnicodeEncodeError:
                raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, "
                                "InputSequence]]") from None
            if any(ord(c) < 32 and c not in "\t\n\r" for c in m.content):
                raise TypeError(f"control character in {m.content!r}")
        if self.clock is not None:
            await self.clock.sleep(0.1)
        yield "Fine."


async def cancel_after_first_piece(llm: LLM, messages: Sequence[ChatMessage], timeout: float,
                                   **kwargs) -> list[str]:
    """Consume ``llm.stream_chat`` in a task, cancel it after the first piece; the pieces got."""
    import pytest

    got: list[str] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for piece in llm.stream_chat(messages, **kwargs):
            got.append(piece)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), timeout)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return got
