"""`kame serve`: the aiohttp app serving the WebSocket API (/api/chat) and the browser page.

    kame serve                                 # the configured agent on 127.0.0.1:8998
    kame serve --agent echo --port 8998        # diagnostic echo agent, no model needed
    kame serve --token SECRET --host 0.0.0.0   # require "Authorization: Bearer SECRET" or ?token=
    kame serve --token-file /run/secrets/kame  # the same, the token kept out of `ps`

Routes: GET / (the page), GET /<file> (src/kame/server/static only), GET /api/health (JSON) and
/api/metrics (Prometheus; kame.server.ops), GET /api/chat (WebSocket, protocol in docs/protocol.md).

Per connection: one task reads the socket (Opus/PCM -> session.push_audio; Opus decoded on a thread), one pumps
session.outputs() into a bounded send queue (Opus encoded on a thread), one writes the queue to the
socket, one watches for idleness. A slow client only fills its own queue: the oldest audio is
dropped first; when nothing droppable is left the connection is closed with an error. Limits
(max sessions, message size, idle timeout, auth) are in ServerConfig.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import mimetypes
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from ..cliargs import Once, at_least
from ..errors import ConfigError, KameError, NotAvailableError
from ..paths import local_path
from ..runtime.base import Agent, AgentAudio, AgentText, CapacityError, ErrorEvent, Meta, Session
from ..runtime.clock import Clock, MonotonicClock, cancel_within
from ..runtime.runreport import OPUS_FAILED
from . import guard, httplog, ops
from . import protocol as P
from .guard import SendQueue, SlowClient  # noqa: F401 (SendQueue: also kame.server.app's, as before)
from .ops import SERVER_KEY, listen_socket  # (SERVER_KEY: also kame.server.app's, as before)
from .settings import ServerConfig, echo_server_config, server_config_from  # noqa: F401 (also kame.server.app's)

log = logging.getLogger("kame.server")
STATIC_DIR = Path(__file__).parent / "static"
OPUS_THREADS = 4  # Opus decoding and encoding for all sessions (each: one message / one chunk at a time)


class Connection:
    """One WebSocket client bound to one agent Session."""

    def __init__(self, server: "Server", ws: web.WebSocketResponse, session: Session, pcm_out: bool, transport=None) -> None:
        self.server, self.ws, self.session, self.pcm_out = server, ws, session, pcm_out
        self.transport = transport
        self.cfg = server.cfg
        self.queue = SendQueue(self.cfg.send_queue_messages)
        self.decoder = P.OpusDecoder()
        self.encoder = P.OpusEncoder()
        self.opened = server.clock.now()
        self.budget = guard.AudioBudget(server.clock, self.cfg.audio_burst_s)  # past real time + a burst: dropped
        self.decoding: Future | None = None  # the last Opus decode (on the server's Opus threads)
        self.encoding: Future | None = None  # the last Opus encode (the same)
        self.encode_errors = 0  # failed encodes; the client and the log hear of the first of a run of them
        self.encode_failing = False
        self.activity = guard.AudioActivity(server.clock, self.cfg.idle_timeout_s or 0.0,  # (the idle timeout)
                                            self.cfg.idle_audio_share)
        self.started = time.monotonic()  # (for the "closed after" log line)
        self.view = ops.SessionView()  # back-end components down, last stats (for health and the log)
        self.errors = 0
        self.send_started: float | None = None  # clock time of the send in progress
        self.client_closed = False
        self.session_closing: asyncio.Future | None = None  # the session's close(), started when the client closed
        self.pump: asyncio.Task | None = None  # run()'s task reading the session's outputs
        self.client_close: tuple[int, str] | None = None  # the client's close code and reason
        self.lost: str | None = None  # why the connection broke, if it did
        self.ended_by: str | None = None  # the fatal error's code, if the server sent one
        self.close_code, self.close_reason = WSCloseCode.OK, "bye"

    def send_error(self, code: str, message: str, fatal: bool = False) -> None:
        self.queue.put(P.error(code, message, fatal))

    async def run(self) -> None:
        self.queue.put(P.handshake())
        self.queue.put(P.metadata({
            "type": "info", "session": self.session.id, "sample_rate": P.SAMPLE_RATE,
            "audio_out": "pcm" if self.pcm_out else "opus", "protocol": P.PROTOCOL_VERSION,
            "max_message_bytes": self.cfg.max_message_bytes, "idle_timeout_s": self.cfg.idle_timeout_s,
            "idle_audio_share": self.cfg.idle_audio_share, "max_session_s": self.cfg.max_session_s,
            "t0": self.opened,  # the session's start on the clock of every "t": a client's anchor for offsets
        }))
        reader = asyncio.create_task(self._read(), name=f"ws-read-{self.session.id}")
        self.pump = asyncio.create_task(self._pump(), name=f"ws-pump-{self.session.id}")
        tasks = [
            reader,
            self.pump,
            asyncio.create_task(self._write(), name=f"ws-write-{self.session.id}"),
            asyncio.create_task(self._watch(), name=f"ws-idle-{self.session.id}"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    exc = t.exception()
                    if isinstance(exc, SlowClient):
                        log.warning("connection %s closed: %s", self.session.id, exc)
                        self.close_code, self.close_reason = WSCloseCode.POLICY_VIOLATION, str(exc)
                    elif isinstance(exc, ConnectionError):  # the client went away mid-send
                        log.info("connection %s lost: %s", self.session.id, exc)
                        self.lost = str(exc) or type(exc).__name__
                    else:
                        log.error("connection %s failed: %r", self.session.id, exc, exc_info=exc)
                        try:
                            self._fatal("internal_error", f"server error: {type(exc).__name__}", WSCloseCode.INTERNAL_ERROR)
                        except SlowClient:
                            self.close_code, self.close_reason = WSCloseCode.INTERNAL_ERROR, "server error"
            # Stop producing, then let the writer flush what is queued (e.g. the final error),
            # bounded by 1 s, unless the writer is what stopped.
            others, writer = tasks[:2] + tasks[3:], tasks[2]
            for t in others:
                t.cancel()
            await asyncio.wait(others, timeout=5)
            deadline = time.monotonic() + 1.0
            while len(self.queue) and time.monotonic() < deadline and not writer.done() and not self.ws.closed \
                    and not self.client_closed:
                await asyncio.sleep(0.01)
        finally:
            left = await cancel_within(tasks, 5)  # never hang the handler on a task that ignores cancellation
            if left:
                log.error("connection %s: tasks did not stop within 5 s of their cancellation: %s", self.session.id,
                          ", ".join(t.get_name() for t in left))
            for work in (self.decoding, self.encoding):  # the reader or pump was cancelled mid-decode/encode:
                if work is not None and not work.done():  # no decode or encode outlives the connection
                    await asyncio.wait([asyncio.wrap_future(work)], timeout=5)
            if self.session_closing is not None:  # the client's close is answered once its session is closed
                await asyncio.wait([self.session_closing], timeout=2)
            if not self.ws.closed:
                reason = self.close_reason.encode("utf-8", "replace")[:120].decode("utf-8", "ignore").encode()
                await guard.close_ws(self.ws, self.transport, self.close_code, reason)  # (not read: TCP dropped)
            else:  # (closed by aiohttp, e.g. 1009: what it sent may be unread)
                guard.drop_unsent(self.transport)

    async def _end_session(self) -> None:
        """The client closed: stop reading the session's outputs first (nobody reads what it would
        flush, a cascade's last transcript, and its end is not taken for the agent's), then close it."""
        if self.pump is not None:
            self.pump.cancel()
            await asyncio.wait([self.pump], timeout=5)  # (a plugin's outputs that ignore it: close anyway)
        await self.session.close()

    def _fatal(self, code: str, message: str, ws_code: int) -> None:
        self.send_error(code, message, fatal=True)
        self.close_code, self.close_reason, self.ended_by = ws_code, message, code

    async def _read(self) -> None:
        cfg = self.cfg
        while True:
            # aiohttp returns buffered messages without suspending: without this yield a client's
            # flood (thousands of tiny messages, or 10 s Opus ones) would hold every session's ticker
            await asyncio.sleep(0)
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                self.client_closed = True
                if msg.type == WSMsgType.CLOSE:  # (for the log line)
                    self.client_close = (msg.data, getattr(msg, "extra", None) or "")
                # the session is closed before the close is answered (run() answers it: autoclose is
                # off), so a client that reconnects as soon as its close completes finds its place
                # free; in a task of its own (run() cancels this reader once the pump has ended)
                self.session_closing = asyncio.ensure_future(self._end_session())
                return
            if msg.type == WSMsgType.ERROR:  # e.g. message beyond the hard size limit (aiohttp closed 1009)
                code = getattr(msg.data, "code", None) or self.ws.close_code  # (ws says 1006 after aiohttp's 1009)
                self.close_code, self.close_reason = code or WSCloseCode.PROTOCOL_ERROR, guard.hard_limit_said(cfg, msg.data)
                log.warning("connection %s closed (%s): %s", self.session.id, self.close_code, self.close_reason)
                return
            try:
                if msg.type == WSMsgType.TEXT:
                    raise P.ProtocolError("text_frame", "text WebSocket frames are not part of the protocol; send binary messages")
                if len(msg.data) > cfg.max_message_bytes:
                    raise P.ProtocolError(
                        "message_too_large", f"message of {len(msg.data)} bytes exceeds the limit of {cfg.max_message_bytes}; dropped"
                    )
                await self._handle(*P.decode(msg.data))
            except P.ProtocolError as exc:
                self.errors += 1
                if self.errors >= cfg.max_errors:
                    self._fatal("too_many_errors", f"{self.errors} protocol errors; closing (last: {exc})", WSCloseCode.POLICY_VIOLATION)
                    return
                await self.queue.put_when_room(P.error(exc.code, str(exc), False))

    async def _handle(self, kind: P.Kind, payload: bytes) -> None:
        # a message is checked (whole, at most 10 s) before it is charged to the budget: a bad one
        # is a protocol error even past the budget, and costs none of it
        if kind == P.Kind.AUDIO:
            pages = P.ogg_pages(payload) if payload else []  # (empty: decode's bad_audio)
            if not self._budget(self.decoder.held(pages) / P.SAMPLE_RATE):
                return
            # off the loop (10 s of Opus take ~30 ms); awaited before the next read: the client's order
            self.decoding = self.server.opus_pool.submit(self.decoder.decode, payload, pages)
            pcm = await asyncio.wrap_future(self.decoding)
        elif kind == P.Kind.PCM:
            if not self._budget(P.pcm16_samples(payload) / P.SAMPLE_RATE):
                return
            pcm = P.pcm16_decode(payload)
        elif kind == P.Kind.PING:
            await self.queue.put_when_room(P.encode(P.Kind.PING, P.parse_ping(payload)))  # an over-long one: bad_ping
            return
        elif kind == P.Kind.CONTROL:
            P.parse_control(payload)  # validated; full-duplex streaming has no turns to control
            return
        else:
            raise P.ProtocolError("unexpected_kind", f"kind 0x{int(kind):02x} ({kind.name}) is not sent by clients")
        self.activity.add(len(pcm) / P.SAMPLE_RATE)
        if len(pcm):
            try:
                await self.session.push_audio(pcm)
            except KameError as exc:  # e.g. AudioFormatError from the session: drop, go on
                raise P.ProtocolError("bad_audio", f"audio rejected by the agent: {exc}") from None

    def _budget(self, seconds: float) -> bool:
        """Whether audio of ``seconds`` fits the client's budget (real time plus a burst); if not,
        it is dropped undecoded, counted in the stats' dropped_input_s (as an agent's backlog is)."""
        if self.budget.take(seconds):
            return True
        if self.budget.dropped_messages == 1:
            log.warning("connection %s: client audio comes faster than real time (over %g s ahead); dropping the "
                        "excess undecoded (counted in stats dropped_input_s)", self.session.id, self.budget.burst_s)
        return False

    async def _pump(self) -> None:
        # (aclosing: a pump cancelled because its client left stops reading at once, so a cascade
        # session's close() does not wait to flush a last transcript for nobody)
        outputs = self.session.outputs()
        try:
            await self._forward(outputs)
        finally:  # (a plain async iterator of a plugin's session may have no aclose)
            if hasattr(outputs, "aclose"):
                await outputs.aclose()
        self._fatal("session_ended", "the agent ended the session", WSCloseCode.OK)

    async def _forward(self, outputs) -> None:
        reported = 0
        async for out in outputs:
            out = ops.for_client(out, self.session.id)  # (the client gets short errors; the detail is logged)
            if self.queue.dropped != reported:  # tell the client (droppable itself)
                reported = self.queue.dropped
                self.queue.put(P.metadata({"type": "dropped", "count": reported}), droppable=True)
            report = self.budget.report(self.session.id)  # input the server dropped (above)
            if report is not None:
                self.queue.put(P.metadata(report), droppable=True)
            if isinstance(out, AgentAudio):
                # Agents emit 80 ms frames in real time; a longer chunk is sent frame by frame,
                # yielding to the loop between frames (the writer sends as they come).
                pcm = np.asarray(out.pcm, dtype=np.float32).reshape(-1)
                if self.pcm_out:
                    for i in range(0, len(pcm), P.OPUS_FRAME):
                        self.queue.put(P.encode(P.Kind.PCM, P.pcm16_encode(pcm[i : i + P.OPUS_FRAME])), droppable=True)
                else:
                    for n, pages in enumerate(await self._encode(pcm)):
                        if n:
                            await asyncio.sleep(0)
                        self.queue.put(P.encode(P.Kind.AUDIO, pages), droppable=True)
            elif isinstance(out, AgentText):
                self.queue.put(P.encode(P.Kind.TEXT, out.text))
            elif isinstance(out, Meta):
                data = self.budget.merged(out.data)  # (stats: with the input the server dropped)
                self.view.note(data)
                self.queue.put(P.metadata(data))
            elif isinstance(out, ErrorEvent):
                self.send_error("agent_error", out.message)

    async def _encode(self, pcm: np.ndarray) -> list[bytes]:
        """Each 80 ms frame's Ogg/Opus pages, encoded off the loop (as decoding is), awaited before the
        session's next output (their order). A failure, as a decode's: the chunk is dropped, the
        encoder reset (a new stream), the client told (non-fatal) and the session goes on."""
        self.encoding = self.server.opus_pool.submit(self.encoder.frame_pages, pcm)
        try:
            pages = await asyncio.wrap_future(self.encoding)
        except Exception as exc:  # (not a cancellation: the pump's end, the encode left to run() above)
            self.encode_errors += 1
            self.encoder.reset()
            if not self.encode_failing:  # (a failure that repeats is said once, not 12 times a second)
                self.encode_failing = True
                log.error("connection %s: Opus encoding of the agent's audio failed (%d so far): %r",
                          self.session.id, self.encode_errors, exc, exc_info=self.encode_errors == 1)
                self.send_error("agent_error", f"{OPUS_FAILED} the agent's audio "
                                f"({type(exc).__name__}); dropped until it can, each time with a new Ogg stream; "
                                "see the server log")
            return []
        if self.encode_failing:
            self.encode_failing = False
            log.warning("connection %s: Opus encoding works again (%d chunk(s) dropped in all)", self.session.id,
                        self.encode_errors)
        return pages

    async def _write(self) -> None:
        # No asyncio.wait_for here: on Python < 3.12 it can swallow a cancellation. A send that
        # blocks too long (client not reading) is detected by _watch instead.
        while True:
            data = await self.queue.get()
            self.send_started = self.server.clock.now()
            await self.ws.send_bytes(data)
            self.send_started = None

    async def _watch(self) -> None:
        """Closes idle connections (too little client audio: guard.AudioActivity), sessions open for
        max_session_s, and clients whose socket stopped reading."""
        timeout = self.cfg.idle_timeout_s if self.cfg.idle_timeout_s and self.cfg.idle_timeout_s > 0 else float("inf")
        limit = self.cfg.max_session_s if self.cfg.max_session_s and self.cfg.max_session_s > 0 else float("inf")
        clock = self.server.clock
        period = max(0.05, min(timeout / 4, self.cfg.send_timeout_s / 4, 1.0))
        while True:
            now = clock.now()
            idle = self.activity.idle()
            if idle:
                self._fatal("idle_timeout", idle, WSCloseCode.POLICY_VIOLATION)
                return
            if now - self.opened >= limit:
                self._fatal("session_limit", f"the session reached the server's limit of {limit:g} s; "
                            "connect again to go on", WSCloseCode.POLICY_VIOLATION)
                return
            if self.send_started is not None and now - self.send_started >= self.cfg.send_timeout_s:
                log.warning("connection %s dropped: the client stopped reading (a send waited %g s)",
                            self.session.id, self.cfg.send_timeout_s)
                self.close_code, self.close_reason = WSCloseCode.POLICY_VIOLATION, "client stopped reading"
                if self.transport is not None:
                    self.transport.abort()
                return
            await clock.sleep(min(period, max(0.01, limit - (now - self.opened))))  # (idle: checked each period)


class Server:
    """Holds the agent, the config and the live connections of one app."""

    def __init__(self, agent: Agent, cfg: ServerConfig, clock: Clock | None = None) -> None:
        self.agent, self.cfg = agent, cfg
        self.clock = clock or MonotonicClock()
        self.connections: set[Connection] = set()
        self.started = time.monotonic()
        self.total_sessions = 0
        self.metrics = ops.Metrics()  # (/api/metrics)
        self.static = _load_static(local_path(cfg.static_dir) if cfg.static_dir else STATIC_DIR)
        self.trusted = ops.parse_trusted(cfg.trusted_proxy)
        self.health_state = ops.Health()  # (also the agent's start in the background)
        self.allowed_origins = guard.parse_origins(cfg.allowed_origins)
        self.allowed_hosts = guard.parse_hosts(cfg.allowed_hosts)
        self.loopback = guard.is_loopback_name(cfg.host)  # (then Host is checked: DNS rebinding)
        # another bind without a token: Host is checked too, against IPs and these names (None: not checked)
        self.own_names = None if self.loopback or cfg.auth_token else guard.own_names(cfg.host)
        guard.log_host_names(self.own_names, self.allowed_hosts)
        self.slots = guard.ClientSlots(cfg.max_sessions_per_client or 0)
        self.refusals_logged = 0
        self.opus_pool = ThreadPoolExecutor(OPUS_THREADS, thread_name_prefix="kame-opus")  # (threads: on use)

    def authorized(self, request: web.Request) -> bool:
        token = self.cfg.auth_token
        if not token:
            return True
        given = request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        try:  # (a header's non-UTF-8 bytes come as surrogates: a wrong token, not a server error)
            return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            return False

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request):
            return ops.refuse(self, ops.UNAUTHORIZED, status=401, headers=ops.UNAUTHORIZED_HEADERS)
        forbidden = guard.refuse_origin(request, self)
        if forbidden is not None:
            return forbidden
        if self.health_state.loading:
            return ops.refuse(self, {"error": "loading", "message": f"the agent is still loading ({guard.loads(self.agent)}"
                                     "); try again in a few seconds"}, status=503, headers={"Retry-After": "5"})
        ws = web.WebSocketResponse(
            max_msg_size=guard.hard_limit(self.cfg) + 1, compress=False, heartbeat=None,  # (aiohttp: >= is too big)
            timeout=2.0, autoclose=False,  # (a client's close is answered once its session is closed: Connection._read)
        )
        if (wrong_version := guard.refuse_version(request)) is not None:  # (aiohttp also takes versions 7, 8)
            return wrong_version
        if not ws.can_prepare(request).ok:
            return web.json_response({"error": "not_websocket", "message": "/api/chat needs a WebSocket upgrade (GET with "
                                      "Upgrade: websocket, Sec-WebSocket-Version: 13 and a valid Sec-WebSocket-Key)"},
                                     status=400)
        client = ops.client_address(request, self.trusted)
        if not self.slots.take(client):
            n = self.slots[client]
            return ops.refuse(self, {"error": "too_many_sessions", "message": f"this client ({client}) already has "
                                     f"{n} session{'s' if n != 1 else ''} open, the server's limit per client "
                                     f"(server.max_sessions_per_client); close one first"}, status=429,
                              headers={"Retry-After": "5"})
        try:
            return await self._chat(request, ws)
        finally:
            self.slots.give_back(client)

    async def _chat(self, request: web.Request, ws: web.WebSocketResponse) -> web.StreamResponse:
        try:
            session = await self.agent.open_session()
        except CapacityError as exc:
            return ops.refuse(self, {"error": "capacity", "message": str(exc)}, status=503, headers={"Retry-After": "5"})
        except KameError as exc:  # e.g. the agent could not start (missing weights)
            log.error("cannot open a session: %s", exc)
            return ops.refuse(self, {"error": "agent_unavailable", "message": str(exc)}, status=503,
                              headers={"Retry-After": "5"})
        self.total_sessions += 1
        conn = None
        try:
            try:
                await ws.prepare(request)
            except ConnectionError as exc:  # the client left during its upgrade (a port scan, a flaky network)
                log.info("a client left during the WebSocket upgrade: %s", exc)
                return web.Response(status=400)  # (aiohttp's attempt to send it fails quietly)
            pcm_out = request.query.get("pcm", "0") in ("1", "true", "yes")
            conn = Connection(self, ws, session, pcm_out=pcm_out, transport=request.transport)
            self.connections.add(conn)
            ops.log_opened(self, request, session.id)
            await conn.run()
        finally:
            try:  # close the session first: once a connection is gone, so is its session
                await (conn.session_closing if conn is not None and conn.session_closing is not None
                       else session.close())
            finally:
                if conn is not None:
                    self.connections.discard(conn)
                    ops.closed(conn)
        return ws

    async def health(self, request: web.Request) -> web.Response:
        status, body = ops.health(self)
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        if name not in self.static:
            raise web.HTTPNotFound(text="not found")
        body, ctype = self.static[name]
        return web.Response(body=body, content_type=ctype, headers={"Cache-Control": "no-cache"})

    async def on_shutdown(self, app: web.Application) -> None:
        log.info("shutting down: closing %d session(s)", len(self.connections))
        for conn in list(self.connections):
            conn.close_code, conn.close_reason = WSCloseCode.GOING_AWAY, ops.SHUTDOWN_REASON
            await guard.close_ws(conn.ws, conn.transport, WSCloseCode.GOING_AWAY, ops.SHUTDOWN_REASON.encode())

    async def on_cleanup(self, app: web.Application) -> None:
        # (after on_shutdown and the handlers' end: each connection waited for its own decode and encode)
        self.opus_pool.shutdown(wait=False, cancel_futures=True)


def _load_static(folder: Path) -> dict[str, tuple[bytes, str]]:
    """The page's files, read once: regular files directly in ``folder`` (no symlinks, no
    subfolders), so requests can only ever name one of these, never a path."""
    files = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_symlink() or not p.is_file() or p.name.startswith("."):
                continue
            ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
            if p.suffix == ".js":
                ctype = "text/javascript"
            files[p.name] = (p.read_bytes(), ctype)
    return files


def make_app(agent: Agent, cfg: ServerConfig | None = None, clock: Clock | None = None, manage_agent: bool = False,
             load_in_background: bool = False) -> web.Application:
    """The aiohttp app. With ``manage_agent`` the app starts/stops the agent with itself; with
    ``load_in_background`` too, it serves while the agent starts (503 "loading" until then)."""
    server = Server(agent, cfg or ServerConfig(), clock)
    httplog.install_log_filters()
    app = web.Application(client_max_size=1 << 16, middlewares=[guard.host_guard],
                           handler_args={"logger": httplog.HttpLog()})  # (malformed requests: a WARNING)
    app[SERVER_KEY] = server
    app.router.add_get("/api/chat", server.chat)
    app.router.add_get("/api/health", server.health)
    app.router.add_get(ops.METRICS_PATH, ops.metrics_handler(server))
    app.router.add_get("/", server.static_file)
    app.router.add_get("/{name}", server.static_file)
    app.on_shutdown.append(server.on_shutdown)
    app.on_cleanup.append(server.on_cleanup)
    if manage_agent:
        async def _start(_):
            if load_in_background:
                server.health_state.begin_loading(agent)
            else:
                await agent.start()

        async def _stop(_):
            await server.health_state.end_loading()
            await agent.stop()
        app.on_startup.append(_start)
        app.on_cleanup.append(_stop)
    return app


# ---- CLI ------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--config", default=None, action=Once,
                        help="kame TOML config (its [server] section sets the defaults below)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="config override, repeatable")
    parser.add_argument("--agent", default="config", choices=["config", "echo"],
                        help="'config': the agent the config builds (tandem/cascade); 'echo': diagnostic echo, no model")
    parser.add_argument("--mode", default=None, choices=["tandem", "cascade"], help="override the config's mode")
    parser.add_argument("--host", default=None, help="address to bind, default: [server] host, 127.0.0.1 (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=None, help="default: [server] port, 8998; 0: any free port")
    parser.add_argument("--token", default=None, help="require this bearer token (also KAME_AUTH_TOKEN)")
    parser.add_argument("--token-file", default=None, metavar="PATH", action=Once,
                        help="require the bearer token in this file (kept out of `ps`; [server] auth_token_file)")
    parser.add_argument("--trusted-proxy", default=None, metavar="ADDRS",
                        help="your reverse proxies' addresses/networks, comma-separated ([server] trusted_proxy). "
                             "From them, X-Forwarded-For gives the client address (log, max_sessions_per_client), "
                             "X-Forwarded-Host/-Proto the page's origin (the browser's Origin check), and a "
                             "forwarded request skips the Host check (docs/protocol.md, reverse proxy)")
    parser.add_argument("--max-sessions", type=at_least(1), default=None,
                        help="echo agent only, default 16 (others: [runtime] max_sessions in the config)")
    parser.epilog, parser.formatter_class = ops.SERVE_EPILOG, argparse.RawDescriptionHelpFormatter


def _build(args) -> tuple[Agent, ServerConfig]:
    import os

    token = ops.cli_token(args.token, getattr(args, "token_file", None), os.environ)  # (a bad file: before all else)
    if args.agent == "echo":
        from .echo import EchoAgent

        if args.mode:  # (the echo agent has no modes)
            raise ConfigError(f"--mode {args.mode} is for the configured agent; --agent echo only echoes")

        cfg, agent = echo_server_config(args.config, args.overrides), EchoAgent(max_sessions=args.max_sessions or 16)
    else:
        if args.max_sessions is not None:  # the tandem/cascade agents size their batch from the config
            raise ConfigError("--max-sessions is for --agent echo; give the agent's with "
                              "--set runtime.max_sessions=N (or [runtime] max_sessions in the config)")
        try:
            from ..config import config_from_args
            from ..runtime.engine import build_agent
        except ImportError as exc:
            raise NotAvailableError(
                f"the configured agent cannot be built yet ({exc}); use `kame serve --agent echo` to check the server"
            ) from None
        config = config_from_args(args)  # (--mode applied last: it wins over --set mode=)
        cfg, agent = server_config_from(getattr(config, "server", None)), build_agent(config)
    if args.host:
        cfg.host = args.host
    if args.port is not None:  # 0: any free port
        cfg.port = args.port
    cfg.auth_token = token or cfg.auth_token
    cfg.trusted_proxy = getattr(args, "trusted_proxy", None) or cfg.trusted_proxy
    ops.parse_trusted(cfg.trusted_proxy)  # (a bad one is named before the agent loads)
    return agent, cfg


def main(args) -> int:
    agent, cfg = _build(args)
    sock = listen_socket(cfg.host, cfg.port)
    port = sock.getsockname()[1]  # the one bound (--port 0: chosen by the system)
    app = make_app(agent, cfg, manage_agent=True, load_in_background=True)
    state, stopping = app[SERVER_KEY].health_state, ops.Stopping()
    if (unsafe := guard.bind_warning(cfg)):
        log.warning("%s", unsafe)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host  # an IPv6 address, as a URL writes it

    async def listen(_app) -> None:  # (first hook: before the agent's start begins)
        # listen now, while the agent loads: health probes get 503 "loading", not "connection refused"
        sock.listen(128)
        stopping.install()  # (Ctrl-C: exit status 130)
        if args.agent != "echo":
            print(f"kame: loading the agent ({guard.loads(agent)}: can take half a minute); meanwhile "
                  f"http://{host}:{port}/api/health answers 503 \"loading\" ...", flush=True)

    def announce() -> None:  # once the agent has started
        comps = getattr(agent, "components", {})
        what = ", ".join(f"{k} {comps[k]}" for k in ("mode", "frontend", "codec", "stt", "llm", "tts") if comps.get(k))
        if what:
            print(f"kame: agent ready: {what}", flush=True)
        if comps.get("frontend_note"):
            print(f"kame: note: {comps['frontend_note']}", flush=True)
        print(f"kame: serving on http://{host}:{port}/ (WebSocket /api/chat)", flush=True)

    def failed(_exc) -> None:  # the agent could not start: stop serving (as a signal would); raised below
        asyncio.get_running_loop().call_soon(_graceful_exit)

    state.on_ready, state.on_failed = announce, failed
    app.on_startup.insert(0, listen)
    try:
        web.run_app(app, sock=sock, print=None, handle_signals=True, access_log_class=ops.AccessLogger)
    except KeyboardInterrupt:  # a second Ctrl-C during the shutdown
        stopping.interrupted = True
    if state.load_error is not None:
        raise state.load_error
    ops.leave_if_loading(state, stopping.status)  # (a signal during start-up: not after the model's load)
    return stopping.status


def _graceful_exit() -> None:
    raise web.GracefulExit()
