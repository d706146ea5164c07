"""The browser page's session life in headless Chromium (tests/server/cdp.py): a double click
makes one session, a stop while connecting is the user's, a wrong token or the per-client cap is
named, microphone errors say what failed, the server's limits line, nothing carried over from
the session before. Skips when no Chromium is installed (Debian: apt-get install chromium)."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from kame.server.client import chat_url
from kame.server.echo import EchoAgent

from .cdp import Chromium, find_chromium
from .conftest import running_server
from .test_browser import _wait_for

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")

READY = "typeof window.kameStart === 'function' && document.readyState === 'complete'"
LOG = "document.getElementById('log').textContent"
LIVE = "window.kame.handshake && window.kame.texts >= 1"
# the page's WebSockets, kept in window.sockets
SOCKETS = ("window.sockets = []; window.WebSocket = class extends WebSocket "
           "{ constructor(...a) { super(...a); window.sockets.push(this); } }")


@pytest.fixture
def mic(tmp_path):
    path = tmp_path / "mic.wav"
    t = np.arange(24000 * 2) / 24000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 24000, subtype="PCM_16")
    return str(path)


async def _health(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(url + "/api/health") as r:
        return await r.json()


async def test_a_double_click_makes_one_session_that_keeps_working(mic):
    """(was: the second click, while the first still awaited the microphone / worklet / socket,
    started a second session: "no microphone", or two sockets whose older one's close ended both)"""
    async with running_server() as (url, server):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval("{ const b = document.getElementById('connect'); b.click(); b.click(); }")
            await _wait_for(page, LIVE)
            assert (await _health(url))["sessions"] == 1 and server.total_sessions == 1
            out = await page.eval("window.kame.audioOut")
            await _wait_for(page, f"window.kame.audioOut >= {out + 10}")  # still live: the echo comes back
            assert await page.eval("window.kame.errors") == [] and server.total_sessions == 1
            assert "error" not in await page.eval("document.getElementById('status').className")


async def test_stop_while_connecting_is_the_users_stop_not_a_refusal(mic):
    """(was: "closed: 1006" and "the server refused the session (see its log)")"""
    agent, gate, entered = EchoAgent(max_sessions=2, delay_frames=2), asyncio.Event(), asyncio.Event()
    open_session = agent.open_session

    async def held_open_session(session_id=None):  # the upgrade waits: the page's socket stays connecting
        entered.set()
        await gate.wait()
        return await open_session(session_id)

    agent.open_session = held_open_session
    async with running_server(agent=agent) as (url, server):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval(SOCKETS)
            await page.eval("window.kameStart()")
            await asyncio.wait_for(entered.wait(), 30)
            await page.eval("document.getElementById('connect').click()")
            await _wait_for(page, "window.sockets[0].readyState === WebSocket.CLOSED && (" + LOG +
                            ".includes('stopped by you') || " + LOG + ".includes('refused'))")
            await page.eval("fetch('api/health').then((r) => r.json())")  # (a round trip for any late log line)
            text = await page.eval(LOG)
            assert "stopped by you" in text and "refused" not in text and "1006" not in text
            assert await page.eval("document.getElementById('connect').textContent") == "Connect microphone"
            gate.set()


async def test_a_wrong_token_and_the_per_client_cap_are_named(mic):
    """(was: "closed 1006 ... the server refused the session (see its log)" for both)"""
    async with running_server(auth_token="s3cret") as (url, server):
        async with Chromium(url + "/?token=wrong", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval("window.kameStart()")
            await _wait_for(page, LOG + ".includes('the token is wrong')")
            assert "percent-encode" in await page.eval(LOG) and server.total_sessions == 0
            await page.navigate(url + "/")  # no token at all: the hint says how to write it
            await _wait_for(page, READY + " && !" + LOG + ".includes('token')")
            await page.eval("window.kameStart()")
            await _wait_for(page, LOG + ".includes('needs a token')")
            assert "percent-encode" in await page.eval(LOG)
    async with running_server(max_sessions_per_client=1) as (url, server):
        async with aiohttp.ClientSession() as http, http.ws_connect(chat_url(url)) as ws:
            await ws.receive(timeout=10)  # handshake: this address's one session is live
            async with Chromium(url + "/", fake_audio=mic) as page:
                await _wait_for(page, READY)
                await page.eval("window.kameStart()")
                await _wait_for(page, LOG + ".includes('too many sessions from your address')")
                assert "max_sessions_per_client" in await page.eval(LOG) and server.total_sessions == 1


REJECT = "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('x', '{}'))".format


@pytest.mark.parametrize("setup, says", [
    (REJECT("NotFoundError"), "no microphone found"),
    (REJECT("NotAllowedError"), "microphone permission denied"),
    ("Object.defineProperty(navigator, 'mediaDevices', {value: undefined})", "navigator.mediaDevices is missing"),
])
async def test_microphone_errors_say_what_failed(setup, says):
    """On localhost (a secure context) no "needs localhost or HTTPS" (was: on every audio error,
    and a raw TypeError without navigator.mediaDevices)."""
    async with running_server() as (url, _):
        async with Chromium(url + "/") as page:
            await _wait_for(page, READY)
            await page.eval(setup)
            await page.eval("window.kameStart()")
            await _wait_for(page, LOG + f".includes({says!r})")
            assert "HTTPS" not in await page.eval(LOG) and await page.eval("window.isSecureContext")
            assert await page.eval("document.getElementById('connect').disabled") is False


async def test_the_limits_line_says_no_idle_timeout_and_the_session_limit(mic):
    """idle_timeout_s = 0 is "no idle timeout" (was: "idle timeout 0 s"); max_session_s is said."""
    async with running_server(idle_timeout_s=0, max_session_s=600) as (url, _):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval("window.kameStart()")
            await _wait_for(page, LOG + ".includes('session echo')")
            text = await page.eval(LOG)
            assert "no idle timeout" in text and "idle timeout 0" not in text and "sessions end after 600 s" in text


async def test_a_new_session_starts_with_fresh_panels_and_counters(mic):
    """(was: transcript, agent text, metrics, dropped counts carried over from the session before)"""
    async with running_server() as (url, _):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval("window.kameStart()")
            await _wait_for(page, LIVE)
            await page.eval("""onMeta({type: 'transcript', text: 'OLDWORDS', final: true});
                onMeta({type: 'metric', name: 'llm_ttft', value: 0.5});
                onMeta({type: 'stats', session: 's', dropped_input_s: 99});
                onMeta({type: 'dropped', count: 77});
                onMessage({data: new Uint8Array([2, 79, 76, 68, 84, 69, 88, 84]).buffer})""")  # 0x02 "OLDTEXT"
            await page.eval("window.kameStop()")
            await page.eval("window.kameStart()")
            await _wait_for(page, LIVE)
            k = await page.eval("window.kame")
            assert "OLDWORDS" not in k["transcript"] and "OLDTEXT" not in k["agentText"]
            assert "llm_ttft" not in k["metrics"] and k["inputDropped"] < 99 and k["dropped"] != 77
            shown = await page.eval("[...['finals', 'agent-text', 'metrics', 'in-drop', 'n-drop']]"
                                    ".map((id) => document.getElementById(id).textContent).join('|')")
            assert "OLDWORDS" not in shown and "OLDTEXT" not in shown and "llm ttft" not in shown
            assert "99" not in shown and "77" not in shown


async def test_a_connection_lost_mid_session_is_named(mic):
    """(was: only "closed: 1006")"""
    async with running_server() as (url, server):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval("window.kameStart()")
            await _wait_for(page, LIVE)
            for conn in list(server.connections):  # as a killed server or a failed network: no close frame
                conn.transport.abort()
            await _wait_for(page, LOG + ".includes('the connection to the server was lost')")
            assert "refused" not in await page.eval(LOG)


async def test_every_metric_has_its_explanation_and_the_page_its_icon():
    """(was: content_latency and tts_first_chunk hovered as their raw names; GET /favicon.ico 404)"""
    async with running_server() as (url, _):
        async with Chromium(url + "/") as page:
            await _wait_for(page, READY)
            await page.eval("onMeta({type: 'metric', name: 'content_latency', value: 0.9}); "
                            "onMeta({type: 'metric', name: 'tts_first_chunk', value: 0.2})")
            titles = await page.eval("[...document.getElementById('metrics').tBodies[0].rows].map((r) => r.title)")
            assert len(titles) == 2 and not {"content_latency", "tts_first_chunk"} & set(titles)
            assert await page.eval("document.querySelector('link[rel=icon]').getAttribute('href')") == "data:,"
