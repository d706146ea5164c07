"""What `kame serve` tells its operator (kame.server.ops): /api/health while the agent loads and
once it runs, the session log lines, the access log, aiohttp's log lines without tokens, the
browser page's WebSocket URL behind a path prefix, `kame serve -v`."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import textwrap

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from kame.errors import ConfigError, KameError
from kame.runtime.base import Agent, Meta, Session
from kame.runtime.clock import FakeClock
from kame.server import clientaddr, ops
from kame.server import protocol as P
from kame.server.app import SERVER_KEY, STATIC_DIR, ServerConfig, _build, make_app
from kame.server.client import chat_url
from kame.server.logsafe import redact

from ..local_http import serving
from .conftest import running_server

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
FIELDS = {"ok", "status", "sessions", "max_sessions", "total_sessions", "uptime_s", "auth"}


class FakeSession(Session):
    def __init__(self, sid: str) -> None:
        self.id = sid
        self.out: asyncio.Queue = asyncio.Queue()

    async def push_audio(self, pcm) -> None:
        pass

    async def outputs(self):
        while (item := await self.out.get()) is not None:
            yield item

    async def close(self) -> None:
        self.out.put_nowait(None)


class FakeAgent(Agent):
    """An agent whose start waits for ``gate`` (a model that loads), with the counters and
    components of kame's tandem."""

    def __init__(self, gate: asyncio.Event | None = None, fail: Exception | None = None) -> None:
        self.max_sessions, self.gate, self.fail = 4, gate, fail
        self.components = {"mode": "tandem", "stt": "embedded", "llm": "embedded", "tts": None}
        self.frames = self.missed = 0
        self.sessions: list[FakeSession] = []

    async def start(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail

    async def stop(self) -> None:
        pass

    async def open_session(self, session_id=None) -> Session:
        s = FakeSession(session_id or f"f{len(self.sessions) + 1}")
        self.sessions.append(s)
        return s


async def _health(http, url) -> tuple[int, dict]:
    async with http.get(url + "/api/health") as r:
        return r.status, await r.json()


async def _open(http, url, **kw):
    ws = await http.ws_connect(chat_url(url, **kw))
    assert P.decode((await ws.receive(timeout=10)).data)[0] == P.Kind.HANDSHAKE
    return ws


# ---- /api/health ---------------------------------------------------------------------------


async def test_while_the_agent_loads_health_and_chat_answer_503_loading():
    """(was: nothing listened during the 26-51 s load: probes got "connection refused")"""
    gate = asyncio.Event()
    agent = FakeAgent(gate)
    app = make_app(agent, ServerConfig(), manage_agent=True, load_in_background=True)
    state = app[SERVER_KEY].health_state
    async with serving(app) as (url, _), aiohttp.ClientSession() as http:
        status, h = await _health(http, url)
        assert status == 503 and h["ok"] is False and h["status"] == "loading" and FIELDS <= set(h)
        async with http.get(url + "/api/chat", headers=UPGRADE) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "5"
            assert (await r.json())["error"] == "loading"
        gate.set()
        await state.wait_loaded()
        status, h = await _health(http, url)
        assert status == 200 and h["ok"] is True and h["status"] == "ok"
        ws = await _open(http, url)
        await ws.close()


async def test_a_failed_background_start_is_reported_not_raised(caplog):
    agent = FakeAgent(fail=KameError("front-end checkpoint '/x' does not exist"))
    app = make_app(agent, ServerConfig(), manage_agent=True, load_in_background=True)
    async with serving(app) as (url, _), aiohttp.ClientSession() as http:
        await app[SERVER_KEY].health_state.wait_loaded()
        status, h = await _health(http, url)
        assert status == 503 and h["status"] == "failed" and "failed to start" in h["error"]
    assert "the agent could not start: front-end checkpoint '/x' does not exist" in caplog.text


async def test_health_when_ready_says_backend_frontend_and_counters():
    clock = FakeClock(100.0)
    agent = FakeAgent()
    app = make_app(agent, ServerConfig(), clock=clock)
    async with serving(app) as (url, _), aiohttp.ClientSession() as http:
        status, h = await _health(http, url)
        assert status == 200 and FIELDS <= set(h) and h["status"] == "ok"
        assert h["backend"] == {"stt": "up", "llm": "up"}  # (tts None: not configured)
        assert h["frontend"] == "up" and h["frames"] == 0 and h["missed_deadlines"] == 0
        ws = await _open(http, url)
        session = agent.sessions[0]
        # a session's back-end goes down: degraded until it says it is up again
        session.out.put_nowait(Meta({"type": "backend", "component": "llm", "status": "down", "error": "died"}))
        session.out.put_nowait(Meta({"type": "marker"}))  # (once the client has it, the server has seen the one before)
        while json.loads(P.decode((await ws.receive(timeout=10)).data)[1]).get("type") != "marker":
            pass
        status, h = await _health(http, url)
        assert status == 200 and h["status"] == "degraded" and h["backend"] == {"stt": "up", "llm": "down"}
        session.out.put_nowait(Meta({"type": "backend", "component": "llm", "status": "up", "error": None}))
        session.out.put_nowait(Meta({"type": "marker"}))
        while json.loads(P.decode((await ws.receive(timeout=10)).data)[1]).get("type") != "marker":
            pass
        assert (await _health(http, url))[1]["status"] == "ok"
        # the front-end makes no frame for 5 s while a session is live (a step failing every frame)
        agent.frames, agent.missed = 40, 3
        assert (await _health(http, url))[1]["frontend"] == "up"
        clock.advance(ops.STALL_S)
        status, h = await _health(http, url)
        assert status == 200 and h["status"] == "degraded" and h["frontend"] == "stalled"
        assert h["frames"] == 40 and h["missed_deadlines"] == 3
        agent.frames += 1
        assert (await _health(http, url))[1]["frontend"] == "up"
        await ws.close()


def test_frontend_watch_ignores_idle_agents_and_new_sessions():
    h = ops.Health()
    assert h.frontend(0.0, 5, None) == "up"
    assert h.frontend(60.0, 5, None) == "up"  # no session: the frame loop sleeps
    assert h.frontend(61.0, 5, 60.5) == "up"  # a session that just joined
    assert h.frontend(66.0, 5, 60.5) == "stalled"
    assert h.frontend(67.0, 6, 60.5) == "up"


async def test_a_dead_frame_loop_is_503_failed_and_logged_once(caplog):
    class Dead(FakeAgent):
        def health(self):  # (as TandemAgent.health() says after its frame loop died)
            return {"started": True, "running": False, "frames": 7, "missed": 0, "failed_steps": 0,
                    "components": {}, "error": "RuntimeError: the worker thread is gone"}

    async with running_server(agent=Dead()) as (url, _), aiohttp.ClientSession() as http:
        for _ in range(2):
            status, h = await _health(http, url)
            assert status == 503 and h["ok"] is False and h["status"] == "failed" and "frame loop" in h["error"]
    said = [r for r in caplog.records if "not running" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.ERROR and "RuntimeError" in said[0].getMessage()


async def test_agent_unavailable_has_retry_after():
    class Broken(FakeAgent):
        async def open_session(self, session_id=None):
            raise KameError("the agent is stopping")

    async with running_server(agent=Broken()) as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "/api/chat", headers=UPGRADE) as r:
            assert r.status == 503 and (await r.json())["error"] == "agent_unavailable"
            assert r.headers["Retry-After"] == "5"


SERVE_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from kame import cli
    from kame.errors import KameError
    from kame.server import app as A

    class Slow(A.Agent):  # an agent that loads until the test writes a line
        max_sessions = 2
        components = {"mode": "tandem"}
        async def start(self):
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            if line.strip() == "fail":
                raise KameError("no weights here")
        async def stop(self): pass
        async def open_session(self, session_id=None): raise KameError("not in this test")

    A._build = lambda args: (Slow(), A.ServerConfig(port=0))
    sys.exit(cli.main(["serve"]))
""")


@pytest.mark.parametrize("outcome", ["ready", "fail"])
def test_kame_serve_listens_while_the_agent_loads(outcome):
    import re
    import urllib.error
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"meanwhile (http://127\.0\.0\.1:\d+)/api/health answers 503", line)
        assert m, line + proc.stderr.read() if not line else line
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(m.group(1) + "/api/health", timeout=10)
        assert e.value.code == 503 and json.loads(e.value.read())["status"] == "loading"
        proc.stdin.write(outcome + "\n")
        proc.stdin.flush()
        if outcome == "ready":
            assert "serving on " + m.group(1) in proc.stdout.readline() + proc.stdout.readline()
            with urllib.request.urlopen(m.group(1) + "/api/health", timeout=10) as r:
                assert json.loads(r.read())["status"] == "ok"
        else:
            assert proc.wait(timeout=30) == 1
            assert "kame: error: no weights here" in proc.stderr.read()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ---- logs ----------------------------------------------------------------------------------


async def test_sessions_are_logged_when_they_open_and_close(caplog):
    caplog.set_level(logging.INFO, logger="kame.server")
    async with running_server() as (url, _), aiohttp.ClientSession() as http:
        ws = await _open(http, url, pcm=True)
        for _ in range(30):  # until its first stats (the echo agent sends them about once a second)
            kind, payload = P.decode((await ws.receive(timeout=10)).data)
            if kind == P.Kind.METADATA and json.loads(payload).get("type") == "stats":
                break
        await ws.close()
        for _ in range(200):
            if "closed after" in caplog.text:
                break
            await asyncio.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "kame.server" and r.levelno == logging.INFO]
    opened = [x for x in lines if " opened: " in x]
    closed = [x for x in lines if " closed after " in x]
    assert len(opened) == 1 and opened[0].endswith(": client 127.0.0.1, 1 of 8 sessions")
    assert len(closed) == 1 and "closed by the client (1000)" in closed[0]
    assert "frames " in closed[0] and "missed deadlines " in closed[0] and "input dropped 0.00 s" in closed[0]
    assert "protocol errors 0" in closed[0]


async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(caplog):
    caplog.set_level(logging.INFO, logger="kame.server")
    headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}  # (the first one: whatever the client said)
    for trusted, shown in ((None, "127.0.0.1"), ("127.0.0.1", "203.0.113.9"), ("127.0.0.0/8,203.0.113.0/24",
                                                                                "198.51.100.7")):
        caplog.clear()
        async with running_server(trusted_proxy=trusted) as (url, _), aiohttp.ClientSession() as http:
            ws = await http.ws_connect(chat_url(url), headers=headers)
            await ws.receive(timeout=10)
            await ws.close()
        assert f"opened: client {shown}, " in caplog.text, (trusted, caplog.text)
    with pytest.raises(ConfigError, match="server.trusted_proxy: 'proxy.local' is not an IP address"):
        clientaddr.parse_trusted("127.0.0.1, proxy.local")


def test_a_proxy_seen_as_an_ipv4_mapped_address_on_a_dual_stack_bind_is_trusted():
    """(review1 #5) behind `host = "::"`, an IPv4 proxy's connections come from ::ffff:127.0.0.1: it
    is the trusted 127.0.0.1 (was: a client, its users capped at 32 connections and refused 429)."""
    nets = clientaddr.parse_trusted("127.0.0.1,10.0.0.0/8")
    assert clientaddr.is_trusted("::ffff:127.0.0.1", nets) and clientaddr.is_trusted("::FFFF:10.1.2.3", nets)
    assert not clientaddr.is_trusted("::ffff:192.0.2.1", nets) and not clientaddr.is_trusted("::1", nets)
    assert clientaddr.is_trusted("::ffff:127.0.0.1", clientaddr.parse_trusted("::ffff:0:0/96"))  # (a mapped network: as before)
    forwarded = make_mocked_request("GET", "/", headers={"X-Forwarded-For": "203.0.113.9"})
    forwarded._transport_peername = ("::ffff:127.0.0.1", 5000, 0, 0)
    assert clientaddr.client_address(forwarded, nets) == "203.0.113.9"


def test_health_probes_are_not_in_the_access_log_at_info(caplog):
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    app = make_app(FakeAgent(), ServerConfig(trusted_proxy="10.0.0.1"))
    access = ops.AccessLogger(logging.getLogger("aiohttp.access"), "")
    probe = make_mocked_request("GET", "/api/health?token=T", app=app)
    chat = make_mocked_request("GET", "/api/chat?token=T", app=app)
    for req in (probe, chat):
        access.log(req, web.Response(status=200), 0.001)
    levels = {r.getMessage().split('"')[1]: r.levelno for r in caplog.records}
    assert levels == {"GET /api/health": logging.DEBUG, "GET /api/chat": logging.INFO}
    assert "token" not in caplog.text


async def test_a_malformed_request_is_one_warning_without_its_token(caplog):
    """(was: aiohttp's ERROR with a traceback quoting `GET /api/chat?token=s3cr%2Bt...`; then, with
    `kame serve`'s access logger, which the test's server did not have, an ERROR "Unhandled
    exception" from that logger for each malformed request)"""
    caplog.set_level(logging.DEBUG)
    app = make_app(FakeAgent(), ServerConfig(auth_token="s3cr+t&x"))
    runner = web.AppRunner(app, access_log_class=ops.AccessLogger)  # (as `kame serve`'s web.run_app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"GET /api/chat?token=s3cr%2Bt%26x\x01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        assert b" 400 " in await reader.readline()
        writer.close()
    finally:
        await runner.cleanup()
    assert "s3cr" not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    bad = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(bad) == 1 and bad[0].levelno == logging.WARNING and bad[0].exc_info is None
    assert "malformed request (HTTP 400)" in bad[0].getMessage() and "/api/chat?…" in bad[0].getMessage()
    assert [r.levelno for r in caplog.records if r.name == "aiohttp.access"] == [logging.INFO]  # (was: lost)


def test_redact_cuts_query_strings_only():
    assert redact("b'GET /api/chat?token=abc&pcm=1 HTTP/1.1'") == "b'GET /api/chat?… HTTP/1.1'"
    assert redact("is it up? yes") == "is it up? yes"


def test_verbose_is_taken_after_the_command_too():
    from kame.cli import _build_parser

    for argv, verbose in ((["serve", "-v"], True), (["-v", "serve"], True), (["serve"], False),
                          (["serve", "--agent", "echo", "--verbose"], True), (["bench", "step", "-v"], True)):
        parser, _ = _build_parser(argv)
        assert parser.parse_args(argv).verbose is verbose, argv


def test_trusted_proxy_option_is_checked_before_the_agent_loads():
    import argparse

    from kame.server.app import add_arguments

    parser = argparse.ArgumentParser(prog="kame serve")
    add_arguments(parser)
    assert _build(parser.parse_args(["--agent", "echo", "--trusted-proxy", "::1,10.0.0.0/8"]))[1].trusted_proxy
    with pytest.raises(ConfigError, match="not an IP address or network"):
        _build(parser.parse_args(["--agent", "echo", "--trusted-proxy", "my-proxy"]))


# ---- the page behind a path prefix ---------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_the_page_connects_relative_to_its_own_address():
    """(was: wss://example.org/api/chat, a 404 behind a proxy serving the page under /kame/)"""
    js = textwrap.dedent("""
        const src = require("fs").readFileSync(process.argv[1], "utf8");
        const fn = src.match(/function wsUrl\\([^)]*\\) \\{[\\s\\S]*?\\n\\}/)[0];
        const out = {};
        for (const href of process.argv.slice(2)) {
          globalThis.location = new URL(href);
          out[href] = eval("(" + fn + ")")();
        }
        console.log(JSON.stringify(out));
    """)
    pages = ["https://example.org/kame/?token=T", "http://127.0.0.1:8998/", "http://h/a/b/?token=a%2Bb%26c&x=1"]
    got = json.loads(subprocess.run(["node", "-e", js, str(STATIC_DIR / "app.js"), *pages], check=True,
                                    capture_output=True, text=True).stdout)
    assert got == {
        "https://example.org/kame/?token=T": "wss://example.org/kame/api/chat?pcm=1&token=T",
        "http://127.0.0.1:8998/": "ws://127.0.0.1:8998/api/chat?pcm=1",
        "http://h/a/b/?token=a%2Bb%26c&x=1": "ws://h/a/b/api/chat?pcm=1&token=a%2Bb%26c",
    }


def test_the_page_names_no_absolute_path():
    """Every URL in the page's files is relative (a string starting with "/x" is not)."""
    import re

    for f in ("app.js", "index.html", "pcm-worklet.js", "style.css"):
        assert re.findall(r"[\"'`]/\w", (STATIC_DIR / f).read_text()) == [], f


def test_the_closed_line_says_who_closed():
    from types import SimpleNamespace as NS

    conn = NS(client_close=None, client_closed=False, lost=None, close_code=1008, close_reason="no audio for 30 s",
              ended_by=None)
    assert ops.ending(conn) == "closed by the server (1008 no audio for 30 s)"
    assert ops.ending(NS(**{**vars(conn), "client_close": (1001, "going away")})) == "closed by the client (1001 going away)"
    assert ops.ending(NS(**{**vars(conn), "lost": "Cannot write to closing transport"})) == \
        "the connection was lost (Cannot write to closing transport)"
    # a client the server reset because it stopped reading: its socket then reads as closed (was: "lost")
    reset = NS(**{**vars(conn), "client_closed": True, "close_reason": "client stopped reading",
                  "ended_by": ops.STOPPED_READING})
    assert ops.ending(reset) == "closed by the server (reset, no close frame: the client stopped reading)"
    assert ops.closed_how(reset) == "error"


def test_trusted_proxy_is_a_config_key():
    """(was: --trusted-proxy only; '--set server.trusted_proxy=...' an unknown key)"""
    from kame.config import load_config
    from kame.server.app import server_config_from

    cfg = load_config(None, {"server.trusted_proxy": "10.0.0.0/8"})
    assert server_config_from(cfg.server).trusted_proxy == "10.0.0.0/8"


async def test_a_plugin_session_whose_outputs_has_no_aclose_is_served(caplog):
    """(review, helper-82) a session whose outputs() is a plain async iterator (the Session
    interface asks no more): the pump's aclosing() failed with AttributeError at every end, so
    the connection was logged as failed instead of ending with session_ended."""

    class PlainOutputs:
        def __init__(self, q):
            self.q = q

        def __aiter__(self):
            return self

        async def __anext__(self):
            item = await self.q.get()
            if item is None:
                raise StopAsyncIteration
            return item

    class PlainSession(FakeSession):
        def outputs(self):
            return PlainOutputs(self.out)

    class PlainAgent(FakeAgent):
        async def open_session(self, session_id=None) -> Session:
            s = PlainSession(session_id or "p1")
            self.sessions.append(s)
            return s

    agent = PlainAgent()
    async with running_server(agent=agent) as (url, _), aiohttp.ClientSession() as http:
        ws = await _open(http, url)
        agent.sessions[0].out.put_nowait(None)  # the agent ends the session
        kinds = []
        while not kinds or kinds[-1][0] != P.Kind.ERROR:  # (the info Meta comes first)
            kinds.append(P.decode((await ws.receive(timeout=10)).data))
        assert b"session_ended" in bytes(kinds[-1][1])
        await ws.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_empty_or_blank_token_is_not_silently_no_auth():
    """--token "" (a unit's `--token ${UNSET}`) is refused (was: served without auth); an empty
    KAME_AUTH_TOKEN is unset, a blank one an error; tokens are stripped as the token file's."""
    for given in ("", "   "):
        with pytest.raises(ConfigError, match=r"--token '\s*': a blank token .*omit --token to serve without one"):
            ops.cli_token(given, None, {})
        with pytest.raises(ConfigError, match="a blank token"):
            ops.cli_token(given, None, {"KAME_AUTH_TOKEN": "from-env"})
    assert ops.cli_token(None, None, {"KAME_AUTH_TOKEN": ""}) is None
    assert ops.cli_token(None, None, {}) is None
    with pytest.raises(ConfigError, match="KAME_AUTH_TOKEN '  ': a blank token .*unset it"):
        ops.cli_token(None, None, {"KAME_AUTH_TOKEN": "  "})
    assert ops.cli_token(None, None, {"KAME_AUTH_TOKEN": " s3cret\n"}) == "s3cret"
    assert ops.cli_token(" s3cret ", None, {"KAME_AUTH_TOKEN": "other"}) == "s3cret"


def test_the_configs_token_is_stripped_and_kame_client_sends_it_stripped():
    """(review helper-262) [server] auth_token: stripped, a blank one refused (was: auth on with a
    token of blanks); kame client strips its --token as the server strips the one it serves with."""
    from kame.server.client import chat_url
    from kame.server.settings import server_config_from

    assert server_config_from({"auth_token": " s3cret\n"}).auth_token == "s3cret"
    assert server_config_from({"auth_token": ""}).auth_token is None
    with pytest.raises(ConfigError, match=r"server.auth_token '  ': a blank token .*leave it unset \(or empty\) to serve without one"):
        server_config_from({"auth_token": "  "})
    assert chat_url("http://h:1", " s3cret ").endswith("?token=s3cret")


def test_serve_with_a_full_stdout_goes_on_serving(tmp_path):
    """`kame serve > /dev/full`: its start-up lines are logged instead and it serves (was: a
    traceback that ended it, or with --agent echo an asyncio "Task exception was never
    retrieved" at its stop)."""
    import os
    import queue
    import re
    import signal
    import threading
    import urllib.request

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen([sys.executable, "-m", "kame", "serve", "--agent", "echo", "--port", "0"],
                                stdout=full, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr] and None, daemon=True)
    reader.start()
    try:
        seen, m = [], None
        while m is None:
            try:
                seen.append(lines.get(timeout=30))
            except queue.Empty:
                raise AssertionError("no 'cannot write to standard output' line: " + "".join(seen)) from None
            m = re.search(r"cannot write to standard output \(No space left on device\): serving on "
                          r"(http://127\.0\.0\.1:\d+/)", seen[-1])
        with urllib.request.urlopen(m[1] + "api/health", timeout=10) as r:
            assert json.load(r)["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    proc.stderr.close()
    rest = "".join(lines.queue)
    assert "Traceback" not in rest and "never retrieved" not in rest and "kame: error" not in rest


def test_a_failing_ready_hook_is_logged_not_left_in_the_load_task(caplog):
    """(was: the task's exception "never retrieved", shown by asyncio only at the server's stop)"""
    class Started:
        async def start(self):
            pass

    def full():
        raise OSError(28, "No space left on device")

    async def go():
        health = ops.Health()
        health.on_ready = full
        health.begin_loading(Started())
        await health.wait_loaded()
        return health._task

    with caplog.at_level(logging.ERROR, "kame.server"):
        task = asyncio.run(go())
    assert task.exception() is None and "after the agent's start" in caplog.text and "No space left" in caplog.text
