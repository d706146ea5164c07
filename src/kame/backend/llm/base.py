"""The streaming chat LLM interface.

    llm = registry.create("llm", "openai:gpt-4.1")
    async for piece in llm.stream_chat([ChatMessage("system", ...), ChatMessage("user", ...)]):
        ...   # text pieces (str) as they arrive

Cancelling the consuming task cancels the request. Errors raise kame.errors.BackendError.
``messages`` must be a non-empty list of ChatMessage: ``check_messages`` (called first by
each stream_chat) raises TypeError / ValueError before any request is made.
Every piece must be a ``str`` (possibly empty); a stream that yields anything else (None, an
int, a dict) has broken the interface, and its consumers treat that as the LLM failing:
``check_piece`` raises a BackendError that says what it yielded. Every consumer uses the text
``check_piece`` returns: the piece cleaned of what a tokenizer or TTS cannot take (a lone
surrogate, a control character).
An empty piece is a keep-alive: the LLM is generating but has no text to give yet (the embedded
LLM yields one per token of a word it holds back, a URL or code). ``text_stream`` hands it on; the
stall timers of the oracle and the cascade's reply take it as progress (``stall_timeout``), every
consumer as no text (not the first token of llm_ttft, nothing sent, spoken or counted).
A character split across two pieces (its UTF-16 halves) is joined (``join_split_char``: its first
half held back until the second comes). Every consumer of an LLM (the tandem's oracle and its
WatchedLLM, the cascade's reply, ``collect_reply``, kame bench backend) reads its stream through
``text_stream``, which does both (pieces checked and cleaned, split characters joined), for any
LLM: a plugin's that yields the halves as they come too. kame.backend.llm.openai joins them
itself as well (for whoever reads its stream_chat directly).
What ``stream_chat`` returned must be an async iterator (``check_stream``, at the first read: a
BackendError naming the LLM's method, as for an STT's ``stream`` and a TTS's ``synthesize``).
``collect_reply`` gathers a whole reply (checked pieces, a timeout, the stream closed either way).
``text_stream``'s stream is named after its LLM ("LLM stubborn's reply"): a task reading it that
ignores its cancellation is left behind with that name (kame.runtime.interrupt.run_to_end).
``bug_at`` says where a component's own exception (its bug, not a service's fault) was raised, for
the failure lines of the oracle, the tandem's STT (kame.runtime.backend) and the cascade's reply.
Implementations: kame.backend.llm.openai (OpenAI-compatible HTTP), kame.backend.llm.embedded
(SmolLM2 offline). ``await llm.aclose()`` releases connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import reprlib
from abc import ABC, abstractmethod
from typing import Any, AsyncIterator, Callable, Sequence

from ...errors import BackendError, KameError
from ...failures import defined_at, raised_at
from ..types import ChatMessage


class LLM(ABC):
    name: str = "llm"
    seedable: bool = False  # stream_chat takes seed=N: a sampled reply the same for the same seed and request

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


def bug_at(exc: BaseException, log: logging.Logger) -> tuple[str, BaseException | None]:
    """(where, exc_info) for a log line about a component's exception ``exc``: kame's own errors (a
    BackendError: a service's fault, its message worded) ("", None); anything else, the component's
    bug (a plugin's KeyError), " (at mycomps.py:12)" (its innermost frame, failures.raised_at, as a
    factory's failure says it) and, when ``log`` shows DEBUG (`kame -v`), ``exc``: its traceback."""
    if isinstance(exc, KameError):
        return "", None
    return raised_at(exc), exc if log.isEnabledFor(logging.DEBUG) else None


def yielded(item: Any) -> str:
    """``int 42``, ``None``, ``dict {'text': 'hi'}``: what a component handed over, for an error."""
    return "None" if item is None else f"{type(item).__name__} {reprlib.repr(item)}"


def check_messages(messages: Any) -> list[ChatMessage]:
    """``messages`` as a list, checked before any request (every LLM's ``stream_chat`` calls it
    first): TypeError unless a list or tuple of ChatMessage (anything with str ``role`` and
    ``content``), ValueError if it is empty (was: a str failed on ``.role`` and an empty list
    went to the model, which refused it)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        hint = ": wrap it, e.g. [ChatMessage('user', text)]" if isinstance(messages, str) else ""
        raise TypeError(f"stream_chat expects a list of ChatMessage(role, content), got {yielded(messages)}{hint}")
    for i, m in enumerate(messages):
        if not (isinstance(getattr(m, "role", None), str) and isinstance(getattr(m, "content", None), str)):
            shown = repr(m) if len(repr(m)) <= 100 else repr(m)[:97] + "..."  # (a ChatMessage's repr names it)
            what = shown if isinstance(m, ChatMessage) or m is None else f"{type(m).__name__} {shown}"
            raise TypeError(f"stream_chat's messages[{i}] is {what}, expected a ChatMessage(role, content) "
                            "with a str role and content")
    if not messages:
        raise ValueError("stream_chat got no messages: give at least one, e.g. [ChatMessage('user', text)]")
    return list(messages)


# what clean_text takes out of an LLM piece or an STT word: control characters (C0 but tab, LF and CR;
# DEL; C1), removed or a space, and surrogates (a lone one: an openai stream's "\ud83d" escape split from
# its pair, or an openai STT's JSON "\ud83d")
_CONTROL_CHARS = "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"
_SPACING_CHARS = "\x0b\x0c\x1c-\x1f\x85"  # (vertical tab, form feed, separators, NEL)
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
_SPACING = re.compile(f"[{_SPACING_CHARS}]")
_UNCLEAN = re.compile(f"[{_CONTROL_CHARS}{_SPACING_CHARS}\ud800-\udfff]")


def without_controls(text: str) -> str:
    """``text`` without control characters (C0 but tab, newline, carriage return; DEL; C1), those
    that separate text (vertical tab, form feed, the separators, NEL) a space: LLM pieces
    (check_piece) and QA text (kame.train.qa.speakable)."""
    return _CONTROL.sub("", _SPACING.sub(" ", text))


def clean_text(text: str) -> str:
    """``text`` cleaned of what a tokenizer or TTS cannot take: a lone surrogate (which
    SentencePiece, the embedded LLM's tokenizer and UTF-8 refuse) is U+FFFD, a surrogate pair the
    character it encodes; control characters (C0 but tab, newline, carriage return; DEL; C1) are
    removed, those that separate text (vertical tab, form feed, the separators, NEL) a space
    (``without_controls``). The one cleaning of text that comes from a back-end: LLM pieces
    (``check_piece``) and STT words (kame.backend.stt.base.check_transcript). Clean text is
    returned as is (the same object; one regex search)."""
    if _UNCLEAN.search(text) is None:
        return text
    return without_controls(text).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def join_split_char(held: str, piece: str) -> tuple[str, str]:
    """(the text to hand on, the text to hold back) of a text piece after ``held`` (what the last
    call held back, "" at first): the two UTF-16 halves of a character that come in two pieces (an
    openai stream's "\\ud83d" escape, "\\ude00" in the next chunk) are joined into that character
    (was: each half a lone surrogate, U+FFFD once cleaned): a piece's trailing first half is held
    back, and joined to the second half that starts the next piece. Whatever is held when the
    stream ends is handed on as it is (check_piece: U+FFFD)."""
    if held and piece and "\udc00" <= piece[0] <= "\udfff":
        piece = chr(0x10000 + (ord(held) - 0xD800) * 0x400 + ord(piece[0]) - 0xDC00) + piece[1:]
    else:
        piece = held + piece
    if piece and "\ud800" <= piece[-1] <= "\udbff":
        return piece[:-1], piece[-1]
    return piece, ""


def check_piece(piece: Any, llm: Any, error: type[Exception] = BackendError) -> str:
    """The text of ``piece``, cleaned, if it is text, else ``error`` (BackendError) "LLM NAME
    broke its interface: yielded int 42, expected str (a text piece)". Cleaned: a lone surrogate
    (which SentencePiece and UTF-8 refuse: the tandem's oracle failed on every prediction) is
    U+FFFD, a surrogate pair the character it encodes; control characters (C0 but tab, newline,
    carriage return; DEL; C1) are removed (a NUL failed piper, losing the rest of the cascade's
    reply), but those that separate text (vertical tab, form feed, the separators, NEL) are a
    space (``clean_text``). Callers use the returned text, which may be empty. A plain piece is
    returned as is (one regex search)."""
    if isinstance(piece, str):
        return clean_text(piece)
    raise error(f"LLM {describe(llm)} broke its interface: yielded {yielded(piece)}, "
                       "expected str (a text piece)")


def check_stream(kind: str, part: Any, returned: Any, error: type[Exception] = BackendError) -> Any:
    """``returned`` (what ``part``'s streaming method gave: an LLM's stream_chat, an STT's stream,
    a TTS's synthesize: kame.registry.ASYNC_ITERATORS[kind]) if kame can read it with ``async
    for``, else ``error`` (BackendError) "LLM NAME broke its interface: its Mine.stream_chat()
    (mycomps.py:8) returned str 'hi', expected an async iterator ..." (was: Python's "'async for'
    requires an object with __aiter__ method", at a line of kame). A plain ``def`` method that
    returns an async iterator is right; one whose source shows it never does is refused when the
    component is created (kame.registry.async_method_problem). A coroutine it returned is closed."""
    if hasattr(type(returned), "__aiter__"):
        return returned
    from ...registry import ASYNC_ITERATORS

    if asyncio.iscoroutine(returned):
        returned.close()  # (no "coroutine ... was never awaited" warning besides the error)
    method = ASYNC_ITERATORS[kind]
    inner = getattr(part, kind, None)  # a wrapper's component (kame.runtime.backend.WatchedLLM's .llm): its method
    owner = inner if callable(getattr(inner, method, None)) else part
    func = getattr(owner, method, None)
    where = defined_at(getattr(func, "__func__", func))
    raise error(f"{kind.upper()} {describe(part) if kind == 'llm' else component_name(part)} broke its interface: "
                f"its {type(owner).__name__}.{method}(){where} returned {yielded(returned)}, expected an async "
                f"iterator (kame reads it with 'async for': write it as 'async def {method}(...)' that yields)")


def text_stream(stream: Any, llm: Any, error: type[Exception] = BackendError) -> AsyncIterator[str]:
    """The pieces of ``stream`` (what ``llm.stream_chat`` returned) as kame's consumers take them:
    checked and cleaned (``check_piece``: ``error`` naming ``llm`` for one that is not text), a
    character split across two pieces joined (``join_split_char``; was: two U+FFFD from an LLM
    that yields the halves as they come). A piece that is only a first half held back is not
    handed on. Its end, an error or closing it closes ``stream`` (stopping the LLM). Named after
    ``llm`` ("LLM NAME's reply": next_within's task, "next item of LLM NAME's reply", was "next
    item of text_stream", which said not whose stream ignored its cancellation)."""
    pieces = _text_stream(stream, llm, error)
    pieces.__qualname__ = f"LLM {describe(llm)}'s reply"
    return pieces


async def _text_stream(stream: Any, llm: Any, error: type[Exception]) -> AsyncIterator[str]:
    check_stream("llm", llm, stream, error)  # (here, where the first ``async for`` failed)
    held = ""
    try:
        async for piece in stream:
            if isinstance(piece, str):  # (anything else: check_piece's error)
                piece, held = join_split_char(held, piece)
                if not piece and held:  # all of it held back: nothing to hand on yet
                    continue
            yield check_piece(piece, llm, error)
        if held:  # a first half whose second never came (U+FFFD)
            yield check_piece(held, llm, error)
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def stall_timeout(first_limit: float, chunk_limit: float, since_request: float, *, text: bool,
                  alive: bool) -> tuple[float, float, bool]:
    """(timeout, limit, first) of a stall timer's wait for an LLM's next piece (the oracle's and
    the cascade reply's): once its first text came (``text``), ``chunk_limit`` from the last piece
    (a keep-alive too); before, what is left of ``first_limit`` ``since_request`` s after the
    request, but after a keep-alive (``alive``: an empty piece came, the LLM generates) at least
    ``chunk_limit``: a first word of many tokens is no stall. ``limit``: the whole limit that
    applies; ``first``: it is the first-piece one (a stall is "nothing within N s of the request")."""
    if text:
        return chunk_limit, chunk_limit, False
    left = first_limit - since_request
    if alive and chunk_limit > left:
        return chunk_limit, chunk_limit, False
    return left, first_limit, True


async def collect_reply(llm: Any, messages: Sequence[ChatMessage], *, timeout_s: float | None,
                        max_tokens: int | None = None, temperature: float | None = None,
                        max_words: int | None = None, seed: int | None = None,
                        enough: Callable[[str], bool] | None = None) -> str:
    """The reply's text, pieces checked (``check_piece``); reading stops once it holds more than
    ``max_words`` words (0: at the first word), or once ``enough`` of the text so far is true (the
    simulated oracle's: more cleaned words than it keeps, kame.train.oracle_sim). ``seed``: the
    sampling seed of an LLM that takes one (``seedable``), passed on when not None. Raises
    asyncio.TimeoutError past ``timeout_s`` (None: no limit) and whatever the LLM raises; the stream
    is closed either way (its connection freed)."""
    async def read() -> str:
        text = ""
        seeded = {} if seed is None else {"seed": seed}
        stream = text_stream(llm.stream_chat(messages, max_tokens=max_tokens, temperature=temperature, **seeded), llm)
        async with contextlib.aclosing(stream):
            async for piece in stream:
                text += piece
                if max_words is not None and len(text.split()) > max_words:
                    return text
                if enough is not None and enough(text):
                    return text
        return text

    return await asyncio.wait_for(read(), timeout_s)


def is_embedded(spec: str) -> bool:
    """Whether ``spec`` names kame's offline SmolLM2 (``embedded``, ``smollm2``, or another scheme
    registered to the same factory): fine to try a pipeline with, too weak to judge or simulate
    (the callers' warnings). False for a spec the registry does not know."""
    from ... import registry
    from ...errors import KameError

    try:
        entry, _ = registry.check_spec("llm", spec)
    except KameError:
        return False
    return entry.target == "kame.backend.llm.embedded:create"
