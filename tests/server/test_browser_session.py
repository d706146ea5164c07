"""The browser page's session life in headless Chromium (tests/server/cdp.py): a double click
makes one session, a start can be cancelled while it waits, a stop while connecting is the
user's, a start after a stop waits for the last session's close, a wrong token or the per-client
cap is named (before and after a refused upgrade), the server checks give up, microphone errors
say what failed and the microphone is released, the server's limits line, nothing carried over
from the session before. Skips when no Chromium is installed (Debian: apt-get install chromium)."""

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
# the page's microphone streams, kept in window.streams (ENDED: all their tracks stopped)
CAPTURE = ("window.gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices); window.streams = []; "
           "navigator.mediaDevices.getUserMedia = (c) => window.gum(c).then((s) => { window.streams.push(s); return s; })")
ENDED = "window.streams.every((s) => s.getTracks().every((t) => t.readyState === 'ended'))"
# getUserMedia held until window.go() (a permission prompt not yet answered)
HOLD = ("navigator.mediaDevices.getUserMedia = (c) => new Promise((ok) => "
        "{ window.go = () => ok(window.gum(c).then((s) => { window.streams.push(s); return s; })); })")
BUTTON = "[document.getElementById('connect').textContent, document.getElementById('connect').disabled]"
STATUS = "document.getElementById('status').textContent"


@pytest.fixture
def mic(tmp_path):
    path = tmp_path / "mic.wav"
    t = np.arange(24000 * 2) / 24000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 24000, subtype="PCM_16")
    return str(path)


async def _go_live(page) -> None:
    """Connect the page once it is loaded, and wait for its session to be live."""
    await _wait_for(page, READY)
    await page.eval("window.kameStart()")
    await _wait_for(page, LIVE)


async def _health(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(url + "/api/health") as r:
        return await r.json()


async def test_a_double_click_makes_one_session_that_keeps_working(mic):
    """(was: the second click, while the first still awaited the microphone / worklet / socket,
    started a second session: "no microphone", or two sockets whose older one's close ended both)"""
    async with running_server() as (url, server):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval("{ const b = document.getElementById('connect'); b.click(); "
                            "b.dispatchEvent(new MouseEvent('click', {detail: 2})); }")  # (its second click)
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
        try:
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
        finally:
            gate.set()  # (else the held upgrade keeps the server from shutting down)


async def test_a_start_waiting_for_the_microphone_can_be_cancelled(mic):
    """(was: "Connecting..." disabled for good while a permission prompt went unanswered)"""
    async with running_server() as (url, server):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval(CAPTURE + "; navigator.mediaDevices.getUserMedia = () => "
                            "{ window.asked = true; return new Promise(() => {}); }")  # never answers
            await page.eval("window.kameStart(); 0")
            await _wait_for(page, "window.asked")
            assert await page.eval(BUTTON) == ["Cancel", False]
            await page.eval("document.getElementById('connect').click()")
            assert await page.eval(BUTTON) == ["Connect microphone", False]
            assert await page.eval(STATUS) == "stopped" and "stopped by you" in await page.eval(LOG)
            await page.eval("navigator.mediaDevices.getUserMedia = (c) => window.gum(c)")
            await page.eval("document.getElementById('connect').click()")  # a new start works
            await _wait_for(page, LIVE)
            assert server.total_sessions == 1 and await page.eval(BUTTON) == ["Stop", False]


async def test_the_server_checks_give_up_and_name_an_error_page(mic):
    """A stalled /api/health gives up (its 5 s made 0.1 s here), a proxy's HTML 504 is called an
    error page (was: "Connecting..." for good; "not reachable (Unexpected token '<' ...)")."""
    async with running_server() as (url, _):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval("window.fetch = () => Promise.resolve(new Response('<html>Gateway Timeout</html>', "
                            "{status: 504, headers: {'Content-Type': 'text/html'}}))")
            await page.eval("window.kameStart()")
            await _wait_for(page, LOG + ".includes('error page (HTTP 504')", timeout=10)
            assert "Unexpected token" not in await page.eval(LOG) and await page.eval(STATUS) == "cannot connect"
            await page.eval("{ const t = AbortSignal.timeout.bind(AbortSignal); AbortSignal.timeout = () => t(100); "
                            "window.fetch = (u, o) => new Promise((_, no) => o && o.signal && "
                            "o.signal.addEventListener('abort', () => no(o.signal.reason))); }")  # a stalled proxy
            await page.eval("window.kameStart(); 0")
            assert await page.eval(BUTTON) == ["Cancel", False]  # (meanwhile)
            await _wait_for(page, LOG + ".includes('no answer within 5 s')", timeout=10)
            assert await page.eval(BUTTON) == ["Connect microphone", False]


async def test_a_start_after_a_stop_waits_for_the_last_session_to_close(mic):
    """The server frees a client's place once its session has closed (slow here): a Connect
    right after a Stop waits for the old socket's close (was: "too many sessions from your address")."""
    agent = EchoAgent(max_sessions=8, delay_frames=2)
    open_session = agent.open_session

    async def slow_closing(session_id=None):
        session = await open_session(session_id)
        close = session.close

        async def slow_close():
            await asyncio.sleep(1.0)
            await close()

        session.close = slow_close
        return session

    agent.open_session = slow_closing
    async with running_server(agent=agent, max_sessions_per_client=1) as (url, server):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _go_live(page)
            await page.eval("window.kameStop(); window.kameStart(); 0")
            await _wait_for(page, LOG + ".includes('too many sessions') || (" + LIVE + ")")
            assert "too many sessions" not in await page.eval(LOG) and server.total_sessions == 2


async def test_a_websocket_that_cannot_be_made_ends_the_start(mic):
    """new WebSocket() throwing (a Content-Security-Policy, a blocked port) releases the
    microphone and says so (was: start() rejected, microphone on, button disabled for good)."""
    async with running_server() as (url, _):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval(CAPTURE + "; window.WebSocket = class extends WebSocket "
                            "{ constructor() { throw new DOMException('refused by policy', 'SecurityError'); } }")
            await page.eval("window.kameStart()")
            await _wait_for(page, LOG + ".includes('refused by policy')", timeout=10)
            assert await page.eval("window.streams.length") == 1 and await page.eval(ENDED)
            assert await page.eval(BUTTON) == ["Connect microphone", False]
            assert "SecurityError" in await page.eval(STATUS)


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


async def test_the_token_check_is_a_head_and_a_proxys_401_is_not_the_tokens(mic):
    """/api/metrics is asked with HEAD (was: GET, its whole text at each start), which aiohttp
    answers as GET; a 401 without the server's "WWW-Authenticate: Bearer" is a proxy's refusal."""
    async with running_server(auth_token="s3cret") as (url, _):
        async with aiohttp.ClientSession() as http:
            async with http.head(url + "/api/metrics?token=wrong") as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
            async with http.head(url + "/api/metrics?token=s3cret") as r:
                assert r.status == 200
        async with Chromium(url + "/?token=wrong", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval("window.asked = []; { const f = window.fetch; window.fetch = (u, o) => "
                            "{ window.asked.push((o && o.method || 'GET') + ' ' + u); return f(u, o); }; }")
            await page.eval("window.kameStart()")
            await _wait_for(page, LOG + ".includes('the token is wrong')")
            assert [a.split("?")[0] for a in await page.eval("window.asked")] == ["GET api/health", "HEAD api/metrics"]
            await page.eval("{ const f = window.fetch; window.fetch = (u, o) => u.startsWith('api/metrics') ? "
                            "Promise.resolve(new Response(null, {status: 401})) : f(u, o); }")  # a proxy's 401
            await page.eval("window.kameStart()")
            await _wait_for(page, LOG + ".includes('refused /api/metrics (HTTP 401)')")
            assert (await page.eval(LOG)).count("the token is wrong") == 1


async def test_a_refused_upgrade_names_the_cap(mic):
    """The cap reached while the page waited for its microphone: the early check passed, the
    upgrade is refused (429), and the page then asks why (closed())."""
    async with running_server(max_sessions_per_client=1) as (url, server):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval(CAPTURE + "; " + HOLD)
            await page.eval("window.kameStart(); 0")
            await _wait_for(page, "typeof window.go === 'function'")  # (past the early check)
            async with aiohttp.ClientSession() as http, http.ws_connect(chat_url(url)) as ws:
                await ws.receive(timeout=10)  # handshake: this address's one session is live
                await page.eval("window.go()")
                await _wait_for(page, LOG + ".includes('too many sessions from your address')")
                text = await page.eval(LOG)
                assert text.index("closed: 1006") < text.index("too many sessions") and server.total_sessions == 1
                assert await page.eval(STATUS) == "cannot connect" and await page.eval(ENDED)


async def test_the_microphone_is_released_when_the_worklet_fails_and_when_it_answers_after_a_stop(mic):
    async with running_server() as (url, _):
        async with Chromium(url + "/", fake_audio=mic) as page:
            await _wait_for(page, READY)
            await page.eval(CAPTURE + "; AudioWorklet.prototype.addModule = () => "
                            "Promise.reject(new DOMException('no worklet', 'AbortError'))")
            await page.eval("window.kameStart()")
            await _wait_for(page, LOG + ".includes('no worklet')")
            assert await page.eval("window.streams.length") == 1 and await page.eval(ENDED)
            assert await page.eval(BUTTON) == ["Connect microphone", False]
            await page.eval(HOLD)
            await page.eval("window.kameStart(); 0")
            await _wait_for(page, "typeof window.go === 'function'")
            await page.eval("window.kameStop(); window.go(); 0")  # the prompt answered after the stop
            await _wait_for(page, "window.streams.length === 2")
            await _wait_for(page, ENDED, timeout=10)
            assert await page.eval(STATUS) == "stopped"


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
            await _go_live(page)
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
            await _go_live(page)
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
