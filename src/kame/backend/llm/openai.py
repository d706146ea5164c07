"""OpenAI-compatible streaming chat client (aiohttp): OpenAI, vLLM, llama.cpp server, Ollama.

    llm = OpenAIChat("gpt-4.1")                       # or registry.create("llm", "openai:gpt-4.1")
    llm = OpenAIChat("qwen", base_url="http://127.0.0.1:8000/v1")   # vLLM / llama.cpp / Ollama
    async for piece in llm.stream_chat([ChatMessage("user", "Hi")], max_tokens=60):
        print(piece, end="")
    await llm.aclose()

POSTs ``{base_url}/chat/completions`` with ``"stream": true`` and parses the server-sent events
(``data: {json}`` lines, ``data: [DONE]`` at the end; comments and other fields ignored). The
base URL and key default to the environment (``OPENAI_BASE_URL``, else the OpenAI API;
``OPENAI_API_KEY``, optional for local servers; neither: ConfigError, see kame.backend.openai_http).

A chunk's text is its ``delta.content`` (or a legacy completions-style ``text``). A chunk whose text
ends in the first half of a UTF-16 surrogate pair (a server escaping an emoji as "\\ud83d\\ude00"
and splitting it between two chunks) has that half held back and put before the next chunk's text,
so the character comes out whole (was: two U+FFFD); the stream's UTF-8 is decoded a whole line
(one event) at a time.

A spec sets options after a ';': ``openai:MODEL;first_token_timeout=60,chunk_timeout=20``
(``SPEC_OPTIONS``; others are a ConfigError naming the spec). Timeouts given so (``stall_timeouts``)
also hold for the oracle's and the cascade's own stall timers, which wait at least that long
(kame.backend.policy.stall_limits); unset, those timers (backend.llm_first_token_timeout_s /
llm_chunk_timeout_s, cascade.first_timeout / chunk_timeout) decide: the adapter's own 15 s / 10 s
are raised to them when they are longer (``follow_watchdog``; was: a key set to 30 still failed
at 15 s with the adapter's error).

Errors raise kame.errors.BackendError with the HTTP status and an excerpt of the body: HTTP
errors, connection failures, a 200 response that is not an event stream (its Content-Type and
an excerpt), malformed chunks, an ``error`` object in the stream, a stream that ends without
``[DONE]`` or a finish reason, a stream that spent its tokens without text (finish reason
"length", or only ``reasoning_content``: a reasoning model that spent max_tokens thinking; a
stream that simply ends with no text is an empty answer, as the oracle may get one), a stream longer than ``MAX_STREAM_BYTES`` or with a line over aiohttp's read buffer
(512 KiB), and timeouts (connect, first token, between data lines: keep-alive comments do not
reset it).
Cancelling the consumer (or closing the generator) closes the connection, so the server stops
generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import AsyncIterator, Sequence

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from ...errors import BackendError, ConfigError
from ...registry import spec_kwargs
from ..openai_http import MiB, OpenAIHTTP, content_type, read_excerpt, within
from ..options import number
from ..types import ChatMessage
from .base import LLM, check_messages, join_split_char
from .spec import OPENAI_EXAMPLE, OPENAI_RULES

log = logging.getLogger(__name__)
# Cap on one reply's event stream, counted as it arrives: SSE chat chunks take ~150-250 bytes a
# token, so 16 MiB is ~80 000 tokens, far beyond any reply kame asks for; a server that never
# ends its stream (e.g. keep-alive comments forever, or no max_tokens) is cut there.
MAX_STREAM_BYTES = 16 * MiB
# the constructor options a spec may set after ';' (values are text; the config check and the constructor
# check them: kame.backend.llm.spec)
SPEC_OPTIONS = tuple(OPENAI_RULES)
DEFAULT_FIRST_TOKEN_TIMEOUT = 15.0  # s, when not given
DEFAULT_CHUNK_TIMEOUT = 10.0


class OpenAIChat(OpenAIHTTP, LLM):
    name = "openai"
    what = "LLM"
    first_timeout_attr = "first_token_timeout"  # (follow_watchdog)

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        connect_timeout: float = 5.0,  # TCP/TLS connect
        first_token_timeout: float | None = None,  # request sent -> first content (incl. headers); None: 15 s or a watchdog's
        chunk_timeout: float | None = None,  # between two data lines once streaming (comments do not count); None: 10 s or a watchdog's
        extra_body: dict | None = None,  # merged into the request JSON (e.g. {"top_p": 0.9})
    ) -> None:
        if not model or not isinstance(model, str):
            raise ConfigError(f"openai LLM needs a model name: openai:MODEL (e.g. openai:gpt-4.1), got {model!r}")
        self.model = model
        own = tuple(None if v is None else number("openai LLM", k, v, **OPENAI_RULES[k])
                    for k, v in (("first_token_timeout", first_token_timeout), ("chunk_timeout", chunk_timeout)))
        # the timeouts given (a spec's ;first_token_timeout=60): the oracle's and the cascade's
        # watchdogs wait at least that long (kame.backend.policy.stall_limits)
        self.stall_timeouts: tuple[float | None, float | None] = own  # type: ignore[assignment]
        self.first_token_timeout = DEFAULT_FIRST_TOKEN_TIMEOUT if own[0] is None else own[0]
        self.chunk_timeout = DEFAULT_CHUNK_TIMEOUT if own[1] is None else own[1]
        if extra_body is not None and not isinstance(extra_body, dict):
            raise ConfigError(f"openai LLM: extra_body must be a dict of request fields, got {extra_body!r}")
        self.extra_body = dict(extra_body or {})
        self._init_http(base_url, api_key, connect_timeout)  # (after the values: those errors first)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    async def stream_chat(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None,
                          temperature: float | None = None) -> AsyncIterator[str]:
        messages = check_messages(messages)  # (before the request: a bad call is no round trip)
        body: dict = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            **self.extra_body,
        }
        if max_tokens is not None:
            body["max_tokens"] = int(max_tokens)
        if temperature is not None:
            body["temperature"] = float(temperature)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_token_timeout
        resp = await self._http_post(self.url, self.first_token_timeout, json=body,
                                     headers={"Accept": "text/event-stream"})
        done = False
        try:
            if resp.status != 200:
                raise await self._http_error(self.url, resp)
            ctype = content_type(resp)
            if ctype and ctype != "text/event-stream":  # a completion, a proxy's page, Ollama's native NDJSON
                raise BackendError(f"LLM {self.url}: expected a server-sent event stream (text/event-stream), "
                                   f"got {ctype}: {await read_excerpt(resp)}")
            got_content = False
            finished = False
            finish_reason: str | None = None
            reasoning = False  # a chunk held reasoning_content (a reasoning model's thinking, not text)
            pieces = 0
            held = ""  # the first half of a character split across two chunks (join_split_char)
            last_data = loop.time()  # of the last data line (once got_content)

            async def read_line() -> bytes:
                # a wait for the next data line: comments (keep-alives) do not reset it
                timeout = max(0.0, (last_data + self.chunk_timeout if got_content else deadline) - loop.time())
                try:
                    return await within(resp.content.readline(), timeout)
                except asyncio.TimeoutError as exc:
                    what = (f"{self.chunk_timeout:g} s between data lines" if got_content
                            else f"{self.first_token_timeout:g} s for the first token")
                    raise BackendError(f"LLM {self.url}: stream stalled ({what})") from exc
                except aiohttp.ClientError as exc:
                    raise BackendError(f"LLM {self.url}: stream broken: {exc}") from exc
                except (ValueError, HttpProcessingError) as exc:  # a line over aiohttp's buffer (LineTooLong)
                    raise BackendError(f"LLM {self.url}: a stream line too long to read ({type(exc).__name__}): "
                                       f"not a chat-completion stream") from None

            lines = self._body_chunks(self.url, resp, MAX_STREAM_BYTES, "event stream", read_line)
            async with contextlib.aclosing(lines):
                async for raw in lines:
                    line = raw.decode("utf-8", errors="replace").strip()
                    if not line.startswith("data:"):
                        continue  # blank separators, ":" comments, event:/id: fields
                    data = line[5:].strip()
                    last_data = loop.time()
                    if data == "[DONE]":
                        finished = True
                        break
                    piece, reason, thinking = self._parse_chunk(data)
                    piece, held = join_split_char(held, piece)  # (a "\ud83d" escape: its pair comes next)
                    finished = finished or reason is not None
                    finish_reason = reason or finish_reason
                    reasoning = reasoning or thinking
                    if piece:
                        got_content = True
                        pieces += 1
                        if max_tokens is not None and pieces > max_tokens:  # a piece holds >= 1 token
                            log.warning("LLM %s: the server sent more than max_tokens=%d pieces; reply cut there",
                                        self.url, max_tokens)
                            return  # the connection is dropped (finally), so the server stops
                        yield piece
            if not finished:  # EOF
                raise BackendError(f"LLM {self.url}: stream ended before [DONE]")
            if held:  # a first half whose second never came (check_piece: U+FFFD)
                got_content = True
                yield held
            if not got_content and (reasoning or finish_reason == "length"):  # a budget spent on nothing said
                raise self._no_text(finish_reason, reasoning, max_tokens)  # (an answer of no text is one)
            done = True
        finally:
            if done:
                resp.release()
            else:  # error, cancellation or early close: drop the connection so the server stops
                resp.close()

    def _no_text(self, finish_reason: str | None, reasoning: bool, max_tokens: int | None) -> BackendError:
        """The error of a stream that ended properly with no text at all."""
        why = f" (finish_reason {finish_reason!r})" if finish_reason else ""
        if reasoning and finish_reason in (None, "length"):
            cap = f"max_tokens={max_tokens}" if max_tokens is not None else "its token budget"
            hint = (f": it sent only reasoning_content, so a reasoning model spent {cap} thinking; raise "
                    "backend.llm_max_tokens or use a non-reasoning model")
        elif reasoning:
            hint = ": it sent only reasoning_content (a reasoning model's thinking), no answer; use a non-reasoning model"
        else:  # finish_reason "length"
            hint = ": it hit max_tokens before any text; raise backend.llm_max_tokens"
        return BackendError(f"LLM {self.url}: model {self.model!r} returned no text{why}{hint}")

    def _parse_chunk(self, data: str) -> tuple[str, str | None, bool]:
        """One ``data:`` payload -> (choice 0's text piece, its finish reason or None, it held
        ``reasoning_content``); BackendError for an error object or anything that is not a
        chat-completion chunk. The text is ``delta.content``, else a legacy completions-style
        ``text`` of the choice."""
        def malformed(why: str) -> BackendError:
            return BackendError(f"LLM {self.url}: malformed stream chunk ({why}): {data[:200]!r}")

        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise malformed("not JSON") from None
        if not isinstance(chunk, dict):
            raise malformed("not a JSON object")
        if chunk.get("error") is not None:
            raise BackendError(f"LLM {self.url}: error in stream: {json.dumps(chunk['error'])[:300]}")
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise malformed("'choices' is not a list")
        piece, finish_reason, reasoning = "", None, False
        for choice in choices:
            if not isinstance(choice, dict):
                raise malformed("a choice is not an object")
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if not isinstance(delta, dict) or not isinstance(content, (str, type(None))):
                raise malformed("'delta' is not an object with a text 'content'")
            if content is None and isinstance(choice.get("text"), str):  # a legacy /completions-style chunk
                content = choice["text"]
            piece += content or ""
            reasoning = reasoning or bool(delta.get("reasoning_content") or delta.get("reasoning"))
            if choice.get("finish_reason"):
                finish_reason = str(choice["finish_reason"])
        return piece, finish_reason, reasoning


def create(arg: str | None, **kwargs) -> OpenAIChat:
    """Registry factory: ``openai:MODEL[;NAME=VALUE,...]`` (NAME in SPEC_OPTIONS; kwargs: the
    constructor's: base_url, api_key, timeouts...)."""
    # (a spec without a model, and no OPENAI_MODEL, is refused by the registry: components.py's needs=)
    model, kwargs = spec_kwargs("llm", "openai", arg, kwargs, SPEC_OPTIONS, OPENAI_EXAMPLE)
    return OpenAIChat(model or os.environ.get("OPENAI_MODEL", "").strip(), **kwargs)
