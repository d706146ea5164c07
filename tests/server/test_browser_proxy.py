"""The browser page behind a reverse proxy that serves it under a path (/kame/ -> the server's
/, prefix stripped, WebSocket upgrades passed on), as an operator deploys it: the page, its
health check and its WebSocket all go through the prefix. Headless Chromium; skips without it."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from aiohttp import web

from .cdp import Chromium, find_chromium
from .conftest import running_server
from .test_browser import _wait_for
from ..local_http import serving

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
SEEN = web.AppKey("seen", list)  # the upstream paths the proxy was asked for


def prefix_proxy(upstream: str, prefix: str = "/kame") -> web.Application:
    """GET prefix/* -> upstream/* (HTTP and WebSocket); anything else 404, as nginx with only
    `location /kame/` would. Records the upstream paths asked for."""
    seen: list[str] = []

    async def handler(req: web.Request) -> web.StreamResponse:
        if not req.path.startswith(prefix + "/"):
            return web.Response(status=404, text="proxy: no route for " + req.path)
        target = upstream + req.path_qs[len(prefix):]
        seen.append(req.path[len(prefix):])
        async with aiohttp.ClientSession() as http:
            if req.headers.get("Upgrade", "").lower() == "websocket":
                try:
                    up = await http.ws_connect(target)
                except aiohttp.WSServerHandshakeError as exc:
                    return web.Response(status=exc.status, text="upstream refused")
                ws = web.WebSocketResponse()
                await ws.prepare(req)

                async def pipe(a, b):
                    async for m in a:
                        if m.type == aiohttp.WSMsgType.BINARY:
                            await b.send_bytes(m.data)
                    await b.close()

                await asyncio.gather(pipe(ws, up), pipe(up, ws))
                return ws
            async with http.get(target) as r:
                return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)

    app = web.Application()
    app[SEEN] = seen
    app.router.add_route("GET", "/{tail:.*}", handler)
    return app


async def test_the_page_works_behind_a_path_prefix(tmp_path):
    """(was: the page connected to ws://host/api/chat, which the proxy does not serve: 404)"""
    mic = tmp_path / "mic.wav"
    t = np.arange(48000 * 3) / 48000
    sf.write(mic, (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 48000, subtype="PCM_16")
    async with running_server(auth_token="s3cret") as (url, server):
        proxy = prefix_proxy(url)
        async with serving(proxy) as (purl, _):
            async with Chromium(purl + "/kame/?token=s3cret", fake_audio=str(mic)) as page:
                await _wait_for(page, "typeof window.kameStart === 'function' && document.readyState === 'complete'")
                assert await page.eval("wsUrl('https://example.org/kame/?token=T')") == \
                    "wss://example.org/kame/api/chat?pcm=1&token=T"
                await page.eval("window.kameStart()")
                await _wait_for(page, "window.kame.audioOut >= 10")
                k = await page.eval("window.kame")
                assert k["handshake"] == {"protocol": 0, "model": 0} and k["errors"] == []
                assert server.total_sessions == 1
                await page.eval("window.kameStop()")
        assert {"/api/health", "/api/chat", "/app.js", "/pcm-worklet.js"} <= set(proxy[SEEN])
