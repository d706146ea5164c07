"""The browser page behind a reverse proxy that serves it under a path (/kame/ -> the server's
/, prefix stripped, WebSocket upgrades passed on), as an operator deploys it: the page, its
health check and its WebSocket all go through the prefix, the proxy forwarding the browser's
Origin with nginx's headers of docs/protocol.md (Host rewritten, X-Forwarded-Host $http_host) and
the server started with --trusted-proxy. Headless Chromium; skips without it."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from .cdp import Chromium, find_chromium
from .conftest import running_server
from .test_reverse_proxy import SEEN, forwarding_proxy
from .test_browser import _wait_for
from ..local_http import serving

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")


async def test_the_page_works_behind_a_path_prefix(tmp_path):
    """(was: the page connected to ws://host/api/chat, which the proxy does not serve: 404)"""
    mic = tmp_path / "mic.wav"
    t = np.arange(48000 * 3) / 48000
    sf.write(mic, (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 48000, subtype="PCM_16")
    async with running_server(auth_token="s3cret", trusted_proxy="127.0.0.1") as (url, server):
        proxy = forwarding_proxy(url, "nginx", prefix="/kame")
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
