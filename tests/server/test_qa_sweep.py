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
from .conftest import running_server, tone

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


class _TextFloodSession:
    """Sends text (not droppable) much faster than anyone reads it, until closed."""

    def __init__(self, sid):
        self.id, self.closed = sid, False

    async def push_audio(self, pcm):
        pass

    async def outputs(self):
        while not self.closed:
            yield AgentText("x" * 4000, 0.0)
            await asyncio.sleep(0.001)

    async def close(self):
        self.closed = True


class _TextFloodAgent:
    max_sessions = 4

    async def start(self):
        pass

    async def stop(self):
        pass

    async def open_session(self, session_id=None):
        return _TextFloodSession("textflood")


@pytest.mark.skipif(sys.platform != "linux", reason="reads the socket's TCP state (Linux)")
async def test_a_client_closed_for_not_reading_loses_its_tcp_connection():
    """After a close for "client is not reading" (1008) the server drops the TCP connection too
    (was: the close frame could not be sent and the socket, only closed gracefully, stayed open
    with its unsent buffers for as long as the client kept it: an fd and megabytes per client)."""
    async with running_server(agent=_TextFloodAgent(), send_queue_messages=16, send_timeout_s=60) as (url, server):
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
