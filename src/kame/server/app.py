"""`kame serve`: the aiohttp app serving the WebSocket API (/api/chat) and the browser page.

    kame serve                                 # the configured agent on 127.0.0.1:8998
    kame serve --agent echo --port 8998        # diagnostic echo agent, no model needed
    kame serve --token SECRET --host 0.0.0.0   # require "Authorization: Bearer SECRET" or ?token=
    kame serve --token-file /run/secrets/kame  # the same, the token kept out of `ps`

Routes: GET / (the page), GET /<file> (the page's folder only: src/kame/server/static, or [server]
static_dir), GET /api/health (JSON) and
/api/metrics (Prometheus; kame.server.ops), GET /api/chat (WebSocket, protocol in docs/protocol.md).

Per connection: a Connection (kame.server.connection) runs the client's session: its tasks read the
socket, pump the session's outputs into a bounded send queue and write it, and watch for idleness.
Limits (max sessions, message size, idle timeout, auth) are in ServerConfig; so are those on
connections: a request's headers must arrive within header_timeout_s (aiohttp's keep-alive timer,
which also runs from a connection's start), and the listening socket (LimitedSocket) refuses
connections over max_connections, or max_connections_per_client from one address, as it accepts
them, before aiohttp sees them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hmac
import json
import logging
import mimetypes
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import WSCloseCode, web

from ..cliargs import Once, at_least
from ..config import add_config_arguments
from ..errors import ConfigError, KameError, NotAvailableError
from ..paths import local_path
from ..runtime.base import Agent, CapacityError
from ..runtime.clock import Clock, MonotonicClock
from . import clientaddr, guard, httplog, ops
from .connection import Connection
from .logsafe import clean
from .ops import SERVER_KEY, listen_socket  # (SERVER_KEY: also kame.server.app's, as before)
from .settings import ServerConfig, echo_server_config, server_config_from, unserved  # noqa: F401 (also kame.server.app's)
from .stopping import SERVE_EPILOG, Stopping, leave_if_loading

log = logging.getLogger("kame.server")
STATIC_DIR = Path(__file__).parent / "static"
OPUS_THREADS = 4  # Opus decoding and encoding for all sessions (each: one message / one chunk at a time)
SHUTDOWN_FLUSH_S = 2.0  # at a shutdown, how long the sessions' last outputs (final stats) may take to be sent


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
        self.trusted = clientaddr.parse_trusted(cfg.trusted_proxy)
        self.health_state = ops.Health()  # (also the agent's start in the background)
        self.allowed_origins = guard.parse_origins(cfg.allowed_origins)
        self.allowed_hosts = guard.parse_hosts(cfg.allowed_hosts)
        bound = guard.bound_host(cfg.host)  # (--host 0 is 0.0.0.0, 127.1 is 127.0.0.1, as the socket reads them)
        self.loopback = guard.is_loopback_name(bound)  # (then Host is checked: DNS rebinding)
        # another bind without a token: Host is checked too, against IPs and these names (None: not checked)
        self.own_names = None if self.loopback or cfg.auth_token else guard.own_names(bound)
        guard.log_host_names(self.own_names, self.allowed_hosts)
        self.slots = guard.ClientSlots(cfg.max_sessions_per_client or 0, self.trusted)
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
        client = clientaddr.client_address(request, self.trusted)
        if not self.slots.take(client):
            n = self.slots[client]
            who = clientaddr.client_key(client, self.trusted)
            return ops.refuse(self, {"error": "too_many_sessions", "message": f"this client ({who}) already has "
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
        if self.slots.cap:  # the asking client's own sessions and its cap (the page explains a 429 upgrade with them)
            body["client_sessions"] = self.slots[clientaddr.client_address(request, self.trusted)]
            body["max_sessions_per_client"] = self.slots.cap
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        if name not in self.static:
            raise web.HTTPNotFound(text="not found")
        body, ctype = self.static[name]
        return web.Response(body=body, content_type=ctype, headers={"Cache-Control": "no-cache"})

    async def on_shutdown(self, app: web.Application) -> None:
        """Each live session ends as after END_INPUT, its last outputs and final "stats" sent
        (Connection.shut_down), then its connection closes with 1001; one that has not closed
        within SHUTDOWN_FLUSH_S is closed now."""
        conns = list(self.connections)
        log.info("shutting down: closing %d session(s)", len(conns))
        for conn in conns:
            conn.shut_down()
        waits = [asyncio.ensure_future(c.finished.wait()) for c in conns]
        if waits:
            await asyncio.wait(waits, timeout=SHUTDOWN_FLUSH_S)
        for w in waits:
            w.cancel()
        for conn in conns:
            if not conn.ws.closed:
                await guard.close_ws(conn.ws, conn.transport, WSCloseCode.GOING_AWAY, ops.SHUTDOWN_REASON.encode())

    async def on_cleanup(self, app: web.Application) -> None:
        # (after on_shutdown and the handlers' end: each connection waited for its own decode and encode)
        self.opus_pool.shutdown(wait=False, cancel_futures=True)


# on every response: no other site may frame the page (a framed Start button is clickjacking), no
# browser may read a file as another type than it is sent as, and the Server header names no versions
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'", "Server": "kame"}


async def _safe_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    response.headers.update(SAFE_HEADERS)  # (after aiohttp's defaults: its "Server: Python/3.x aiohttp/3.x" replaced)


def _load_static(folder: Path) -> dict[str, tuple[bytes, str]]:
    """The page's files, read once: regular files directly in ``folder`` (settings.unserved: no
    symlinks, no subfolders), so requests can only ever name one of these, never a path. What is
    skipped is said in one WARNING (was: nothing; a symlinked index.html was a silent 404),
    but for hidden names (.git, .DS_Store), never served."""
    files, skipped = {}, []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            if (why := unserved(p)) is not None:
                skipped.append(f"{p.name} ({why})")
                continue
            ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
            if p.suffix == ".js":
                ctype = "text/javascript"
            files[p.name] = (p.read_bytes(), ctype)
    if skipped:
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        log.warning("the page's folder %s: not serving %s%s: only regular files at its top level are served (copy "
                    "the files in)", folder, ", ".join(clean(s) for s in skipped[:10]), more)
    return files


def make_app(agent: Agent, cfg: ServerConfig | None = None, clock: Clock | None = None, manage_agent: bool = False,
             load_in_background: bool = False) -> web.Application:
    """The aiohttp app. With ``manage_agent`` the app starts/stops the agent with itself, and
    checks its health every ops.WATCH_S meanwhile (a component's death logged with nobody probing);
    with ``load_in_background`` too, it serves while the agent starts (503 "loading" until then)."""
    server = Server(agent, cfg or ServerConfig(), clock)
    httplog.install_log_filters()
    # (malformed requests: a WARNING). keepalive_timeout: aiohttp closes a connection still waiting for a
    # request's headers this long after it opened or after its last answer, never one in a handler (a WebSocket)
    app = web.Application(client_max_size=1 << 16, middlewares=[guard.host_guard],
                          handler_args={"logger": httplog.HttpLog(), "keepalive_timeout": server.cfg.header_timeout_s})
    app[SERVER_KEY] = server
    app.router.add_get("/api/chat", server.chat)
    app.router.add_get("/api/health", server.health)
    app.router.add_get(ops.METRICS_PATH, ops.metrics_handler(server))
    app.router.add_get("/", server.static_file)
    app.router.add_get("/{name}", server.static_file)
    app.on_response_prepare.append(_safe_headers)
    app.on_shutdown.append(server.on_shutdown)
    app.on_cleanup.append(server.on_cleanup)
    if manage_agent:
        async def _start(_):
            if load_in_background:
                server.health_state.begin_loading(agent)
            else:
                await agent.start()
            server.health_state.begin_watch(server)  # (checks from the end of the start, every ops.WATCH_S)

        async def _stop(_):
            await server.health_state.end_watch()  # (first: no check of an agent stopping)
            await server.health_state.end_loading()
            await agent.stop()
        app.on_startup.append(_start)
        app.on_cleanup.append(_stop)
    return app


# ---- connections --------------------------------------------------------------------------------

FD_SPARE = 64  # files kame serve needs besides its connections (its modules, models, logs, children's pipes)
REFUSE_BURST = 64  # connections refused in one accept() at most (then the loop's next turn)


class LimitedSocket(socket.socket):
    """`kame serve`'s listening socket: ``accept()`` refuses a connection beyond ``cap`` open ones,
    or beyond ``per_client`` (0: no cap) from one peer (clientaddr.client_key: an IPv6 address's /64; a
    trusted proxy's: not capped, its clients are not told apart before a request), with a short 503 / 429 and a close, before
    asyncio and aiohttp build anything for it (was: no cap, and half-sent requests from one client
    used up the process's file descriptors: nobody else was answered). A connection counts until
    its socket is closed."""

    def __init__(self, sock: socket.socket, cap: int, per_client: int = 0, trusted: tuple = ()) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.cap, self.per_client, self.trusted = cap, per_client, trusted
        self.open: list[tuple[socket.socket, str]] = []
        self.per_address: collections.Counter[str] = collections.Counter()
        self.said = httplog.Throttle(httplog.ACCEPT_ERROR_EVERY_S)

    def accept(self):
        pruned = False
        for _ in range(REFUSE_BURST):
            conn, addr = super().accept()  # (BlockingIOError when none is waiting: asyncio's loop stops there)
            ip = str(addr[0] if isinstance(addr, tuple) else addr)
            key = clientaddr.client_key(ip, self.trusted)
            why = self._over(ip, key)
            if why is not None and not pruned:  # forget the closed ones, once a call (none closes within it)
                self._prune()
                pruned, why = True, self._over(ip, key)
            if why is None:
                self.open.append((conn, key))
                self.per_address[key] += 1
                return conn, addr
            _refuse(conn, *why)
            if (more := self.said.due()) is not None:
                log.warning("refused a connection from %s: %s%s", ip, why[2],
                            f" ({more} more refused since the last of these)" if more else "")
        raise BlockingIOError  # (the others: at the loop's next turn)

    def _over(self, ip: str, key: str) -> tuple[int, str, str] | None:
        """(status, error, message) if a connection from ``ip`` (its client: ``key``) is over a cap
        now, else None."""
        if len(self.open) >= self.cap:
            return 503, "too_many_connections", (f"the server has {len(self.open)} connections open, its limit "
                                                 f"(server.max_connections); try again in a few seconds")
        if self.per_client and self.per_address[key] >= self.per_client and not clientaddr.is_trusted(ip, self.trusted):
            return 429, "too_many_connections", (f"this client ({key}) has {self.per_address[key]} connections open, "
                                                 f"the server's limit per client (server.max_connections_per_"
                                                 f"client); close some first")
        return None

    def _prune(self) -> None:
        """Forget the connections closed since (a closed socket's fileno() is -1)."""
        still = []
        for conn, key in self.open:
            if conn.fileno() == -1:
                self.per_address[key] -= 1
                if self.per_address[key] <= 0:
                    del self.per_address[key]
            else:
                still.append((conn, key))
        self.open = still


def _refuse(conn: socket.socket, status: int, error: str, message: str) -> None:
    """Answer a connection refused at accept with ``status`` and close it, never waiting: what
    the client already sent is read first (closing over unread data would reset the connection
    before the client reads the answer)."""
    body = json.dumps({"error": error, "message": message}).encode()
    head = (f"HTTP/1.1 {status} {'Too Many Requests' if status == 429 else 'Service Unavailable'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nRetry-After: 5\r\n"
            f"Connection: close\r\n\r\n")
    try:
        conn.setblocking(False)
        try:
            conn.recv(1 << 16)
        except BlockingIOError:
            pass
        conn.send(head.encode() + body)
    except OSError:
        pass
    finally:
        conn.close()


def limited_socket(sock: socket.socket, cfg: ServerConfig) -> LimitedSocket:
    """``sock`` (listen_socket's) as a LimitedSocket with ``cfg``'s caps; logs a warning when
    max_connections leaves too few of the process's open-file limit for the rest."""
    limit = httplog.open_files_limit()
    if limit is not None and cfg.max_connections + FD_SPARE > limit:
        log.warning("server.max_connections (%d) leaves fewer than %d of the open-file limit (ulimit -n %d) for the "
                    "rest of kame serve: raise the limit (ulimit -n %d) or lower server.max_connections",
                    cfg.max_connections, FD_SPARE, limit, cfg.max_connections + FD_SPARE)
    return LimitedSocket(sock, cfg.max_connections, cfg.max_connections_per_client, clientaddr.parse_trusted(cfg.trusted_proxy))


# ---- CLI ------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    add_config_arguments(parser, note=" (its [server] section sets the defaults below)")
    parser.add_argument("--agent", default="config", choices=["config", "echo"],
                        help="'config': the agent the config builds (tandem/cascade); 'echo': diagnostic echo, no model")
    parser.add_argument("--mode", default=None, choices=["tandem", "cascade"], help="override the config's mode")
    parser.add_argument("--host", default=None, help="address to bind, default: [server] host, 127.0.0.1 (0.0.0.0: all)")
    parser.add_argument("--port", type=at_least(0, maximum=65535), default=None,
                        help="default: [server] port, 8998; 0: any free port")
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
    parser.epilog, parser.formatter_class = SERVE_EPILOG, argparse.RawDescriptionHelpFormatter


def _build(args) -> tuple[Agent, ServerConfig]:
    import os

    from ..config import check_host

    token = ops.cli_token(args.token, getattr(args, "token_file", None), os.environ)  # (a bad file: before all else)
    # --host "": refused as server.host="" is (was: 127.0.0.1 served, with no word)
    host = None if args.host is None else check_host(args.host, "--host")
    if args.agent == "echo":
        from .echo import EchoAgent

        if args.mode:  # (the echo agent has no modes)
            raise ConfigError(f"--mode {args.mode} is for the configured agent; --agent echo only echoes")

        cfg = echo_server_config(args.config, args.overrides, "give --agent config to serve the configured agent "
                                 "(the echo agent's sessions: --max-sessions)")
        agent = EchoAgent(max_sessions=args.max_sessions or 16)
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
    if host is not None:
        cfg.host = host
    cfg.host = guard.bound_host(cfg.host)  # (--host 0: said, warned of and checked as the 0.0.0.0 it binds)
    if args.port is not None:  # 0: any free port
        cfg.port = args.port
    cfg.auth_token = token or cfg.auth_token
    cfg.trusted_proxy = getattr(args, "trusted_proxy", None) or cfg.trusted_proxy
    clientaddr.parse_trusted(cfg.trusted_proxy)  # (a bad one is named before the agent loads)
    return agent, cfg


def main(args) -> int:
    # kame.cli's early stop records a SIGTERM or SIGHUP until the server's loop handles them; read here
    # once the imports are done, once the agent and socket are built, once the app is made (before
    # web.run_app), and as the loop takes them over (Stopping.install, in listen)
    stopping = Stopping()
    if stopping.early():
        return stopping.status
    agent, cfg = _build(args)
    sock = limited_socket(listen_socket(cfg.host, cfg.port), cfg)
    if stopping.early():
        sock.close()
        return stopping.status
    port = sock.getsockname()[1]  # the one bound (--port 0: chosen by the system)
    app = make_app(agent, cfg, manage_agent=True, load_in_background=True)
    state = app[SERVER_KEY].health_state
    for unsafe in (guard.bind_warning(cfg), ops.token_warning(cfg.auth_token)):
        if unsafe:
            log.warning("%s", unsafe)
    url = page_url(cfg.host, port)

    async def listen(_app) -> None:  # (first hook: before the agent's start begins)
        # listen now, while the agent loads: health probes get 503 "loading", not "connection refused"
        sock.listen(128)
        loop = asyncio.get_running_loop()  # (out of file descriptors: one line a minute, no traceback)
        loop.set_exception_handler(httplog.accept_errors(cfg, loop.get_exception_handler()))
        stopping.install()  # (Ctrl-C: exit status 130; the stop's cause logged; an early SIGTERM's stop begins)
        if args.agent != "echo":
            _say(f"kame: loading the agent ({guard.loads(agent)}: can take half a minute); meanwhile "
                 f"{url}api/health answers 503 \"loading\" ...")

    def announce() -> None:  # once the agent has started
        comps = getattr(agent, "components", {})
        what = ", ".join(f"{k} {comps[k]}" for k in ("mode", "frontend", "codec", "stt", "llm", "tts") if comps.get(k))
        if what:
            _say(f"kame: agent ready: {what}")
        if comps.get("frontend_note"):
            _say(f"kame: note: {comps['frontend_note']}")
        _say(f"kame: serving on {url} (WebSocket /api/chat{remote_note(cfg.host)})")

    def failed(_exc) -> None:  # the agent could not start: stop serving (as a signal would); raised below
        asyncio.get_running_loop().call_soon(_graceful_exit, stopping)

    state.on_ready, state.on_failed = announce, failed
    app.on_startup.insert(0, listen)  # (run_app installs its handlers before the startup hooks)
    if stopping.early():  # (the last checkpoint before the loop: install's would come after the load began)
        sock.close()
        return stopping.status
    try:
        web.run_app(app, sock=sock, print=None, handle_signals=True, access_log_class=ops.AccessLogger)
    except KeyboardInterrupt:  # a second Ctrl-C during the shutdown
        stopping.interrupted = True
    stopping.begin(None)  # (held from here if no signal began it: the children's stop is not cut short)
    _release_children(stopping)
    stopping.done(failed=state.load_error is not None)
    if state.load_error is not None:
        raise state.load_error
    leave_if_loading(state, stopping.status)  # (a signal during start-up: not after the model's load)
    return stopping.status


def page_url(host: str, port: int) -> str:
    """The page's address as main prints it: a bind on all addresses as localhost (a browser
    allows the microphone only on localhost or over HTTPS: http://0.0.0.0:PORT/ was printed, where
    the page's microphone is refused), an IPv6 address in brackets."""
    host = "localhost" if host in guard.WILDCARD_HOSTS else f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


def remote_note(host: str) -> str:
    """What the serving line adds for a bind other machines can reach: their browsers need HTTPS
    (and, on one address that is not loopback, this machine's too: localhost is not served)."""
    if guard.is_loopback_name(host):
        return ""
    if host in guard.WILDCARD_HOSTS:
        return "; other machines: this machine's address, where the page's microphone needs HTTPS: a TLS proxy in front"
    return ("; the page's microphone needs HTTPS at this address (a TLS proxy in front), or bind 0.0.0.0 and "
            "open it at localhost on this machine")


def _say(line: str) -> None:
    """One of main's start-up lines on stdout. One that cannot be written (a full disk: `kame serve
    > /dev/full`, a closed pipe) is logged instead (on stderr), and the server goes on serving
    (was: a traceback that ended it at start, or, once the agent had started, an asyncio "Task
    exception was never retrieved" at its stop). stdout then points at devnull, as Python's docs
    advise for a closed pipe: the line still buffered, and the next ones, are not written again
    at each line and at the exit (where kame's main would end with "cannot write to standard output")."""
    import os
    import sys

    try:
        print(line, flush=True)
    except OSError as exc:
        log.warning("cannot write to standard output (%s): %s", exc.strerror or exc, line.removeprefix("kame: "))
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (AttributeError, ValueError, OSError):  # (no descriptor: a replaced stream)
            pass


def _release_children(stopping: Stopping) -> None:
    """Stop the back-end children the agent's components share (the embedded LLM's,
    pocketsphinx's) with the server, before the interpreter's exit: a (re)load under way is
    terminated, not waited for, and each stop is logged (was: nothing stopped them before the exit
    hooks, which waited out a whole LLM reload, ~50 s, in silence). A second Ctrl-C meanwhile
    leaves the rest to their exit hooks. The one release: kame's main does not stop them again
    (``final``; was: it started over after a second Ctrl-C, which should quit at once)."""
    from ..backend.childproc import release_children

    try:
        release_children(final=True)
    except KeyboardInterrupt:
        stopping.interrupted = True


def _graceful_exit(stopping: Stopping) -> None:
    stopping.begin(None)
    raise web.GracefulExit()
