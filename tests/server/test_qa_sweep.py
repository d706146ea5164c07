"""QA sweep fixes: a non-reading client's TCP connection is dropped after its close, the 1009
boundary, malformed requests' warning, `kame client`'s wait for a late cascade reply, small wording."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
from types import SimpleNamespace

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from kame.backend.types import Transcript, Word
from kame.config import load_config
from kame.runtime.base import AgentText
from kame.server import protocol as P
from kame.server.app import ServerConfig, make_app
from kame.server.client import chat, chat_url, main

from ..local_http import serving
from ..runtime.fakes import FakeLLM, FakeSTT, FakeTTS
from .conftest import FloodAgent, running_server, tone

UPGRADE = (b"GET /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


async def _raw(url: str):
    return await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))


def _masked(payload: bytes) -> bytes:
    """One masked binary WebSocket frame (a client's), payload under 126 bytes."""
    mask = b"\x01\x02\x03\x04"
    return bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _dropped(sock: socket.socket) -> bool:
    """Whether the peer reset the connection or sent its FIN (without reading what it sent)."""
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
        return True
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    return state in (7, 8)  # TCP_CLOSE, TCP_CLOSE_WAIT


def _text_flood() -> FloodAgent:
    """Text (not droppable), sent much faster than anyone reads it."""
    return FloodAgent(lambda: AgentText("x" * 4000, 0.0), 0.001)


@pytest.mark.skipif(sys.platform != "linux", reason="reads the socket's TCP state (Linux)")
async def test_a_client_closed_for_not_reading_loses_its_tcp_connection():
    """After a close for "client is not reading" (1008) the server drops the TCP connection too
    (was: the close frame could not be sent and the socket, only closed gracefully, stayed open
    with its unsent buffers for as long as the client kept it: an fd and megabytes per client)."""
    async with running_server(agent=_text_flood(), send_queue_messages=16, send_timeout_s=60) as (url, server):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", int(url.rsplit(":", 1)[1])))
        await loop.sock_sendall(sock, UPGRADE)
        assert await loop.sock_recv(sock, 12) == b"HTTP/1.1 101"  # ... and never read again; pings meanwhile
        try:
            for _ in range(300):
                if server.total_sessions and not server.connections and _dropped(sock):
                    break
                try:
                    sock.send(_masked(b"\x06ping"))
                except BlockingIOError:
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    break
                await asyncio.sleep(0.05)
            assert server.total_sessions == 1 and not server.connections  # closed as not reading...
            assert _dropped(sock) or _send_fails(sock)  # ... and its TCP connection dropped
        finally:
            sock.close()


class _BurstSession:
    """A burst of large text messages (well within the send queue), then quiet until closed."""

    def __init__(self, n: int, size: int) -> None:
        self.id, self.closed, self.n, self.size = "burst", False, n, size

    async def push_audio(self, pcm):
        pass

    async def outputs(self):
        for i in range(self.n):
            yield AgentText(f"{i:04d}" + "x" * self.size, 0.0)
        while not self.closed:
            await asyncio.sleep(0.02)

    async def close(self):
        self.closed = True


class _BurstAgent(FloodAgent):
    async def open_session(self, session_id=None):
        return _BurstSession(60, 100_000)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's (unmasked) WebSocket frames after the 101 response: (opcode, payload); none cut."""
    body, out, i = data[data.index(b"\r\n\r\n") + 4:], [], 0
    while i + 2 <= len(body):
        n, j = body[i + 1] & 0x7F, i + 2
        if n >= 126:
            width = 2 if n == 126 else 8
            n, j = int.from_bytes(body[j:j + width], "big"), j + width
        assert j + n <= len(body), f"a frame cut off at byte {i} of {len(body)}"
        out.append((body[i] & 0x0F, body[j:j + n]))
        i = j + n
    return out


async def test_a_client_that_closes_first_gets_the_whole_stream_and_the_close_frame():
    """A client that stalled for a moment, then closed (as kame client does at its end), while the
    server still had megabytes to send: it reads every message and the close frame (was: aiohttp's
    close returned with data still buffered and the server aborted the connection: the end of the
    stream and the close frame lost, the client saw 1006 and kame client exited 1)."""
    async with running_server(agent=_BurstAgent()) as (url, _):
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", int(url.rsplit(":", 1)[1])))
            await loop.sock_sendall(sock, UPGRADE)
            await asyncio.sleep(0.3)  # (not reading: the server's send buffer fills)
            mask = b"\x01\x02\x03\x04"
            await loop.sock_sendall(sock, b"\x88\x82" + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8")))
            await asyncio.sleep(0.2)  # (the server answers the close with megabytes still unsent)
            data = b""
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5):
                data += chunk
        finally:
            sock.close()
    frames = _frames(data)  # (what the session queued after the client's close is not sent: not counted)
    texts = [p[1:5] for op, p in frames if op == 0x2 and p[:1] == bytes([P.Kind.TEXT])]
    assert len(texts) > 10 and texts == [f"{i:04d}".encode() for i in range(len(texts))]  # every message sent...
    assert frames[-1][0] == 0x8 and frames[-1][1][:2] == (1000).to_bytes(2, "big")  # ... then the close frame


def _send_fails(sock: socket.socket) -> bool:
    try:
        sock.send(_masked(b"\x06ping"))
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        pass
    return False


async def test_a_message_of_exactly_the_hard_limit_is_read_one_byte_more_closes(caplog):
    """docs/protocol.md: 1009 for a message *over* 4 x max_message_bytes (was: aiohttp's limit is
    exclusive, so a message of exactly that size was closed with 1009 too)."""
    async with running_server(max_message_bytes=1000, hard_message_factor=2) as (url, _), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(chat_url(url))
        await ws.send_bytes(b"\x01" + bytes(1999))  # 2000 bytes: over the soft limit only
        while True:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg  # (was: closed, 1009)
            kind, payload = P.decode(msg.data)
            if kind == P.Kind.ERROR:
                assert json.loads(payload)["code"] == "message_too_large"
                break
        await ws.send_bytes(b"\x01" + bytes(2000))  # 2001 bytes: closed
        while (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.BINARY:
            pass
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        for _ in range(50):
            if "closed (1009): Message size 2001 exceeds limit 2000" in caplog.text:
                break
            await asyncio.sleep(0.02)
        assert "closed (1009): Message size 2001 exceeds limit 2000" in caplog.text  # (the limit, not aiohttp's)


async def test_a_request_that_is_not_http_gets_the_malformed_request_warning(caplog):
    """docs/protocol.md: a request that is not valid HTTP gets one WARNING (was: for a bad method,
    e.g. TLS handshake bytes or a port scan, aiohttp logs at DEBUG and `kame serve` said nothing)."""
    caplog.set_level(logging.INFO)  # (as `kame serve` without -v)
    async with running_server() as (url, _):
        for request in (b"HELLO / HTTP/1.1\r\nHost: localhost\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
                        + bytes(range(32)) + b"\r\n\r\n"):
            reader, writer = await _raw(url)
            writer.write(request)
            assert b" 400 " in await reader.readline()
            writer.close()
    bad = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(bad) == 2 and all(r.levelno == logging.WARNING and "malformed request (HTTP 400)" in r.getMessage()
                                 for r in bad), [r.getMessage() for r in bad]
    assert all(r.getMessage().splitlines() == [r.getMessage()] for r in bad)  # (the TLS bytes escaped)


def test_make_app_leaves_aiohttps_log_levels_alone(caplog):
    """(was: make_app set aiohttp.server to DEBUG for the whole process, and a filter then dropped
    the DEBUG lines of a user who had set DEBUG on it themselves)"""
    assert logging.getLogger("aiohttp.server").level == logging.NOTSET
    make_app(_text_flood(), ServerConfig())
    assert logging.getLogger("aiohttp.server").level == logging.NOTSET
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")  # (the user's own)
    logging.getLogger("aiohttp.server").debug("Ignored premature client disconnection")
    assert "Ignored premature client disconnection" in [r.getMessage() for r in caplog.records]


def test_malformed_requests_are_warned_of_a_few_at_a_time(caplog):
    """A port scan does not flood the log: a few WARNINGs, then one per MALFORMED_EVERY_S, which
    counts the ones said at DEBUG meanwhile."""
    from aiohttp.http_exceptions import HttpProcessingError

    from kame.server import httplog

    now = [0.0]
    httplog.install_log_filters()  # (as make_app)
    logger = httplog.HttpLog(clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    for _ in range(20):
        logger.debug("Error handling request from %s", "192.0.2.7", exc_info=HttpProcessingError(code=400, message="bad"))
    levels = [r.levelno for r in caplog.records if r.name == "aiohttp.server"]
    assert levels == [logging.WARNING] * httplog.MALFORMED_BURST + [logging.DEBUG] * (20 - httplog.MALFORMED_BURST)
    caplog.clear()
    now[0] += httplog.MALFORMED_EVERY_S
    logger.exception("Error handling request from %s", "192.0.2.7", exc_info=HttpProcessingError(code=400, message="bad"))
    [said] = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert said.levelno == logging.WARNING and said.exc_info is None
    assert said.getMessage().endswith("malformed request (HTTP 400): bad (and 15 more since the last of these "
                                      "warnings, at DEBUG)"), said.getMessage()


# ---- `kame client` and a cascade's late final transcript ----------------------------------------


class _LateFinalSTT(FakeSTT):
    """A partial per loud frame (the STT at work), the final ``final_after`` silent frames after
    the speech (a loaded machine's STT), or never (None)."""

    def __init__(self, final_after: int | None) -> None:
        super().__init__()
        self.final_after = final_after

    async def stream(self, frames):
        words, silent = [], 0
        async for f in frames:
            if np.abs(f.pcm).max() > 0.05:
                words.append(Word(f"w{len(words)}", f.t, f.t + 0.08))
                silent = 0
                yield Transcript(tuple(words), False, f.t + 0.08)
            elif words:
                silent += 1
                if silent == self.final_after:
                    yield Transcript(tuple(words), True, f.t + 0.08)
                    words = []


@contextlib.asynccontextmanager
async def _cascade(stt):
    from kame.cascade.agent import build_cascade_agent

    cfg = load_config(None, ["mode=cascade", "runtime.vad=energy"])
    agent = build_cascade_agent(cfg, components={"stt": stt, "llm": FakeLLM(), "tts": FakeTTS()})
    async with running_server(agent) as (url, _):
        yield url


async def test_the_client_waits_for_a_late_final_while_partials_came(monkeypatch):
    """The STT sent words of the speech (partials): its final may come late, and the client waits
    for it and the reply (as `kame run`), not FINAL_WAIT_S only (was: it passed reply_pending no
    partials, stopped waiting FINAL_WAIT_S after the speech's end and exited 0 with no answer)."""
    from kame.runtime import filemode

    monkeypatch.setattr(filemode, "FINAL_WAIT_S", 0.3)  # (6 s in use; the final comes 1.5 s after the VAD's end)
    async with _cascade(_LateFinalSTT(final_after=25)) as url:  # (--tail 1: the VAD's end within it)
        res = await chat(url, tone(0.5), realtime=False, tail_s=1.0, max_tail_s=15)
    assert any(m.get("type") == "transcript" and m.get("final") for m in res.metas)
    assert any(m.get("type") == "agent_turn" for m in res.metas) and res.text.strip()  # the reply came
    assert not res.reply_cut_off and res.failure() is None


async def test_the_client_warns_when_the_final_never_came(tmp_path, capsys):
    """As `kame run` does: the STT's final for the user's speech never came, so the cascade could
    not answer (was: exit 0, no warning, and "tail extended ... (the cascade was still
    answering)" though no reply had begun)."""
    wav = tmp_path / "in.wav"
    sf.write(str(wav), tone(0.5), 24000)
    async with _cascade(_LateFinalSTT(final_after=None)) as url:
        argv = [url, wav, "--json", tmp_path / "out.json", "--tail", "1", "--max-tail", "2"]  # (paced: the VAD's span)
        assert await asyncio.to_thread(main, [str(x) for x in argv]) == 0
    out, err = capsys.readouterr()
    assert "tail extended" in out and "was still to come" in out and "still answering" not in out
    assert "warning: the STT's final transcript for the user's speech ending" in err and "never came" in err
    assert "it had heard 'w0" in err and "--max-tail" in err
    assert "no audio came" not in err  # (the warning above says why)


def test_an_answered_turn_is_not_taken_for_a_reply_under_way(capsys):
    """Turn 1 answered, the user spoke again, partials came and its final never did: the tail
    waited for that final, and no reply was under way (was: any "turn" of the session counted,
    so the client said "a cascade reply was under way" and "the cascade was still answering" too)."""
    from kame.server.client import ChatResult
    from kame.server.clientreport import report

    metas = [{"type": "info", "t0": 0.0}, {"type": "info", "mode": "cascade", "stt": "x", "llm": "y"},
             {"type": "vad", "event": "start", "t": 0.2}, {"type": "transcript", "text": "hi", "final": False, "t": 0.6},
             {"type": "vad", "event": "end", "t": 0.9}, {"type": "transcript", "text": "hi there", "final": True, "t": 1.5},
             {"type": "turn", "turn": 1, "t": 1.5}, {"type": "agent_turn", "turn": 1, "text": "hello", "t": 3.0},
             {"type": "vad", "event": "start", "t": 4.0}, {"type": "transcript", "text": "and", "final": False, "t": 4.5},
             {"type": "vad", "event": "end", "t": 5.0}]
    res = ChatResult(audio=np.zeros(24000, np.float32), texts=["hello"], metas=metas, close_code=1000,
                     tail_extended_s=28.0, reply_cut_off=True)
    assert report(res, SimpleNamespace(tail=1.0, max_tail=30.0, json=None, fast=False)) == 0
    out, err = capsys.readouterr()
    assert "tail extended 28.00 s (the STT's final transcript, which starts the cascade's reply, was still to come)" in out
    assert "under way" not in out and "still answering" not in err
    assert "the STT's final transcript for the user's speech ending 5.00 s into the session never came" in err


# ---- wording -----------------------------------------------------------------------------------


def test_the_host_names_line_names_each_once(caplog):
    """(was, where getfqdn() is "localhost": "answering Host names: IP addresses, localhost, localhost, ...")"""
    from kame.server import guard

    with caplog.at_level(logging.INFO, "kame.server"):
        guard.log_host_names(frozenset({"localhost", "vm", "vm.local"}), ("vm", "kame.lan"))
    said = caplog.records[-1].getMessage()
    assert said.startswith("answering Host names: IP addresses, localhost, vm, vm.local, kame.lan;"), said


class _LoadingCascade:
    """A cascade agent (its config's mode) whose start never ends: the server answers "loading"."""

    config = SimpleNamespace(mode="cascade")
    max_sessions = 1

    async def start(self):
        await asyncio.Event().wait()

    async def stop(self):
        pass


async def test_a_loading_cascade_is_said_to_load_what_a_cascade_has():
    """(was: "the agent is still loading (front-end, codec, STT, LLM)", for a cascade too)"""
    app = make_app(_LoadingCascade(), ServerConfig(), manage_agent=True, load_in_background=True)
    async with serving(app) as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "/api/chat") as r:
            assert r.status == 503
            said = (await r.json())["message"]
    assert "loading (STT, LLM, TTS)" in said and "front-end" not in said


def test_a_tandem_with_hybrid_routing_is_said_to_load_a_tts_too():
    """(was: "front-end, codec, STT, LLM": hybrid routing's TTS left out)"""
    from kame.server import guard

    hybrid = SimpleNamespace(config=SimpleNamespace(mode="tandem", cascade=SimpleNamespace(hybrid_routing=True)))
    assert guard.loads(hybrid) == "front-end, codec, STT, LLM, TTS"
    assert guard.loads(SimpleNamespace(config=SimpleNamespace(mode="tandem"))) == "front-end, codec, STT, LLM"


async def test_the_per_client_refusal_counts_one_session_as_one():
    """(was: "already has 1 sessions open")"""
    async with running_server(max_sessions_per_client=1) as (url, _), aiohttp.ClientSession() as http:
        first = await http.ws_connect(chat_url(url))
        async with http.get(url + "/api/chat", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                        "Sec-WebSocket-Version": "13",
                                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
            assert r.status == 429
            assert "already has 1 session open," in (await r.json())["message"]
        await first.close()


def test_a_hybrid_tandems_structured_reply_counts_as_a_reply_to_the_last_speech():
    from kame.server.clientreport import replied_last

    vad = {"type": "vad", "event": "start", "t": 1.0}
    routed = {"type": "route", "route": "structured", "t": 2.0}
    assert replied_last([vad, routed])  # (was: only "turn" metadata counted)
    assert not replied_last([vad, {"type": "route", "route": "frontend", "t": 2.0}])
    assert not replied_last([routed, {**vad, "t": 3.0}])  # (one before the user spoke again)


class _ClosingWs:
    """aiohttp's WebSocketResponse as a too-large message arrives: receive() closes the socket itself
    (1009: closed, close frame sent, its drain waiting for a client that is busy sending) and returns
    an ERROR once ``drained`` is set; a send meanwhile fails as aiohttp's does."""

    def __init__(self):
        self.closed, self.close_code = False, None
        self.drained, self.send_failed = asyncio.Event(), asyncio.Event()

    async def receive(self):
        from aiohttp.http_websocket import WebSocketError

        self.closed, self.close_code = True, aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        await self.drained.wait()
        self.close_code = aiohttp.WSCloseCode.ABNORMAL_CLOSURE  # (aiohttp's close, the client's close frame unread)
        return SimpleNamespace(type=aiohttp.WSMsgType.ERROR,
                               data=WebSocketError(aiohttp.WSCloseCode.MESSAGE_TOO_BIG, "Message size 5001 exceeds limit 2000"))

    async def send_bytes(self, data):
        self.send_failed.set()
        raise ConnectionResetError("Cannot write to closing transport")


@pytest.mark.parametrize("reader_returns", [True, False])
async def test_a_send_failing_while_the_server_closes_for_a_too_large_message_is_not_a_lost_connection(
        monkeypatch, reader_returns):
    """QA fuzz #4: a 10 MB message was at times logged and counted as `lost` ("Cannot write to
    closing transport": the writer failed while aiohttp closed the socket with 1009, before the
    reader returned). It is the server's close: its code (and reason, when the reader says it)."""
    from kame.runtime.clock import MonotonicClock
    from kame.server import connection, ops
    from kame.server.connection import Connection

    from .conftest import FloodSession

    monkeypatch.setattr(connection, "CLOSE_WAIT_S", 0.2)  # (aiohttp's close, for a client that never reads)
    ws = _ClosingWs()
    server = SimpleNamespace(cfg=ServerConfig(), clock=MonotonicClock())
    conn = Connection(server, ws, FloodSession("big1", lambda: AgentText("x", 0.0), 0.01), pcm_out=True)
    run = asyncio.create_task(conn.run())
    await asyncio.wait_for(ws.send_failed.wait(), 5)  # the writer failed first ...
    if reader_returns:
        for _ in range(20):
            await asyncio.sleep(0)
        ws.drained.set()  # ... then aiohttp's close returns and the reader says why
    await asyncio.wait_for(run, 10)
    ws.drained.set()
    assert conn.lost is None and ops.closed_how(conn) == "error"  # (was: "lost")
    said = "Message size 5001 exceeds limit 2000" if reader_returns else "closed for the client's message (1009)"
    assert ops.ending(conn) == f"closed by the server (1009 {said})"
