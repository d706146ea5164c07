"""What kame's OpenAI-compatible HTTP adapters share (``llm/openai``, ``stt/openai``,
``tts/openai``): where the server is, the key, one aiohttp session per event loop, the auth
header, and POST / error-body handling with clear ``BackendError`` messages.

    class OpenAIChat(OpenAIHTTP, LLM):
        what = "LLM"
        def __init__(self, model, *, base_url=None, api_key=None, connect_timeout=5.0):
            self._init_http(base_url, api_key, connect_timeout)
        ...
            resp = await self._http_post(url, timeout, json=body)   # BackendError if unreachable

Server resolution (``resolve_endpoint``): the ``base_url`` argument, else the environment,
else the OpenAI API — which needs a key: with neither a server nor a key there is nothing to
talk to, and that is a ConfigError at construction rather than a 401 later. The environment:
an adapter with a ``service`` ("STT", "TTS") reads its own variable first, then the generic one
(``OPENAI_STT_BASE_URL``, else ``OPENAI_BASE_URL``; ``OPENAI_STT_API_KEY``, else
``OPENAI_API_KEY``), so a local whisper or TTS server can sit beside a hosted LLM, each with its
own key; the LLM (no service) reads the generic ones. An empty variable counts as unset; pass
``api_key=""`` to send no key. Error messages name the variable a URL or key came from. A key
is stripped of surrounding whitespace (the newline of ``OPENAI_API_KEY=$(cat keyfile)``); one with
a control character inside is a ConfigError naming where it came from (not a bare ValueError
from aiohttp's header check at the first request).

Credentials in a base URL (``http://user:password@host/v1``) are taken out of it at construction:
the URL the adapter keeps, requests and every message, log line and error record that names it
has no user:password@ (``hide_userinfo`` for a URL that is not used); they are sent as HTTP
basic auth when no API key is set. With a key too (a request carries one Authorization) it is a
ConfigError naming both sources (was: every request failed at run time with aiohttp's "Cannot
combine AUTHORIZATION header with AUTH argument or credentials encoded in URL"). An "@" after the
host of a URL whose userinfo cannot be read (``broken_userinfo``: a password with an unencoded
"/", "#" or "?" ends the host part early) is a ConfigError asking to percent-encode the password
(was: no userinfo found, the URL kept and shown whole); one in the path or query of a URL without
credentials is kept ("https://gw/v1/@acme/llm").
The base URL is stripped of surrounding whitespace and its scheme is read case-insensitively.

An adapter's spec "openai:MODEL;NAME=VALUE,..." is split by kame.registry.spec_kwargs (the
model stripped, the options those the adapter lists).

HTTP 429's ``Retry-After`` (delay-seconds or an HTTP-date, RFC 9110) is kept on the
BackendError as ``retry_after`` seconds (``retry_after_seconds``); the adapter's ``rate_gate``
(kame.backend.policy.RetryAfterGate) is where its users note it and read the wait left, one for
all the sessions that share the adapter.

Response bodies are read through ``_body_chunks`` / ``_read_body`` with a size cap each adapter
sets (a server that never ends its body is cut at the cap instead of filling the memory).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.utils
import json
import math
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Sequence

import aiohttp

from ..errors import BackendError, ConfigError
from .options import CONNECT_TIMEOUT, number
from .policy import RetryAfterGate

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MiB = 1 << 20


def env_names(setting: str, service: str | None = None) -> tuple[str, ...]:
    """The environment variables of a setting, the service's own first:
    ("OPENAI_STT_API_KEY", "OPENAI_API_KEY") for ("API_KEY", "STT"); ("OPENAI_API_KEY",) without."""
    generic = f"OPENAI_{setting}"
    return (f"OPENAI_{service}_{setting}", generic) if service else (generic,)


def from_env(names: Sequence[str]) -> tuple[str | None, str | None]:
    """(value, name) of the first of ``names`` set to a value that is not empty or blank, the value
    stripped; else (None, None)."""
    return next(((os.environ[n].strip(), n) for n in names if os.environ.get(n, "").strip()), (None, None))


@dataclass(frozen=True)
class Endpoint:
    """Where an adapter's server is and the key it sends, and where each came from (for messages)."""

    url: str  # without trailing slash
    key: str = field(repr=False)  # "" = none (never in a repr: it may end up in a log)
    url_from: str  # "base_url=", the variable's name, or "the default"
    key_from: str  # "api_key=", the variable's name, or "" (no key)
    url_vars: tuple[str, ...]  # the variables a URL is read from, in order
    key_vars: tuple[str, ...]
    basic: str = field(default="", repr=False)  # "Basic ..." from the URL's user:password ("" = none)


def _authority(url: str) -> tuple[str, str, str]:
    """(what precedes the authority, the authority, the rest): the authority is what follows
    "//" up to the first "/", "?" or "#" (as urllib and yarl read it); a URL without a scheme is
    read the same way."""
    head, sep, rest = url.partition("//")
    if not sep:
        head, rest = "", url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return head + sep, rest[:end], rest[end:]


def split_userinfo(url: str) -> tuple[str, str | None]:
    """(``url`` without its "user:password@", that userinfo or None): the userinfo is what the
    authority (``_authority``) holds before its last "@"."""
    head, authority, tail = _authority(url)
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url, None
    return head + host + tail, userinfo


def broken_userinfo(url: str) -> bool:
    """True if ``url``'s user:password@ cannot be read: an "@" after the authority with either a
    host whose port is not digits ("alice:pa/ss@h": a password's unencoded "/", "#" or "?" ended
    the authority at "alice:pa") or a userinfo before it ("alice:p@h/ss@h2": a password's unencoded
    "@" and "/"; its rest would be sent, and shown, as the path). An "@" in the path or query of a
    URL without userinfo is kept (RFC 3986 allows it: "https://gw/v1/@acme/llm", "?x=a@b")."""
    _, authority, tail = _authority(url)
    if "@" not in tail:
        return False
    userinfo, at, host = authority.rpartition("@")
    hostport = host.rpartition("]")[2] if host.startswith("[") else host  # ([::1]:8000: IPv6)
    port_sep, port = hostport.partition(":")[1:]
    return bool(at) or bool(port_sep and not port.isdigit())


def hide_userinfo(url: str) -> str:
    """``url`` for a message: its authority's "user:password@" shown as "***@"; a URL whose
    userinfo cannot be read (``broken_userinfo``: e.g. a password with an unencoded "/", "#" or
    "?", which ends the authority early) shown as "***@" up to its last "@" (was: every URL with
    an "@" anywhere, hiding the host of "https://gw/v1/@acme/llm")."""
    head, authority, tail = _authority(url)
    if broken_userinfo(url):
        return head + "***@" + (authority + tail).rpartition("@")[2]
    _, at, host = authority.rpartition("@")
    return head + "***@" + host + tail if at else url


def resolve_endpoint(what: str, base_url: str | None, api_key: str | None,
                     service: str | None = None) -> Endpoint:
    """The Endpoint of an adapter (``what``: "LLM" / "STT" / "TTS", for messages) — see the
    module docstring."""
    url_vars, key_vars = env_names("BASE_URL", service), env_names("API_KEY", service)
    base_url = (base_url or "").strip()  # (as the variables are: a trailing newline, a blank one unset)
    url, url_from = (base_url, "base_url=") if base_url else from_env(url_vars)
    key, key_from = (api_key, "api_key=") if api_key is not None else from_env(key_vars)
    key = (key or "").strip()  # (a trailing newline from $(cat keyfile) is common)
    key_from = key_from if key else ""
    if bad := next((c for c in key if ord(c) < 32 or ord(c) == 127), None):
        raise ConfigError(f"openai {what}: the API key from {key_from} holds a control character ({bad!r}, "
                          f"at {key.index(bad)}), which cannot go in an HTTP header: set it to the key alone, "
                          "on one line")
    if not url:
        if not key:
            raise ConfigError(
                f"openai {what}: no server configured: set {' or '.join(url_vars)} to an OpenAI-compatible server "
                "(e.g. http://127.0.0.1:8000/v1 for vLLM, http://127.0.0.1:8080/v1 for llama.cpp, "
                "http://127.0.0.1:11434/v1 for Ollama; in Python base_url="
                + (", in kame bench backend --base-url" if what == "LLM" else "") + "), or set "
                f"{' or '.join(key_vars)} to use {DEFAULT_BASE_URL}")
        url, url_from = DEFAULT_BASE_URL, "the default"
    url = url.rstrip("/")
    scheme, colon, rest = url.partition(":")
    if colon and scheme.lower() in ("http", "https"):
        url = scheme.lower() + colon + rest  # (a scheme is case-insensitive, RFC 3986: HTTP:// too)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"openai {what}: base URL must start with http:// or https://, got "
                          f"{hide_userinfo(url)!r} (from {url_from})")
    shown = hide_userinfo(url)
    if broken_userinfo(url):  # (a password's unencoded / # ? ended the authority early)
        raise ConfigError(
            f"openai {what}: the base URL from {url_from} ({shown}) has an '@' after its host, so its "
            "user:password@ cannot be read (a password holding '/', '#' or '?' ends the host part there, "
            "and the rest would be sent as the path); percent-encode the password: / -> %2F, # -> %23, "
            "? -> %3F, @ -> %40 (an '@' of the path itself, after a user:password@: %40 too)")
    url, userinfo = split_userinfo(url)  # (never kept in the URL: it names the server in messages)
    basic = ""
    if userinfo and key:
        unset = ('pass api_key=""' if key_from == "api_key=" else
                 "unset " + " and ".join(v for v in key_vars if os.environ.get(v, "").strip()))
        raise ConfigError(
            f"openai {what}: the base URL from {url_from} holds credentials ({shown}) "
            f"and an API key is set too (from {key_from}); a request carries only one of them: remove the "
            f"user:password@ from {url_from} to send the key, or {unset} to send the URL's user and password "
            "(HTTP basic auth)")
    if userinfo:
        user, _, password = userinfo.partition(":")  # (percent-decoded; sent as UTF-8, RFC 7617)
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
        basic = "Basic " + base64.b64encode(pair).decode("ascii")
    return Endpoint(url, key, url_from, key_from, url_vars, key_vars, basic)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value: delay-seconds ("120") or an HTTP-date
    ("Wed, 21 Oct 2015 07:28:00 GMT", RFC 9110; ``now``: the wall-clock time, default
    time.time()), never negative; None for no value or one that is neither."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:  # (ValueError or TypeError, by Python version, for what is not a date)
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:  # "-0000": UTC, with no zone asserted
                when = when.replace(tzinfo=datetime.timezone.utc)
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError, OSError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


async def within(aw, timeout: float):
    """``await aw`` with a timeout. (asyncio.wait_for of Python 3.11 can swallow a cancellation
    that arrives as the awaited read completes; asyncio.timeout cannot.)"""
    async with asyncio.timeout(timeout):
        return await aw


async def read_excerpt(resp: aiohttp.ClientResponse, limit: int = 300) -> str:
    """The start of an error body; an OpenAI-style ``{"error": {"message": ...}}`` gives its message."""
    try:
        raw = await within(resp.content.read(4096), 2.0)
    except (asyncio.TimeoutError, aiohttp.ClientError):
        return "(no body)"
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict) and err.get("message"):
            text = err["message"]
    except (json.JSONDecodeError, AttributeError):
        pass
    return text[:limit] or "(empty body)"


def size_text(n: int) -> str:
    """A byte count for messages: "64 MiB (67108864 bytes)"."""
    return f"{n / MiB:.4g} MiB ({n} bytes)"


def content_type(resp: aiohttp.ClientResponse) -> str:
    """The response's media type, lower-case, without parameters ("" if none)."""
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower()


class OpenAIHTTP:
    """Mixin of the OpenAI-compatible adapters (call ``_init_http`` from ``__init__``)."""

    what = "server"  # "LLM" / "STT" / "TTS": the first word of error messages
    service: str | None = None  # "STT" / "TTS": reads OPENAI_<service>_BASE_URL / _API_KEY first
    base_url: str
    api_key: str
    endpoint: Endpoint

    # the attribute of the adapter's own wait for its first piece / chunk ("" : none), which with
    # ``chunk_timeout`` follow_watchdog raises
    first_timeout_attr = ""

    def follow_watchdog(self, first: float, chunk: float) -> None:
        """A watchdog (the oracle's, the cascade's: kame.backend.policy.stall_limits) ends this
        adapter's stalls after ``first`` / ``chunk`` s: its own timeouts that its spec left unset
        (``stall_timeouts`` None) are raised to at least those, so that the watchdog's keys, not
        the adapter's built-in 15 s / 10 s, decide (the adapter is shared: the longest asked holds;
        each watchdog still fires at its own). A timeout the spec set is kept as it is."""
        own_first, own_chunk = getattr(self, "stall_timeouts", (None, None))
        if self.first_timeout_attr and own_first is None:
            setattr(self, self.first_timeout_attr, max(getattr(self, self.first_timeout_attr), first))
        if own_chunk is None and hasattr(self, "chunk_timeout"):
            self.chunk_timeout = max(self.chunk_timeout, chunk)

    def _init_http(self, base_url: str | None, api_key: str | None, connect_timeout: float = 5.0) -> None:
        """Resolve the endpoint (ConfigError if none is configured); adapters check their own
        option values before calling it, so that a bad value is reported as such."""
        # (a bad option value is named before "no server configured", which may come first)
        self.connect_timeout = number(f"openai {self.what}", "connect_timeout", connect_timeout, **CONNECT_TIMEOUT)
        self.endpoint = resolve_endpoint(self.what, base_url, api_key, self.service)
        self.base_url, self.api_key = self.endpoint.url, self.endpoint.key
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        # an HTTP 429's Retry-After, for everything that asks this server (every session, the
        # STT's streams, the cascade, hybrid routing, the oracle: kame.backend.policy.rate_gate)
        self.rate_gate = RetryAfterGate()

    def _get_session(self) -> aiohttp.ClientSession:
        """This event loop's session (a new one if the loop changed or it was closed)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_connect=self.connect_timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._session_loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the session (idempotent). It is detached first: a request made while it closes
        gets a new session, which is not forgotten unclosed."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        elif self.endpoint.basic:  # the base URL's user:password (never with a key)
            headers["Authorization"] = self.endpoint.basic
        return headers

    def _auth_hint(self) -> str:
        """What to check after an HTTP 401/403, by what the request carried: the key (and where it
        came from), the base URL's user:password (HTTP basic auth), or nothing."""
        ep = self.endpoint
        keys = ", else ".join(("api_key=", *ep.key_vars))
        if self.api_key:
            return f"check the API key: {keys}; the key sent is from {ep.key_from}"
        if ep.basic:
            return (f"check the user and password of the base URL from {ep.url_from}: they were sent as "
                    "HTTP basic auth (no API key is set)")
        return f"check the API key: {keys}; no key is set"

    async def _http_error(self, url: str, resp: aiohttp.ClientResponse) -> BackendError:
        """The BackendError of an HTTP error response: the status, the server's message and,
        for the usual causes, what to check (the key and where it comes from, the base URL)."""
        status, ep = resp.status, self.endpoint
        msg = f"{self.what} {url}: HTTP {status}: {await read_excerpt(resp)}"
        after = retry_after_seconds(resp.headers.get("Retry-After")) if status == 429 else None
        if status in (401, 403):
            msg += f" ({self._auth_hint()})"
        elif status == 404:
            msg += (f" (check the model name and the base URL {ep.url}, from {ep.url_from}; "
                    "OpenAI-compatible servers usually serve under /v1)")
        elif status == 429:
            msg += f" (rate limited{f'; retry after {math.ceil(after)} s' if after is not None else ''})"
        exc = BackendError(msg)
        exc.retry_after = after  # the oracle's back-off waits at least that long
        return exc

    async def _http_post(self, url: str, timeout: float, *, headers: dict | None = None,
                         **kwargs) -> aiohttp.ClientResponse:
        """POST and wait for the response headers; BackendError when none come within
        ``timeout`` s or the server cannot be reached. The caller releases/closes the response."""
        try:
            return await within(self._get_session().post(url, headers=self._headers(**(headers or {})), **kwargs),
                                timeout)
        except asyncio.TimeoutError as exc:
            raise BackendError(f"{self.what} {url}: timed out, no response within {timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            ep = self.endpoint
            where = ep.url_from if ep.url_from != "the default" else f"the default; set {' or '.join(ep.url_vars)}"
            raise BackendError(f"{self.what} {url}: cannot connect ({exc}); is the server running? "
                               f"(base URL {ep.url}, from {where})") from exc

    async def _body_chunks(self, url: str, resp: aiohttp.ClientResponse, limit: int, kind: str,
                           read: Callable[[], Awaitable[bytes]]) -> AsyncIterator[bytes]:
        """The chunks of a response body as ``read()`` returns them (b"" ends the body), with a cap:
        a BackendError naming the adapter, ``url``, ``kind`` (what the body is) and ``limit``
        before anything is read if the Content-Length is over ``limit`` bytes, else as soon as
        the bytes read pass it (so at most one chunk, a few hundred kB from aiohttp's buffer, more
        is read). The caller closes the response on the error (the server stops sending)."""
        def too_big(detail: str) -> BackendError:
            return BackendError(f"{self.what} {url}: the {kind} is over the openai {self.what} adapter's "
                                f"limit of {size_text(limit)}: {detail}")

        if resp.content_length is not None and resp.content_length > limit:
            raise too_big(f"its Content-Length is {resp.content_length} bytes; not read")
        total = 0
        while chunk := await read():
            total += len(chunk)
            if total > limit:
                raise too_big(f"stopped reading after {total} bytes (a server that does not end its response?)")
            yield chunk

    async def _read_body(self, url: str, resp: aiohttp.ClientResponse, limit: int, kind: str,
                         read: Callable[[], Awaitable[bytes]]) -> bytes:
        """The whole body, read with ``_body_chunks`` (same cap and errors)."""
        return b"".join([chunk async for chunk in self._body_chunks(url, resp, limit, kind, read)])
