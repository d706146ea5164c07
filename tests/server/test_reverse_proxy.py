"""kame serve behind a reverse proxy that forwards the browser's Origin and Host as nginx and
Caddy do (no browser: the client sends what a page at https://kame.example.org:8443 would).

- nginx with the recipe of docs/protocol.md: Host rewritten to the upstream's address,
  X-Forwarded-Host $http_host, X-Forwarded-Proto $scheme, X-Forwarded-For;
- nginx's default: Host rewritten, no X-Forwarded-* at all;
- Caddy (2.5+): Host kept, X-Forwarded-For/-Proto/-Host added.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from kame.server import protocol as P

from ..local_http import serving
from .conftest import running_server
from .test_metrics_endpoint import UPGRADE

PAGE_HOST = "kame.example.org:8443"  # what the browser asked the proxy for (TLS ends at the proxy)
ORIGIN = "https://" + PAGE_HOST
SEEN = web.AppKey("seen", list)  # the upstream paths the proxy was asked for


def _headers(req: web.Request, style: str, upstream_host: str, scheme: str) -> dict:
    """The headers the proxy sends upstream: the browser's Origin, and per ``style``."""
    out = {"Origin": req.headers["Origin"]} if "Origin" in req.headers else {}
    if style == "caddy":
        out["Host"] = req.headers.get("Host", "")
    else:  # nginx: proxy_pass http://127.0.0.1:PORT sends Host: 127.0.0.1:PORT ($proxy_host)
        out["Host"] = upstream_host
    if style in ("nginx", "caddy"):
        out.update({"X-Forwarded-Host": req.headers.get("Host", ""), "X-Forwarded-Proto": scheme,
                    "X-Forwarded-For": req.remote or ""})
    return out


def forwarding_proxy(upstream: str, style: str = "nginx", prefix: str = "",
                     scheme: str | None = None) -> web.Application:
    """GET prefix/* -> upstream/* (HTTP and WebSocket, with ``_headers``); anything else 404, as
    nginx with only `location /kame/` would. A refused upgrade is relayed with its status and
    body. ``scheme``: what X-Forwarded-Proto says (default: the request's)."""
    seen: list[str] = []
    upstream_host = upstream.removeprefix("http://")

    async def handler(req: web.Request) -> web.StreamResponse:
        if not req.path.startswith(prefix + "/"):
            return web.Response(status=404, text="proxy: no route for " + req.path)
        target = upstream + req.path_qs[len(prefix):]
        seen.append(req.path[len(prefix):])
        headers = _headers(req, style, upstream_host, scheme or req.scheme)
        async with aiohttp.ClientSession() as http:
            if req.headers.get("Upgrade", "").lower() == "websocket":
                try:
                    up = await http.ws_connect(target, headers=headers)
                except aiohttp.WSServerHandshakeError:  # relay the refusal (status and JSON body)
                    async with http.get(target, headers={**headers, **UPGRADE}) as r:
                        return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)
                ws = web.WebSocketResponse()
                await ws.prepare(req)

                async def pipe(a, b):
                    async for m in a:
                        if m.type == aiohttp.WSMsgType.BINARY:
                            await b.send_bytes(m.data)
                    await b.close()

                await asyncio.gather(pipe(ws, up), pipe(up, ws))
                return ws
            async with http.get(target, headers=headers) as r:
                return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)

    app = web.Application()
    app[SEEN] = seen
    app.router.add_route("GET", "/{tail:.*}", handler)
    return app


async def _through(style: str, **cfg) -> tuple[int, dict]:
    """A browser's upgrade from the page at ORIGIN through a ``style`` proxy: (status, refusal body);
    on 101, the session's handshake came through."""
    async with running_server(**cfg) as (url, _), serving(forwarding_proxy(url, style, scheme="https")) as (purl, _), \
            aiohttp.ClientSession() as http:
        headers = {"Host": PAGE_HOST, "Origin": ORIGIN}
        async with http.get(purl + "/api/health", headers={"Host": PAGE_HOST}) as r:
            assert r.status == 200 or cfg.get("trusted_proxy") is None, (style, r.status)
        try:
            ws = await http.ws_connect(purl + "/api/chat", headers=headers)
        except aiohttp.WSServerHandshakeError:
            async with http.get(purl + "/api/chat", headers={**headers, **UPGRADE}) as r:
                return r.status, await r.json()
        assert (await ws.receive(timeout=10)).data[0] == P.Kind.HANDSHAKE
        await ws.close()
        return 101, {}


@pytest.mark.parametrize("style", ["nginx", "caddy"])
async def test_a_browser_session_through_a_trusted_proxy(style):
    """(was: behind Caddy, which keeps the browser's Host, every request was 403 forbidden_host)"""
    assert await _through(style, trusted_proxy="127.0.0.1") == (101, {})


async def test_without_trusted_proxy_the_refusal_says_what_to_set():
    status, body = await _through("nginx")
    assert (status, body["error"]) == (403, "forbidden_origin")
    assert "--trusted-proxy 127.0.0.1" in body["message"] and "server.allowed_origins" in body["message"]
    status, body = await _through("caddy")  # the browser's Host at a loopback bind
    assert (status, body["error"]) == (403, "forbidden_host")
    assert "--trusted-proxy 127.0.0.1" in body["message"] and "server.allowed_hosts" in body["message"]


async def test_nginx_default_headers_the_refusal_gives_the_recipe():
    """nginx's default: Host rewritten to 127.0.0.1:PORT, no X-Forwarded-Host, the browser's Origin."""
    status, body = await _through("nginx-default", trusted_proxy="127.0.0.1")
    assert (status, body["error"]) == (403, "forbidden_origin")
    assert "sent no X-Forwarded-Host" in body["message"] and "X-Forwarded-Host $http_host" in body["message"]


async def test_a_rebinding_page_does_not_pass_for_the_trusted_proxy():
    """The proxy is at 127.0.0.1, and so is a DNS-rebinding page's connection: only a request
    carrying what a proxy adds (X-Forwarded-For/-Host, which a browser's WebSocket cannot send)
    skips the Host check."""
    async with running_server(trusted_proxy="127.0.0.1") as (url, _), aiohttp.ClientSession() as http:
        port = url.rsplit(":", 1)[1]
        evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        async with http.get(url + "/api/chat", headers={**evil, **UPGRADE}) as r:
            assert r.status == 403 and (await r.json())["error"] == "forbidden_host"
