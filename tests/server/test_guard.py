"""kame.server.guard: cross-site WebSocket and DNS-rebinding refusals, the per-client session cap,
the client audio budget (real time plus a burst, dropped before decoding), the idle timeout on
audio received, and two inputs that used to fail a request or a session (a non-UTF-8
Authorization header, a lone surrogate in an agent's text)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket

import aiohttp
import pytest

from kame.config import load_config
from kame.errors import ConfigError
from kame.runtime.base import AgentText
from kame.runtime.clock import FakeClock
from kame.server import guard
from kame.server import protocol as P
from kame.server.app import SERVER_KEY, ServerConfig, make_app, server_config_from
from kame.server.client import chat, chat_url
from kame.server.echo import EchoAgent
from kame.server.clientaddr import client_key, parse_trusted

from ..local_http import serving
from .conftest import running_server, tone
from .test_metrics_endpoint import UPGRADE, until


async def _status(http, url: str, **headers) -> tuple[int, dict]:
    """The HTTP status and JSON body of a WebSocket upgrade request to /api/chat."""
    async with http.get(chat_url(url), headers={**UPGRADE, **headers}) as r:
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body


async def _open(http, url: str, **kw):
    ws = await http.ws_connect(chat_url(url), **kw)
    assert (await ws.receive(timeout=10)).data[0] == P.Kind.HANDSHAKE
    return ws


# ---- cross-site WebSocket hijacking, DNS rebinding ---------------------------------------------


async def test_a_browser_upgrade_from_another_origin_is_refused():
    """(was: any page the operator visited could open sessions on ws://127.0.0.1:8998)"""
    async with running_server() as (url, server), aiohttp.ClientSession() as http:
        host = url.removeprefix("http://")
        status, body = await _status(http, url, Origin="https://evil.example")
        assert status == 403 and body["error"] == "forbidden_origin" and "server.allowed_origins" in body["message"]
        assert (await _status(http, url, Origin="http://localhost:1"))[0] == 403  # another port of the same host
        assert server.total_sessions == 0 and server.metrics.refused["forbidden_origin"] == 2
        # the page the server serves itself, and clients that send no Origin (kame client, scripts)
        for ws in (await _open(http, url, origin=f"http://{host}"), await _open(http, url)):
            await ws.close()
        assert (await chat(url, tone(0.2), realtime=False, tail_s=0.2)).errors == []


async def test_allowed_origins_and_a_trusted_proxys_forwarded_host():
    async with running_server(allowed_origins=["https://app.example.com"], trusted_proxy="127.0.0.1") as (url, _), \
            aiohttp.ClientSession() as http:
        assert (await _status(http, url, Origin="https://APP.example.com:443"))[0] == 101
        assert (await _status(http, url, Origin="http://app.example.com"))[0] == 403  # not the https page
        proxied = {"X-Forwarded-Host": "kame.example.org", "X-Forwarded-Proto": "https"}
        assert (await _status(http, url, Origin="https://kame.example.org", **proxied))[0] == 101
    async with running_server() as (url, _), aiohttp.ClientSession() as http:  # no trusted proxy: not believed
        assert (await _status(http, url, Origin="https://kame.example.org", **proxied))[0] == 403
    async with running_server(allowed_origins="*") as (url, _), aiohttp.ClientSession() as http:
        assert (await _status(http, url, Origin="https://anything.example"))[0] == 101


async def test_a_refusal_log_line_names_the_forwarded_hop_a_proxy_stands_for(caplog):
    """(was: the 403 line said only the proxy's address, where the other log lines add the
    X-Forwarded-For hop that is not an address)"""
    caplog.set_level(logging.WARNING, "kame.server")
    async with running_server(trusted_proxy="127.0.0.1") as (url, _), aiohttp.ClientSession() as http:
        status, _ = await _status(http, url, Origin="https://evil.example", **{"X-Forwarded-For": "unknown"})
        assert status == 403
    (line,) = [r.getMessage() for r in caplog.records if "(HTTP 403)" in r.getMessage()]
    assert 'from 127.0.0.1 (the proxy: X-Forwarded-For has "unknown", not an address)' in line, line


async def test_a_loopback_server_refuses_other_host_names_dns_rebinding():
    """(was: a page of attacker.example, its name rebound to 127.0.0.1, was answered)"""
    async with running_server() as (url, server), aiohttp.ClientSession() as http:
        port = url.rsplit(":", 1)[1]
        for path in ("/api/health", "/api/metrics", "/"):
            async with http.get(url + path, headers={"Host": f"attacker.example:{port}"}) as r:
                assert r.status == 403 and (await r.json())["error"] == "forbidden_host"
        status, body = await _status(http, url, Host=f"attacker.example:{port}")
        assert status == 403 and "server.allowed_hosts" in body["message"] and server.total_sessions == 0
        for host in (f"localhost:{port}", f"127.0.0.2:{port}", f"[::1]:{port}", "localhost"):
            async with http.get(url + "/api/health", headers={"Host": host}) as r:
                assert r.status == 200, host
    async with running_server(allowed_hosts=["kame.lan"]) as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "/api/health", headers={"Host": "KAME.lan:1"}) as r:
            assert r.status == 200


@pytest.fixture
def box_names(monkeypatch):
    """This machine's names, as the server asks them at start: Kame-Box, kame-box.home.example."""
    monkeypatch.setattr("socket.gethostname", lambda: "Kame-Box")
    monkeypatch.setattr("socket.getfqdn", lambda name="": "kame-box.home.example")


async def test_a_non_loopback_server_without_a_token_refuses_other_host_names(box_names):
    """(was: a server on 0.0.0.0 or a LAN address without a token answered a page of evil.example
    whose name was re-pointed at it: DNS rebinding)"""
    for bind in ("0.0.0.0", "::", "192.168.1.5"):  # (the config only: the test server listens on 127.0.0.1)
        async with running_server(host=bind, allowed_hosts=["kame.lan"]) as (url, server), \
                aiohttp.ClientSession() as http:
            for path in ("/", "/api/health"):
                async with http.get(url + path, headers={"Host": "evil.example:8998"}) as r:
                    assert r.status == 403 and (await r.json())["error"] == "forbidden_host", (bind, path)
            status, body = await _status(http, url, Host="Evil.Example")
            assert status == 403 and body["error"] == "forbidden_host" and server.total_sessions == 0
            for hint in ("server.allowed_hosts", "--token-file", "IP address"):
                assert hint in body["message"], hint
            assert "kame-box" not in body["message"]  # (the page can read it: the names are not told)
            for host in ("192.168.1.5:8998", "10.0.0.7", "[fe80::1]", "[2001:db8::5]:8998", "localhost:8998",
                         "127.0.0.1", "[::1]", "kame-box", "KAME-BOX.local:8998", "kame-box.home.example.", "kame.lan"):
                async with http.get(url + "/api/health", headers={"Host": host}) as r:
                    assert r.status == 200, (bind, host)
            assert (await _status(http, url, Host="192.168.1.5:8998", Origin="http://192.168.1.5:8998"))[0] == 101
    async with running_server(host="0.0.0.0", allowed_hosts="*") as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "/api/health", headers={"Host": "evil.example"}) as r:
            assert r.status == 200
    async with running_server() as (url, _), aiohttp.ClientSession() as http:  # a loopback bind: as before
        for host in ("kame-box", "192.168.1.5:8998"):
            async with http.get(url + "/api/health", headers={"Host": host}) as r:
                assert r.status == 403, host
    # a trusted proxy's request is not checked: the proxy decides which names it serves
    async with running_server(host="0.0.0.0", trusted_proxy="127.0.0.1") as (url, _), aiohttp.ClientSession() as http:
        forwarded = {"Host": "kame.example.org", "X-Forwarded-For": "192.0.2.9"}
        async with http.get(url + "/api/health", headers=forwarded) as r:
            assert r.status == 200


async def test_with_a_token_a_non_loopback_server_leaves_the_host_to_the_token(box_names):
    async with running_server(host="0.0.0.0", auth_token="s3cret") as (url, server), aiohttp.ClientSession() as http:
        assert server.own_names is None  # (not even asked)
        async with http.get(url + "/api/health", headers={"Host": "evil.example"}) as r:
            assert r.status == 200
        assert (await _status(http, url, Host="evil.example"))[0] == 401  # the token, as usual
        authorized = {"Host": "evil.example", "Authorization": "Bearer s3cret"}
        assert (await _status(http, url, **authorized))[0] == 101


def test_the_new_keys_are_checked():
    assert guard.parse_origins(["HTTPS://a.example:443/", "http://b.example:8080", "*"]) == \
        ("https://a.example", "http://b.example:8080", "*")
    assert guard.parse_hosts("kame.lan, x.lan") == ("kame.lan", "x.lan")
    for key, bad in (("allowed_origins", "a.example"), ("allowed_origins", "https://a.example/page"),
                     ("allowed_origins", "[1]"), ("allowed_hosts", "a.example:80"), ("allowed_hosts", "http://a")):
        with pytest.raises(ConfigError, match=f"server.{key}"):
            load_config(None, [f"server.{key}={bad}"])
        with pytest.raises(ConfigError, match=f"server.{key}"):
            server_config_from({key: [bad]})
    with pytest.raises(ConfigError, match="max_sessions_per_client"):
        load_config(None, ["server.max_sessions_per_client=-1"])
    cfg = load_config(None, ['server.allowed_origins=["https://app.example.com"]', "server.max_sessions_per_client=2"])
    assert server_config_from(cfg.server).allowed_origins == ["https://app.example.com"]
    assert ServerConfig().max_sessions_per_client == 0 and ServerConfig().allowed_origins == []


# ---- sessions per client ---------------------------------------------------------------------


async def test_max_sessions_per_client_caps_one_address():
    """(was: one client could hold every session slot)"""
    async with running_server(max_sessions_per_client=2, trusted_proxy="127.0.0.1") as (url, server), \
            aiohttp.ClientSession() as http:
        a, b = await _open(http, url), await _open(http, url)
        status, body = await _status(http, url)
        assert status == 429 and body["error"] == "too_many_sessions" and "127.0.0.1" in body["message"]
        other = await _open(http, url, headers={"X-Forwarded-For": "203.0.113.7"})  # another client, via the proxy
        # /api/health says the asking client's own count and the cap (the page explains its 429 with them)
        for headers, n in (({}, 2), ({"X-Forwarded-For": "203.0.113.7"}, 1), ({"X-Forwarded-For": "203.0.113.8"}, 0)):
            async with http.get(url + "/api/health", headers=headers) as r:
                h = await r.json()
            assert (h["client_sessions"], h["max_sessions_per_client"]) == (n, 2)
        await a.close()
        await until(lambda: len(server.connections) == 2, "the closed session's end")
        c = await _open(http, url)  # its slot is free again
        for ws in (b, c, other):
            await ws.close()
        assert server.metrics.refused["too_many_sessions"] == 1
    async with running_server() as (url, _), aiohttp.ClientSession() as http:  # no cap: not said
        async with http.get(url + "/api/health") as r:
            assert not {"client_sessions", "max_sessions_per_client"} & set(await r.json())


async def test_an_ipv6_clients_addresses_in_one_64_are_one_client():
    """(was: each IPv6 address its own client, and a host has 2^64 of them to take every slot with)"""
    async with running_server(max_sessions_per_client=1, trusted_proxy="127.0.0.1") as (url, server), \
            aiohttp.ClientSession() as http:
        a = await _open(http, url, headers={"X-Forwarded-For": "2001:db8:1:2::1"})
        status, body = await _status(http, url, **{"X-Forwarded-For": "2001:db8:1:2:ffff::9"})
        assert status == 429 and body["error"] == "too_many_sessions" and "2001:db8:1:2::/64" in body["message"]
        b = await _open(http, url, headers={"X-Forwarded-For": "2001:db8:1:3::1"})  # another /64: another client
        for ws in (a, b):
            await ws.close()


def test_a_client_is_an_ipv4_address_or_an_ipv6_64():
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"  # (an IPv4 peer of a dual-stack bind)
    assert client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("::1") == "::/64"
    assert client_key("not-an-address") == "not-an-address"  # (an X-Forwarded-For hop as a client put it)
    # a port a proxy adds (Azure Application Gateway: IP:port) is dropped
    assert client_key("203.0.113.7:50001") == client_key('"203.0.113.7:50002"') == "203.0.113.7"
    assert client_key("[2001:db8:1:2::1]:50001") == client_key("[2001:db8:1:2::9]") == "2001:db8:1:2::/64"
    # a link-local address (every host on the link shares fe80::/64) and a trusted proxy's are whole
    assert client_key("fe80::1%eth0") == "fe80::1%eth0" and client_key("fe80::2") == "fe80::2"
    proxy = parse_trusted("2001:db8::10")
    assert client_key("2001:db8::10", proxy) == "2001:db8::10" and client_key("2001:db8::99", proxy) == "2001:db8::/64"


def test_a_trusted_proxys_connections_do_not_use_up_its_64_neighbours_cap():
    """(was: a trusted proxy's connections counted under its /64, so a host beside it with none
    of its own was refused 429 once the proxy held max_connections_per_client)"""
    from kame.server.app import LimitedSocket

    ls = LimitedSocket(socket.socket(socket.AF_INET6), 256, 2, parse_trusted("2001:db8::10"))
    try:
        key = client_key("2001:db8::10", ls.trusted)
        ls.per_address[key] += 5  # (the proxy's five connections, as accept counts them)
        assert ls._over("2001:db8::10", key) is None  # the proxy: not capped
        assert ls._over("2001:db8::99", client_key("2001:db8::99", ls.trusted)) is None  # its neighbour: none open
    finally:
        ls.close()


def test_a_hop_with_a_port_is_trusted_as_its_address_and_a_non_address_is_not():
    from kame.server.clientaddr import is_trusted, parse_trusted

    nets = parse_trusted("10.0.0.0/8,::1")
    assert is_trusted("10.0.0.1:1234", nets) and is_trusted("[::1]:443", nets) and is_trusted("::1", nets)
    for hop in ("203.0.113.7:1234", "10.0.0.1:port", "[10.0.0.1", "[::1]x", "[::1]:", "unknown", "", "x" * 5000):
        assert not is_trusted(hop, nets), hop


async def test_x_forwarded_for_hops_with_ports_are_their_addresses(caplog):
    """(was: "203.0.113.7:50001" and ":50002" were two clients, so behind a proxy that adds the
    port the per-client cap never applied; a trusted inner proxy written with its port was taken for
    the client; a hop that is no address was the client, verbatim, and logged whole)"""
    import logging

    async with running_server(max_sessions_per_client=1, trusted_proxy="127.0.0.1,10.0.0.0/8") as (url, server), \
            aiohttp.ClientSession() as http:
        for first, second in (("203.0.113.7:50001", "203.0.113.7:50002"),
                              ("[2001:db8::5]:50001", "[2001:db8::6]:50002"),
                              ("203.0.113.9, 10.0.0.1:1234", "203.0.113.9:7, 10.0.0.2")):  # (10.x: trusted)
            ws = await _open(http, url, headers={"X-Forwarded-For": first})
            status, body = await _status(http, url, **{"X-Forwarded-For": second})
            assert status == 429 and body["error"] == "too_many_sessions", (first, second)
            await ws.close()
            await until(lambda: not server.connections, "the session's end")
        # a hop that is not an address: the trusted proxy that passed it on is the client (one cap for all such)
        with caplog.at_level(logging.INFO, "kame.server"):
            a = await _open(http, url, headers={"X-Forwarded-For": "x" * 5000 + ", 10.0.0.3:80"})
            b = await _open(http, url, headers={"X-Forwarded-For": "unknown"})
            status, body = await _status(http, url, **{"X-Forwarded-For": "garbage"})
            assert status == 429 and "this client (127.0.0.1)" in body["message"]
            for ws in (a, b):
                await ws.close()
    opened = [r.getMessage() for r in caplog.records if " opened: client " in r.getMessage()]
    assert len(opened) == 2 and 'client 10.0.0.3 (the proxy: X-Forwarded-For has "xxx' in opened[0]
    assert "… (5000 characters)" in opened[0] and len(opened[0]) < 300
    assert 'client 127.0.0.1 (the proxy: X-Forwarded-For has "unknown", not an address)' in opened[1]


# ---- client audio: the budget and the idle timeout ----------------------------------------------


@contextlib.asynccontextmanager
async def _fake_clock_server(**cfg):
    clock = FakeClock()
    app = make_app(EchoAgent(max_sessions=4, delay_frames=2), ServerConfig(**cfg), clock=clock, manage_agent=True)
    async with serving(app) as (url, _), aiohttp.ClientSession() as http:
        yield url, app[SERVER_KEY], clock, http


async def _sync(ws, n: int = 0) -> list[dict]:
    """Ping and read up to the pong (every message sent before is handled); the errors seen."""
    await ws.send_bytes(P.encode(P.Kind.PING, bytes([n])))
    errors = []
    while True:
        kind, payload = P.decode((await ws.receive(timeout=10)).data)
        if kind == P.Kind.ERROR:
            errors.append(json.loads(payload))
        elif kind == P.Kind.PING and payload == bytes([n]):
            return errors


async def test_opus_past_real_time_plus_a_burst_is_dropped_before_decoding(monkeypatch):
    """(was: every message of a flood was decoded on the event loop, 28-54 ms per 10 s of Opus,
    starving the other sessions)"""
    decoded = []
    real = P.OpusDecoder.decode
    monkeypatch.setattr(P.OpusDecoder, "decode", lambda self, *a: decoded.append(1) or real(self, *a))
    frames = list(P.OpusEncoder().frames(tone(60.0)))
    ten_s = [b"".join(frames[i : i + 125]) for i in range(0, len(frames), 125)]  # 6 messages of 10 s (~41 KB)
    async with _fake_clock_server() as (url, server, clock, http):
        ws = await _open(http, url)
        for msg in ten_s[:5]:  # the clock stands still: only the burst is there to spend
            await ws.send_bytes(P.encode(P.Kind.AUDIO, msg))
        assert await _sync(ws) == []  # (dropped audio is no protocol error)
        assert len(decoded) == 1  # the first (within the burst); the other 4 dropped undecoded
        conn = next(iter(server.connections))
        assert conn.budget.dropped_s == pytest.approx(40.0) and conn.errors == 0
        told = None
        while told is None:  # the client is told, as stats dropped_input_s (kame client warns of it)
            kind, payload = P.decode((await ws.receive(timeout=10)).data)
            if kind == P.Kind.METADATA and json.loads(payload).get("type") == "stats":
                told = json.loads(payload)["dropped_input_s"]
        assert told >= 40.0
        clock.advance(10.0)  # real time has caught up with the first message: more is taken
        await ws.send_bytes(P.encode(P.Kind.AUDIO, ten_s[5]))
        assert await _sync(ws, 1) == [] and len(decoded) == 2
        await ws.close()


async def test_real_time_pcm_is_never_dropped_and_keeps_the_session_open():
    async with _fake_clock_server(idle_timeout_s=5.0) as (url, server, clock, http):
        ws = await _open(http, url)
        frame = P.encode(P.Kind.PCM, P.pcm16_encode(tone(0.08)))
        for i in range(200):  # 16 s at real time, with a burst of 2 s first
            await ws.send_bytes(frame)
            if i >= 25:
                clock.advance(0.08)
            if i % 20 == 0:
                assert await _sync(ws, i % 250) == []
        assert await _sync(ws, 251) == []
        conn = next(iter(server.connections))
        assert conn.budget.dropped_s == 0 and conn.ended_by is None
        await ws.close()


async def test_a_trickle_of_audio_does_not_keep_a_session_from_its_idle_timeout():
    """(was: any audio message, even of one sample, reset the idle timer: 3 bytes every 25 s held
    a session slot forever)"""
    async with _fake_clock_server(idle_timeout_s=10.0) as (url, server, clock, http):
        ws = await _open(http, url)
        for i in range(10):  # one sample a second, for the whole idle window
            await ws.send_bytes(P.encode(P.Kind.PCM, b"\x01\x00"))
            assert await _sync(ws, i) == []
            clock.advance(1.0)
            await until(lambda: all(d > clock.now() for d, _ in clock.sleepers()), "the watcher's next check")
        await until(lambda: server.metrics.closed["idle_timeout"] == 1, "an idle timeout")
        errors = []
        while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY:
            if msg.data[0] == P.Kind.ERROR:
                errors.append(json.loads(msg.data[1:]))
        assert [e["code"] for e in errors] == ["idle_timeout"] and errors[0]["fatal"]
        assert "0.00 s of audio in the last 10 s" in errors[0]["message"]


# ---- inputs that broke a request or a session ----------------------------------------------------


async def test_a_non_utf8_authorization_header_is_unauthorized_not_a_server_error():
    async with running_server(auth_token="s3cret") as (url, _):
        host, port = url.removeprefix("http://").split(":")
        for auth in (b"Bearer x\xff", b"Bearer \xed\xa0\x80"):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + auth
                         + b"\r\nConnection: close\r\n\r\n")
            status = (await reader.readline()).split()[1]
            writer.close()
            assert status == b"401", (auth, status)  # (was: 500 and a traceback in the log)
        async with aiohttp.ClientSession() as http, http.get(url + "/api/metrics?token=%ff%ed%a0%80") as r:
            assert r.status == 401


class _SurrogateAgent(EchoAgent):
    async def open_session(self, session_id=None):
        s = await super().open_session(session_id)
        await s._out.put(AgentText("caf\u00e9 \ud83d!", 0.0))
        return s


async def test_a_lone_surrogate_in_the_agents_text_does_not_end_the_session():
    """(was: UnicodeEncodeError in P.encode: the session closed with internal_error)"""
    assert P.encode(P.Kind.TEXT, "a\ud83db") == b"\x02a?b"
    async with running_server(_SurrogateAgent(delay_frames=2)) as (url, _), aiohttp.ClientSession() as http:
        ws = await _open(http, url)
        while True:
            kind, payload = P.decode((await ws.receive(timeout=10)).data)
            assert kind != P.Kind.ERROR, payload
            if kind == P.Kind.TEXT:
                assert payload.decode() == "caf\u00e9 ?!"
                break
        assert await _sync(ws) == []  # still served
        await ws.close()


# ---- from the review of the guard (helper-93) -------------------------------------------------


def _opus_bomb() -> bytes:
    """47 KB of Ogg pages whose 2-byte packets claim 120 ms each: 1836 s by their TOC bytes."""
    import struct

    def page(packets, seq):
        lacing = bytes(len(p) for p in packets)
        pg = bytearray(b"OggS" + bytes([0, 0]) + struct.pack("<qIII", 0, 1, seq, 0) + bytes([len(packets)])
                       + lacing + b"".join(packets))
        struct.pack_into("<I", pg, 22, P.ogg_crc(bytes(pg)))
        return bytes(pg)

    return b"".join(page([bytes([(16 << 3) | 3, 48])] * 255, i) for i in range(60))


async def test_an_over_long_message_is_refused_before_it_is_charged_to_the_budget():
    """(was: a message claiming 1836 s was answered audio_too_long but charged in full: the
    client's real-time audio after it was all dropped)"""
    bomb = _opus_bomb()
    assert P.check_ogg_pages(bomb) / 48000 > 1000 and len(bomb) < 65536
    async with _fake_clock_server(max_message_bytes=600_000) as (url, server, clock, http):
        ws = await _open(http, url)
        await ws.send_bytes(P.encode(P.Kind.AUDIO, bomb))
        await ws.send_bytes(P.encode(P.Kind.PCM, b"\x00" * 2 * 24000 * 11))  # 11 s of PCM (a larger message limit)
        assert [e["code"] for e in await _sync(ws)] == ["audio_too_long"] * 2
        conn = next(iter(server.connections))
        frame = P.encode(P.Kind.PCM, P.pcm16_encode(tone(0.08)))
        for i in range(50):  # 4 s at real time
            await ws.send_bytes(frame)
            if i % 5 == 4:
                assert await _sync(ws, i) == []
            clock.advance(0.08)
        assert conn.budget.dropped_s == 0  # the real-time audio after it was taken
        await ws.close()


async def test_a_bad_pcm_message_past_the_budget_is_still_a_protocol_error():
    """(was: once the budget was spent, an odd-length PCM message was dropped silently)"""
    async with _fake_clock_server() as (url, server, clock, http):
        ws = await _open(http, url)
        one_s = P.encode(P.Kind.PCM, P.pcm16_encode(tone(1.2)))
        for _ in range(4):  # the clock stands still: 4.8 s, past the 3 s burst
            await ws.send_bytes(one_s)
        assert await _sync(ws) == []
        assert next(iter(server.connections)).budget.dropped_s > 0
        await ws.send_bytes(P.encode(P.Kind.PCM, b"\x01\x00\x02"))
        assert [e["code"] for e in await _sync(ws, 1)] == ["bad_pcm"]
        await ws.close()


async def _talk_now_and_then(idle_audio_share=None) -> tuple[object, dict]:
    """Push-to-talk: 1 s of audio every 9 s over 30 s, idle timeout 10 s; the server and its info."""
    cfg = {} if idle_audio_share is None else {"idle_audio_share": idle_audio_share}
    async with _fake_clock_server(idle_timeout_s=10.0, **cfg) as (url, server, clock, http):
        ws = await http.ws_connect(chat_url(url))
        info = None
        while info is None:
            kind, payload = P.decode((await ws.receive(timeout=10)).data)
            if kind == P.Kind.METADATA and json.loads(payload).get("type") == "info":
                info = json.loads(payload)
        one_s = P.encode(P.Kind.PCM, P.pcm16_encode(tone(1.0)))
        conn = next(iter(server.connections))
        for t in range(31):
            if conn.ended_by:
                break
            if t % 9 == 0:
                await ws.send_bytes(one_s)
                await _sync(ws, t)
            clock.advance(1.0)
            # (the watcher has checked once it sleeps past now again)
            await until(lambda: conn.ended_by or any(d > clock.now() for d, _ in clock.sleepers()),
                        "the watcher's next check")
        await ws.close()
        await until(lambda: not server.connections, "the session's end")
        return server, info


async def test_a_push_to_talk_client_is_not_idle():
    """(was: under a quarter of real time in audio over the idle window closed the session: a
    push-to-talk or turn-based client was closed as idle)"""
    server, info = await _talk_now_and_then()
    assert server.metrics.closed["idle_timeout"] == 0
    assert info["idle_audio_share"] == 0.05 and info["idle_timeout_s"] == 10.0
    server, info = await _talk_now_and_then(idle_audio_share=0.25)  # the key sets the share
    assert server.metrics.closed["idle_timeout"] == 1 and info["idle_audio_share"] == 0.25


def test_idle_audio_share_is_checked():
    assert load_config(None, ["server.idle_audio_share=0.2"]).server.idle_audio_share == 0.2
    assert server_config_from({}).idle_audio_share == 0.05
    for bad in ("1.5", "-0.1"):
        with pytest.raises(ConfigError, match="idle_audio_share"):
            load_config(None, [f"server.idle_audio_share={bad}"])
    for bad in (1.5, "x", True):
        with pytest.raises(ConfigError, match="server.idle_audio_share"):
            server_config_from({"idle_audio_share": bad})


def test_the_startup_warning_names_dns_rebinding_and_the_token_file():
    assert guard.bind_warning(ServerConfig()) is None
    assert guard.bind_warning(ServerConfig(host="0.0.0.0", auth_token="t")) is None
    said = guard.bind_warning(ServerConfig(host="0.0.0.0"))
    assert "DNS rebinding" in said and "--token-file" in said and "127.0.0.1" in said
    assert "DNS rebinding" in guard.bind_warning(ServerConfig(host="192.0.2.5"))
    # (the Host check keeps pages out: the warning says so, unless allowed_hosts lets any name in)
    assert "web pages cannot" in said and "server.allowed_hosts" in said
    assert "any Host is answered" in guard.bind_warning(ServerConfig(host="0.0.0.0", allowed_hosts=["*"]))


def test_the_servers_drops_merged_into_an_agent_stats_are_not_reported_again():
    """(was: the total went out in the agent's stats, then again in the server's own)"""
    clock = FakeClock()
    budget = guard.AudioBudget(clock)
    assert budget.take(5.0) and not budget.take(2.0)  # 2 s dropped
    merged = budget.merged({"type": "stats", "frames": 10, "dropped_input_s": 1.0})
    assert merged["dropped_input_s"] == 3.0
    assert budget.report("s1") is None  # the client has the total already
    assert not budget.take(0.5)
    assert budget.report("s1") == {"type": "stats", "session": "s1", "dropped_input_s": 3.5}


async def test_a_server_bound_by_name_answers_to_that_name_and_a_missing_host_is_named(box_names, caplog):
    """``kame serve --host NAME`` prints http://NAME:PORT/: that name is answered (was: 403
    forbidden_host on the URL it printed); a request with no Host header is told so (was:
    "Host '' refused ... add it to server.allowed_hosts"); the names answered are logged at start."""
    import logging
    from urllib.parse import urlsplit

    with caplog.at_level(logging.INFO, "kame.server"):
        async with running_server(host="Kame-VM.lan.") as (url, _), aiohttp.ClientSession() as http:
            async with http.get(url + "/api/health", headers={"Host": "kame-vm.lan:8998"}) as r:
                assert r.status == 200
            async with http.get(url + "/api/health", headers={"Host": "other-vm.lan"}) as r:
                assert r.status == 403
            port = urlsplit(url).port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /api/health HTTP/1.0\r\n\r\n")  # (an HTTP/1.0 health check: no Host)
            answer = (await reader.read()).decode()
            writer.close()
            assert " 403 " in answer.split("\r\n")[0] and "no Host header" in answer and "allowed_hosts" not in answer
    said = [r.getMessage() for r in caplog.records if "answering Host names" in r.getMessage()]
    assert len(said) == 1 and "kame-vm.lan" in said[0] and "kame-box" in said[0]
