"""What a client can put in `kame serve`'s log (kame.server.logsafe, ops): its strings with their
control characters escaped (no forged lines), the path as it was sent (percent-encoded), no
secret header of a malformed request; and what the server tells a client of a failed back-end
(ops.for_client: the short form; the detail is logged)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web

from kame.runtime.base import ErrorEvent, Meta
from kame.server import ops
from kame.server.app import ServerConfig, make_app
from kame.server.client import chat_url
from kame.server.echo import EchoAgent
from kame.server.httplog import RedactQueries
from kame.server.logsafe import TOO_LONG, clean, redact

FORGED = "2026-12-05 10:00:00,000 WARNING kame.server: session echo99 opened: client 10.6.6.6"


@contextlib.asynccontextmanager
async def kame_server(**cfg):
    """A loopback server with the access logger `kame serve` runs with (web.run_app's
    access_log_class): the tests' plain runner would not show what happens to its lines."""
    app = make_app(EchoAgent(max_sessions=8, delay_frames=2), ServerConfig(**cfg), manage_agent=True)
    runner = web.AppRunner(app, access_log_class=ops.AccessLogger, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return line


def _one_line_each(records) -> None:
    for r in records:
        msg = r.getMessage()
        assert msg.splitlines() == [msg], msg  # (\n, \r, \x85, \u2028 ... all count)


def test_clean_escapes_control_characters_only():
    assert clean("bye)\n2026 WARNING x") == "bye)\\n2026 WARNING x"
    assert clean("a\r\tb\x01\x7f\x85\u2028\udcff") == "a\\r\\tb\\x01\\x7f\\x85\\u2028\\udcff"
    assert clean("ünïcode ok, 10.0.0.1") == "ünïcode ok, 10.0.0.1"
    assert clean(1001) == "1001"


def test_redact_cuts_secret_header_values():
    got = redact("Invalid header value char: b'Authorization: Bearer s3cr3t-TOKEN\\x01'")
    assert got == "Invalid header value char: b'Authorization: …'"
    for line in ("b'proxy-authorization: Basic czNjcjN0'", 'b"Cookie: sid=s3cr3t; a=\'b\'"',
                 "bytearray(b'Cookie: s3cr3t').", "b'AUTHORIZATION:s3cr3t'", "b'X-Api-Key: s3cr3t\\x01'",
                 "b'X-Auth-Token: s3cr3t'", "b'client_secret: s3cr3t'"):
        assert "s3cr3t" not in redact(line) and "czNjcjN0" not in redact(line), line
    assert redact("b'Content-Length: abc'") == "b'Content-Length: abc'"


def test_the_closed_line_escapes_the_clients_reason():
    from types import SimpleNamespace as NS

    conn = NS(client_close=(1000, "bye)\n" + FORGED), client_closed=True, lost=None, close_code=1000, close_reason="",
              ended_by=None)
    assert ops.ending(conn) == "closed by the client (1000 bye)\\n" + FORGED + ")"
    conn = NS(client_close=None, client_closed=False, lost=None, close_code=1008, close_reason="x\ny", ended_by=None)
    assert ops.ending(conn) == "closed by the server (1008 x\\ny)"


async def test_a_malformed_request_is_one_warning_and_one_access_line(caplog):
    """(was, with `kame serve`'s access logger: the logger failed on the request aiohttp could
    not parse (no app: an AssertionError in aiohttp 3.14), an ERROR "Unhandled exception" with
    a traceback, and no access line)"""
    caplog.set_level(logging.DEBUG)
    async with kame_server() as port:
        assert b" 400 " in await _raw(port, b"GET /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    bad = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(bad) == 1 and bad[0].levelno == logging.WARNING and "malformed request (HTTP 400)" in bad[0].getMessage()
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 1 and '" 400 ' in access[0]


async def test_a_malformed_requests_secret_headers_are_not_logged(caplog):
    caplog.set_level(logging.DEBUG)
    async with kame_server(auth_token="s3cr3t-TOKEN") as port:
        for header in (b"Authorization: Bearer s3cr3t-TOKEN\x01", b"Proxy-Authorization: Basic s3cr3t-TOKEN\x01",
                       b"Cookie: kame=s3cr3t-TOKEN\x01"):
            assert b" 400 " in await _raw(port, b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\n\r\n")
    bad = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
    assert len(bad) == 3 and all("malformed request (HTTP 400)" in m and ": …" in m for m in bad), bad
    assert "s3cr3t" not in caplog.text


def test_redact_drops_the_quote_of_a_line_too_long():
    """aiohttp quotes the first 100 bytes of a header too long to read, its value alone at times:
    none of it is kept (there is no name to tell a secret by), however it is quoted."""
    from aiohttp.http_exceptions import LineTooLong

    for quoted in (b"Bearer s3cr3t" + b"a" * 90 + b"...", bytearray(b"sid=s3cr3t'\"x"), "s3cr3t", b"X-Api-Key: s3cr3t"):
        got = redact(str(LineTooLong(quoted, 8190).message))
        assert got == "Got more than 8190 bytes when reading " + TOO_LONG, got
        assert redact(got + " (and 2 more)") == got + " (and 2 more)"  # (what follows the quote stays)
    exc = LineTooLong(b"s3cr3t", 8190)
    exc.message = "too long: s3cr3t"  # (another aiohttp's wording: the type decides, not the text)
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (),
                               (type(exc), exc, None))
    assert RedactQueries().filter(record) and "s3cr3t" not in record.getMessage() and "8190" in record.getMessage()


async def test_a_secret_header_too_long_to_read_is_not_logged(caplog):
    """QA fuzz #3: `Authorization: Bearer SECRET…` of 9 KB got 400 and the WARNING `Got more than
    8190 bytes when reading: b'Bearer SECRET...` (the value without its header's name: not cut)."""
    caplog.set_level(logging.DEBUG)
    async with kame_server() as port:
        for header in (b"Authorization: Bearer ", b"Cookie: kame=", b"X-Api-Key: "):
            request = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"s3cr3t" + b"a" * 9000 + b"\r\n\r\n"
            assert b" 400 " in await _raw(port, request)
    bad = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
    assert len(bad) == 3 and all("Got more than 8190 bytes when reading a request line or header (not logged" in m
                                 for m in bad), bad
    assert "s3cr3t" not in caplog.text


async def test_the_access_log_has_the_path_as_sent(caplog):
    """(was: request.path, percent-decoded: %0A became a newline and the rest a forged line)"""
    caplog.set_level(logging.DEBUG)
    async with kame_server() as port:
        path = b"/x%0A" + FORGED.replace(" ", "%20").encode()
        assert b" 404 " in await _raw(port, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    _one_line_each(access)
    assert len(access) == 1 and f'"GET {path.decode()}" 404 ' in access[0].getMessage()


async def test_a_forwarded_for_from_a_trusted_proxy_cannot_break_the_line(caplog):
    caplog.set_level(logging.DEBUG)
    async with kame_server(trusted_proxy="127.0.0.1") as port:
        xff = ("10.0.0.1\u2028" + FORGED.replace(",", ".")).encode()  # (a comma would split it in hops)
        request = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: " + xff + b"\r\n\r\n"
        assert b" 404 " in await _raw(port, request)
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    _one_line_each(access)
    assert len(access) == 1 and access[0].getMessage().startswith('127.0.0.1 (the proxy: X-Forwarded-For has "10.0.0.1\\u2028')


async def test_a_clients_close_reason_cannot_forge_a_line(caplog):
    """(was: `closed by the client (1000 bye)` + a newline + a WARNING line of the client's)"""
    caplog.set_level(logging.INFO, logger="kame.server")
    async with kame_server() as port, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(chat_url(f"http://127.0.0.1:{port}"))
        await ws.receive(timeout=10)
        await ws.close(code=1000, message=("bye)\n" + FORGED).encode())
        for _ in range(500):  # (until the server has seen the close and logged it)
            if "closed after" in caplog.text:
                break
            await asyncio.sleep(0.01)
    closed = [r for r in caplog.records if "closed after" in r.getMessage()]
    _one_line_each(caplog.records)
    assert len(closed) == 1 and "closed by the client (1000 bye)\\n2026-12-05" in closed[0].getMessage()


def test_for_client_sends_the_short_form_and_logs_the_detail(caplog):
    caplog.set_level(logging.INFO, logger="kame.server")
    detail = "LLM http://10.1.2.3:8000/v1/chat/completions: HTTP 401: bad key (the key sent is from OPENAI_API_KEY)"
    ev = ErrorEvent(f"back-end llm failed: {detail}", 1.0, "llm back-end failed (HTTP 401 from the LLM server); see "
                                                           "the server log")
    sent = ops.for_client(ev, "s1")
    assert sent.message == ev.brief and ev.message.endswith(detail)
    assert "s1" in caplog.text and detail in caplog.text
    meta = ops.for_client(Meta({"type": "backend", "component": "llm", "status": "down", "error": detail}), "s1")
    assert meta.data["error"] == ev.brief
    text = ErrorEvent("stt failed: 0", 2.0)  # (a plugin's own message: as it is, nothing logged)
    caplog.clear()
    assert ops.for_client(text, "s1") is text and caplog.records == []
