"""/api/metrics (kame.server.ops): Prometheus text of the server's counters and the agent's health."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from kame.server import protocol as P
from kame.server.client import chat_url
from kame.server.echo import EchoAgent

from .conftest import running_server

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
SAMPLE = re.compile(r'^([a-z_]+)(?:\{([a-z_]+)="([^"]*)"\})? (\S+)$')


async def scrape(http, url: str, **kw) -> dict:
    """{(name, label value or None): value} of /api/metrics; checks the format on the way."""
    async with http.get(url + "/api/metrics", **kw) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        assert m[1] in typed, f"{m[1]} has no # TYPE line before it"
        out[(m[1], m[3])] = float(m[4])
    return out


async def until(cond, what: str) -> None:
    for _ in range(250):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def _open(http, url, **kw):
    ws = await http.ws_connect(chat_url(url, **kw))
    assert (await ws.receive()).data[0] == P.Kind.HANDSHAKE
    return ws


async def test_metrics_count_sessions_refusals_closes_and_errors():
    async with running_server(max_sessions=1, auth_token="s3cret") as (url, server), aiohttp.ClientSession() as http:
        auth = {"headers": {"Authorization": "Bearer s3cret"}}
        # a token is set: /api/metrics needs it too (health does not)
        async with http.get(url + "/api/metrics") as r:
            assert r.status == 401 and (await r.json())["error"] == "unauthorized"
        m = await scrape(http, url, params={"token": "s3cret"})
        assert m[("kame_sessions_open", None)] == 0 and m[("kame_sessions_opened_total", None)] == 0
        assert m[("kame_sessions_refused_total", "capacity")] == 0  # every reason shows, from 0
        assert m[("kame_ready", None)] == 1

        with pytest.raises(aiohttp.WSServerHandshakeError):  # refused: no token
            await http.ws_connect(chat_url(url))
        ws = await _open(http, url, token="s3cret")
        async with http.get(url + "/api/chat", headers={**UPGRADE, **auth["headers"]}) as r:
            assert r.status == 503 and (await r.json())["error"] == "capacity"
        await ws.send_bytes(bytes([0x07]))  # a protocol error (reserved kind)
        while (err := await ws.receive(timeout=5)).data[0] != P.Kind.ERROR:
            pass
        assert json.loads(err.data[1:])["code"] == "unknown_kind"

        m = await scrape(http, url, **auth)
        assert m[("kame_sessions_open", None)] == 1 and m[("kame_sessions_max", None)] == 1
        assert m[("kame_sessions_opened_total", None)] == 1
        assert m[("kame_sessions_refused_total", "unauthorized")] == 1
        assert m[("kame_sessions_refused_total", "capacity")] == 1
        assert m[("kame_sessions_refused_total", "loading")] == 0
        assert m[("kame_protocol_errors_total", None)] == 1  # a live session's, counted already
        assert m[("kame_sessions_closed_total", "client")] == 0

        await ws.close()
        await until(lambda: not server.connections, "the session closed")
        m = await scrape(http, url, **auth)
        assert m[("kame_sessions_open", None)] == 0 and m[("kame_sessions_opened_total", None)] == 1
        assert m[("kame_sessions_closed_total", "client")] == 1
        assert sum(v for (k, _), v in m.items() if k == "kame_sessions_closed_total") == 1
        assert m[("kame_protocol_errors_total", None)] == 1  # kept once the session has ended
        assert m[("kame_audio_dropped_total", None)] == 0


async def test_metrics_count_idle_timeouts_and_shutdown_and_are_open_without_a_token():
    async with running_server(idle_timeout_s=0.3) as (url, server), aiohttp.ClientSession() as http:
        ws = await _open(http, url)
        await until(lambda: server.metrics.closed["idle_timeout"] == 1, "an idle timeout")
        await ws.close()
        ws = await _open(http, url)
        m = await scrape(http, url)  # no token set: open, as /api/health
        assert m[("kame_sessions_closed_total", "idle_timeout")] == 1 and m[("kame_sessions_open", None)] == 1
        server.cfg.idle_timeout_s = 0  # (the next session would time out too)
    await ws.close()
    assert server.metrics.closed["shutdown"] + server.metrics.closed["idle_timeout"] == 2
    assert server.metrics.closed["shutdown"] == 1


class HealthyEcho(EchoAgent):
    """An echo agent that reports its health as TandemAgent.health() does."""

    def health(self) -> dict:
        return {"started": True, "running": True, "frames": 1234, "missed": 5, "failed_steps": 2,
                "components": {"stt": "up", "llm": "down"}}


async def test_metrics_carry_the_agents_health():
    async with running_server(HealthyEcho()) as (url, _), aiohttp.ClientSession() as http:
        m = await scrape(http, url)
    assert m[("kame_agent_frames_total", None)] == 1234
    assert m[("kame_agent_missed_deadlines_total", None)] == 5
    assert m[("kame_agent_failed_steps_total", None)] == 2
    assert m[("kame_component_up", "stt")] == 1 and m[("kame_component_up", "llm")] == 0
    assert m[("kame_component_up", "frontend")] == 1
    assert m[("kame_ready", None)] == 1  # degraded (llm down) is still ready
