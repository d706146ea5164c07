"""What `kame serve` tells its operator: /api/health, /api/metrics, the session and access log
lines (aiohttp's own: kame.server.httplog); the listening socket and the token file, checked
before the agent loads. Who a client is (its address, behind trusted proxies): kame.server.clientaddr.

/api/health (no token needed; full description in docs/protocol.md):

    503 {"ok": false, "status": "loading", ...}   the agent is still loading (port already open)
    200 {"ok": true, "status": "ok", ...}          ready
    200 {"ok": true, "status": "degraded", ...}    ready, but a shared back-end component is
                                                   loading / down / stopped (the agent's health()
                                                   or a live session says so), or the front-end
                                                   makes no frames
    503 {"ok": false, "status": "failed", ...}     the agent stopped running after its start (the
                                                   tandem's frame loop ended), or it failed to start

The agent says how it is (``agent.health()``: running, frame counters, each shared component's
state; kame.runtime.engine.TandemAgent, kame.cascade.agent.CascadeAgent), so a component that
dies or reloads shows with no session live and before a request fails (one found "down" is
logged, once per death: Health.note_components; the server also checks on its own every WATCH_S,
Health.begin_watch, so that a death is logged with nobody probing); the live sessions add
what they saw ("backend" Meta events, which the server forwards). An agent without health() (a
plugin's) is read by its ``components`` names and ``frames`` / ``missed`` counters.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shlex
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ..errors import ConfigError, KameError
from ..paths import local_path
from ..runtime.base import ErrorEvent, client_form
from .clientaddr import client_logged
from .logsafe import clean

log = logging.getLogger("kame.server")
STALL_S = 5.0  # live sessions and no front-end frame for this long: the front-end is "stalled"
HEALTH_PATH = "/api/health"
METRICS_PATH = "/api/metrics"
BACKEND_PARTS = ("stt", "llm", "tts")
NOT_UP = ("loading", "down", "stopped")  # component states that make the server "degraded"
WATCH_S = 5.0  # the server checks its agent's health this often on its own (Health.begin_watch)
PROBE, SCRAPE = "a health probe", "a metrics scrape"  # what saw a component down, besides the watch


# the app's kame.server.app.Server, for the code that has the request only (guard.host_guard,
# AccessLogger; app re-exports it): one key, one object
SERVER_KEY = web.AppKey("kame_server", object)


class AccessLogger(AbstractAccessLogger):
    """Access log without query strings (they may carry ?token=); health probes and metrics
    scrapes at DEBUG (one every few seconds would bury the rest); the client behind a trusted proxy.
    The path as sent (percent-encoded: a decoded %0A would start a forged line)."""

    def log(self, request, response, time) -> None:
        try:
            trusted = getattr(request.app.get(SERVER_KEY), "trusted", ())
        except (AssertionError, AttributeError, RuntimeError):  # a request aiohttp could not parse has
            trusted = ()  # no app (aiohttp 3.14 asserts on its missing match_info)
        path = request.rel_url.raw_path
        level = logging.DEBUG if path in (HEALTH_PATH, METRICS_PATH) else logging.INFO
        self.logger.log(level, '%s "%s %s" %s %.3fs', client_logged(request, trusted), clean(request.method),
                        clean(path), response.status, time)


# ---- per connection ------------------------------------------------------------------------


class SessionView:
    """What a connection saw of its session's Meta: back-end components down, the last stats."""

    def __init__(self) -> None:
        self.backend_down: set[str] = set()
        self.stats: dict = {}

    def note(self, data) -> None:
        if not isinstance(data, dict):
            return
        if data.get("type") == "backend" and isinstance(data.get("component"), str):
            (self.backend_down.discard if data.get("status") == "up" else self.backend_down.add)(data["component"])
        elif data.get("type") == "stats":
            self.stats = data


def for_client(out, session_id: str):
    """An agent's output as the server sends it to its client (connection.Connection._forward):
    runtime.base.client_form; the detail a shortened error leaves out is logged here."""
    sent = client_form(out)
    if isinstance(out, ErrorEvent) and sent is not out:
        log.info("session %s: agent error: %s (the client is told: %s)", clean(session_id), clean(out.message),
                 sent.message)
    return sent


def log_opened(server, request: web.BaseRequest, session_id: str) -> None:
    log.info("session %s opened: client %s, %d of %s sessions", clean(session_id),
             client_logged(request, server.trusted), len(server.connections),
             getattr(server.agent, "max_sessions", "?"))


def log_closed(conn) -> None:
    stats = session_summary(conn.session, conn.view, conn.budget.dropped_s)
    log.info("session %s closed after %.1f s: %s%s; messages dropped for a slow client %d, protocol errors %d",
             clean(conn.session.id), time.monotonic() - conn.started, ending(conn), f"; {stats}" if stats else "",
             conn.queue.dropped, conn.errors)


def closed(conn) -> None:
    """A connection (connection.Connection) has ended: counted for /api/metrics, then logged."""
    m = conn.server.metrics
    m.closed[closed_how(conn)] += 1
    m.protocol_errors += conn.errors
    m.dropped += conn.queue.dropped
    log_closed(conn)


def _client_side(conn) -> str | None:
    """"client" when the client closed the connection, "lost" when it broke, None when the
    server closed it (the one test of both closed_how and ending): also when it reset a client
    that stopped reading (its socket then reads as closed; was counted "lost")."""
    if conn.ended_by == STOPPED_READING:
        return None
    if conn.client_close is not None:
        return "client"
    if conn.client_closed or conn.lost:
        return "lost"
    return None


def closed_how(conn) -> str:
    """The ``how`` label of kame_sessions_closed_total (ENDINGS)."""
    if conn.close_reason == SHUTDOWN_REASON:  # (first: the client's socket then closes too)
        return "shutdown"
    if conn.ended_by in ("idle_timeout", "session_limit", "session_ended"):
        return conn.ended_by
    # "error": the server closed it: a slow client, too many errors, an oversized message, a failure
    return _client_side(conn) or "error"


def ending(conn) -> str:
    """How a connection (connection.Connection) ended: the client's close, a lost connection, or the
    server's close. (Reasons escaped: the client chose its close reason.)"""
    if conn.close_reason == SHUTDOWN_REASON:  # (first, as in closed_how: the client's socket then closes too)
        return f"closed by the server shutting down ({int(conn.close_code)} {SHUTDOWN_REASON})"
    side = _client_side(conn)
    if side == "client":
        code, reason = conn.client_close
        return clean(f"closed by the client ({code}{' ' + reason if reason else ''})")
    if side == "lost":
        return "the connection was lost" + (f" ({clean(conn.lost)})" if conn.lost else "")
    if conn.ended_by == STOPPED_READING:
        return "closed by the server (reset, no close frame: the client stopped reading)"
    return clean(f"closed by the server ({int(conn.close_code)} {conn.close_reason})")


def session_summary(session, view: SessionView, server_dropped_s: float = 0.0) -> str:
    """The stats part of the "session closed" line: the session's own counters when it has
    them (kame's sessions), with ``server_dropped_s`` (the input the server dropped undecoded, past
    the client's budget) added to its dropped input, as the client's stats have it
    (guard.AudioBudget.merged; was: left out of the log); else its last "stats" Meta (merged already)."""
    stats = dict(view.stats)
    own = getattr(getattr(session, "stats", None), "to_json", None)
    if callable(own):
        try:
            stats.update(own())
            if server_dropped_s:
                stats["dropped_input_s"] = round(float(stats.get("dropped_input_s") or 0.0) + server_dropped_s, 3)
        except Exception:  # noqa: BLE001 - a log line must not fail a close
            pass
    parts = []
    for key, label in (("frames", "frames"), ("missed_deadlines", "missed deadlines"), ("bad_audio", "bad audio")):
        if isinstance(stats.get(key), int):
            parts.append(f"{label} {stats[key]}")
    if isinstance(stats.get("dropped_input_s"), (int, float)):
        parts.append(f"input dropped {stats['dropped_input_s']:.2f} s")
    return ", ".join(parts)


# ---- /api/health ---------------------------------------------------------------------------


class Health:
    """The server's health state: the agent's start in the background (loading, its failure),
    the front-end's progress between probes, the server's own watch of the agent."""

    def __init__(self) -> None:
        self.loading = False  # make_app(load_in_background=True): until agent.start() returned
        self.load_error: BaseException | None = None
        self.on_ready = None  # () -> None, once the background start has ended (main: the banner)
        self.on_failed = None  # (exception) -> None, if it failed (main: stop serving, exit with it)
        self._task: asyncio.Task | None = None
        self._watch: asyncio.Task | None = None  # (begin_watch)
        self._frames: int | None = None  # the agent's frame count when it last moved
        self._since = 0.0  # (server clock) since when it has not moved
        self._stop_logged = False  # (the agent's stop after its start: logged once)
        self._health_logged = False
        self._down: set[str] = set()  # the agent's components last seen "down" (note_components)
        self.cut_short = False  # the server stopped while the agent was loading (end_loading cancelled it)

    def begin_loading(self, agent) -> None:
        """Start the agent in the background; meanwhile /api/health and /api/chat answer 503
        "loading" (the port is open: probes see a server that is up, not ready)."""
        self.loading = True
        self._task = asyncio.get_running_loop().create_task(self._load(agent), name="kame-load-agent")

    async def _load(self, agent) -> None:
        try:
            await agent.start()
        except Exception as exc:  # noqa: BLE001 - said by on_failed (main: "kame: error: ...") or logged
            self.loading, self.load_error = False, exc
            if self.on_failed is not None:
                self.on_failed(exc)
            else:
                log.error("the agent could not start: %s", exc, exc_info=not isinstance(exc, KameError))
            return
        self.loading = False
        if self.on_ready is not None:
            try:
                self.on_ready()
            except Exception:  # noqa: BLE001 - (was: "Task exception was never retrieved", at the stop)
                log.exception("after the agent's start")

    async def wait_loaded(self) -> None:
        """Until the background start has ended (at once if there is none)."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def end_loading(self) -> None:
        """Cancel a start still under way (the server stops while the agent loads)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            self.cut_short = True
            task.cancel()
            await asyncio.wait({task})

    def begin_watch(self, server) -> None:
        """Check the agent every WATCH_S on the server's clock as a probe does (agent_state), so
        that a component that dies with nobody probing is logged within seconds (was: at the next
        probe or session), from the end of its start (a start in the background waited for; none
        after a failed one) until end_watch."""
        self._watch = asyncio.get_running_loop().create_task(self._watching(server), name="kame-watch-agent")

    async def _watching(self, server) -> None:
        await self.wait_loaded()
        seen_by = f"the server's check every {WATCH_S:g} s"
        while self.load_error is None and not self.loading and not self.cut_short:
            await server.clock.sleep(WATCH_S)
            try:
                agent_state(server, seen_by)
            except Exception:  # noqa: BLE001 - (agent.health()'s own failure is agent_health's) said once
                log.exception("the server's check of the agent failed; it checks no more (/api/health still does)")
                return

    async def end_watch(self) -> None:
        """Stop the watch (before the agent's stop: it never reads a stopped agent)."""
        task, self._watch = self._watch, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    def frontend(self, now: float, frames: int, newest_open: float | None) -> str:
        """"stalled" when sessions are live, none opened in the last STALL_S and the frame
        count has not moved for STALL_S; else "up" (no sessions: the frame loop sleeps)."""
        if newest_open is None or frames != self._frames:
            self._frames, self._since = frames, now
            return "up"
        return "stalled" if now - max(self._since, newest_open) >= STALL_S else "up"

    def agent_health(self, agent) -> dict | None:
        """agent.health() (None: the agent has none, or it failed: logged once)."""
        fn = getattr(agent, "health", None)
        if not callable(fn):
            return None
        try:
            got = fn()
        except Exception:  # noqa: BLE001 - a probe must answer; said once
            if not self._health_logged:
                self._health_logged = True
                log.warning("the agent's health() failed; /api/health reports without it", exc_info=True)
            return None
        return got if isinstance(got, dict) else None

    def note_components(self, states: dict, seen_by: str) -> None:
        """Log a shared component of the agent (``states``: agent.health()'s) that ``seen_by`` (a
        probe, a scrape, the watch) finds "down", once per death whoever sees it, and its return to
        "up" (was: a back-end child that died with no session live showed in /api/health at once,
        but the log said nothing until the next session used it)."""
        for name, state in states.items():
            if state == "down" and name not in self._down:
                self._down.add(name)
                log.warning("back-end %s is down (seen by %s): /api/health says \"degraded\" until it is up again "
                            "(a back-end child process that died is restarted by its next use)",
                            clean(str(name)), seen_by)
            elif state == "up" and name in self._down:
                self._down.discard(name)
                log.info("back-end %s is up again", clean(str(name)))

    def failure(self, agent, ah: dict | None) -> str | None:
        """Why the agent no longer runs after its start (None: it runs, or has not started),
        logged once. ``ah``: agent.health() (None: the agent has none)."""
        if ah is not None:
            if not ah.get("started") or ah.get("running"):
                return None
            if not self._stop_logged:
                self._stop_logged = True
                log.error("the agent is not running: %s; its sessions get nothing more; restart kame serve",
                          ah.get("error") or "it stopped by itself")
            if "frames" in ah:
                return "the agent's frame loop has ended (see the server's log)"
            return "the agent has stopped running (see the server's log)"
        return None  # (an agent without health(): not known)


def agent_state(server, seen_by: str) -> tuple[dict | None, str | None]:
    """(agent.health(), why the agent no longer runs): None, None for an agent without health()
    that runs; a component found "down" or back "up" logged (Health.note_components). The check
    of /api/health, /api/metrics and the server's own watch (Health.begin_watch)."""
    h = server.health_state
    ah = None if h.load_error else h.agent_health(server.agent)
    failed = "the agent failed to start (see the server's log)" if h.load_error else h.failure(server.agent, ah)
    states = (ah or {}).get("components")
    if not failed and isinstance(states, dict):
        h.note_components(states, seen_by)
    return ah, failed


def health(server, seen_by: str = PROBE) -> tuple[int, dict]:
    """(HTTP status, body) of /api/health (``seen_by``: who asks, for the log)."""
    agent, conns = server.agent, list(server.connections)
    body = {
        "ok": True, "status": "ok", "sessions": len(conns), "max_sessions": getattr(agent, "max_sessions", None),
        "total_sessions": server.total_sessions, "uptime_s": round(time.monotonic() - server.started, 1),
        "auth": bool(server.cfg.auth_token),
    }
    h = server.health_state
    if h.loading:
        return 503, {**body, "ok": False, "status": "loading"}
    ah, failed = agent_state(server, seen_by)
    if failed:
        return 503, {**body, "ok": False, "status": "failed", "error": failed}
    comps = getattr(agent, "components", None)
    comps = comps if isinstance(comps, dict) else {}
    backend = {k: "up" for k in BACKEND_PARTS if comps.get(k) and comps.get(k) != "none"}
    states = (ah or {}).get("components")
    if isinstance(states, dict):  # what the agent's components say of themselves
        backend.update((k, v) for k, v in states.items() if isinstance(k, str) and isinstance(v, str))
    for conn in conns:  # what the live sessions saw (a state the agent knows better, e.g. loading, stays)
        backend.update((k, "down") for k in conn.view.backend_down if backend.get(k, "up") == "up")
    body["backend"] = backend
    src = ah if ah is not None and "frames" in ah else {"frames": getattr(agent, "frames", None),
                                                        "missed": getattr(agent, "missed", None)}
    frames, missed = src.get("frames"), src.get("missed")
    if isinstance(frames, int):
        newest = max((c.opened for c in conns), default=None)
        body["frontend"] = h.frontend(server.clock.now(), frames, newest)
        body["frames"] = frames
        if isinstance(missed, int):
            body["missed_deadlines"] = missed
        if isinstance(src.get("failed_steps"), int):
            body["failed_steps"] = src["failed_steps"]
    if any(v in NOT_UP for v in backend.values()) or body.get("frontend") == "stalled":
        body["status"] = "degraded"
    return 200, body


# ---- /api/metrics --------------------------------------------------------------------------

SHUTDOWN_REASON = "server shutting down"
STOPPED_READING = "stopped_reading"  # Connection.ended_by of a client the server reset (a send blocked too long)
REFUSALS = ("unauthorized", "loading", "capacity", "agent_unavailable")  # /api/chat's HTTP errors
# how sessions ended: the client closed, the connection broke, one of the server's fatal errors,
# the server stopped, or the server closed it for anything else (slow client, too many errors, ...)
ENDINGS = ("client", "lost", "idle_timeout", "session_limit", "session_ended", "shutdown", "error")
# the 401 of /api/chat and /api/metrics when a token is set and the request has not got it
UNAUTHORIZED = {"error": "unauthorized", "message": "missing or wrong token (Authorization: Bearer ... or ?token=)"}
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text format


class Metrics:
    """The counters the server keeps for /api/metrics (the rest is read when scraped)."""

    def __init__(self) -> None:
        self.refused = dict.fromkeys(REFUSALS, 0)
        self.closed = dict.fromkeys(ENDINGS, 0)
        self.protocol_errors = 0  # of the connections that have ended (live ones: added when scraped)
        self.dropped = 0  # audio messages dropped for a slow client, likewise


def refuse(server, body: dict, status: int, headers=None) -> web.Response:
    """/api/chat's refusal ``body`` ({"error": one of REFUSALS, "message": ...}), counted."""
    server.metrics.refused[body["error"]] = server.metrics.refused.get(body["error"], 0) + 1
    return web.json_response(body, status=status, headers=headers)


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metrics_text(server) -> str:
    """/api/metrics in the Prometheus text format (0.0.4)."""
    status, body = health(server, SCRAPE)
    conns, m = list(server.connections), server.metrics
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples) -> None:
        out.extend((f"# HELP {name} {help_}", f"# TYPE {name} {kind}"))
        for labels, value in samples:
            tags = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{tags}}} {value}" if tags else f"{name} {value}")

    metric("kame_ready", "gauge", "1 when /api/health answers 200 (ok or degraded), 0 when loading or failed",
           [({}, int(status == 200))])
    metric("kame_uptime_seconds", "gauge", "seconds since the server started", [({}, body["uptime_s"])])
    metric("kame_sessions_open", "gauge", "sessions open now", [({}, len(conns))])
    if isinstance(body.get("max_sessions"), int):
        metric("kame_sessions_max", "gauge", "the agent's maximum of sessions open at once", [({}, body["max_sessions"])])
    metric("kame_sessions_opened_total", "counter", "sessions opened", [({}, server.total_sessions)])
    metric("kame_sessions_refused_total", "counter", "/api/chat requests refused, by the HTTP error's name",
           [({"reason": k}, v) for k, v in m.refused.items()])
    metric("kame_sessions_closed_total", "counter", "sessions ended, by how", [({"how": k}, v) for k, v in m.closed.items()])
    metric("kame_protocol_errors_total", "counter", "protocol errors (0x05, not fatal) sent to clients",
           [({}, m.protocol_errors + sum(c.errors for c in conns))])
    metric("kame_audio_dropped_total", "counter", "audio messages dropped for clients that read too slowly",
           [({}, m.dropped + sum(c.queue.dropped for c in conns))])
    for key, name, help_ in (("frames", "kame_agent_frames_total", "80 ms frames the agent has stepped"),
                             ("missed_deadlines", "kame_agent_missed_deadlines_total", "frames that missed their deadline"),
                             ("failed_steps", "kame_agent_failed_steps_total", "frame steps that failed")):
        if isinstance(body.get(key), int):
            metric(name, "counter", help_, [({}, body[key])])
    parts = dict(body.get("backend") or {})
    if body.get("frontend"):
        parts["frontend"] = body["frontend"]
    if parts:
        metric("kame_component_up", "gauge", "1 when the agent's shared component is up, 0 when not (loading, down, "
               "stopped, stalled)", [({"component": k}, int(v == "up")) for k, v in sorted(parts.items())])
    return "\n".join(out) + "\n"


def metrics_handler(server):
    """GET /api/metrics; with a token set, it needs the token as /api/chat does."""
    async def handle(request: web.Request) -> web.Response:
        if not server.authorized(request):  # (not counted: a refusal of /api/chat is)
            return web.json_response(UNAUTHORIZED, status=401, headers=UNAUTHORIZED_HEADERS)
        return web.Response(body=metrics_text(server).encode(),
                            headers={"Content-Type": METRICS_TYPE, "Cache-Control": "no-store"})
    return handle


# ---- before the agent loads: the token file, the socket -------------------------------------


MIN_TOKEN_CHARS = 16  # a shorter token: token_warning (wrong tokens are not rate-limited: guessing it is cheap)


def read_token_file(path: str, what: str) -> str:
    """The token in the file ``path`` (``what`` names where the path came from), whitespace stripped;
    a file other users may read is warned of (was: accepted without a word)."""
    try:
        mode = local_path(path).stat().st_mode & 0o777
        if os.name == "posix" and mode & 0o044:  # (readable by its group or by others)
            log.warning("%s %s: other users of this machine can read the token (mode %03o: %s may read it); make "
                        "it the owner's alone: chmod 600 %s, or, for a mounted secret (Docker, Kubernetes), set its "
                        "mode (e.g. 0400) where it is mounted", what, path, mode, "its group and others" if mode
                        & 0o044 == 0o044 else "its group" if mode & 0o040 else "others", shlex.quote(path))
        token = local_path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read the token: {getattr(exc, 'strerror', None) or exc}") from None
    if not token:
        raise ConfigError(f"{what} {path}: the file is empty; put the bearer token in it (one line)")
    if any(c.isspace() for c in token):
        raise ConfigError(f"{what} {path}: the file holds more than one word; put only the bearer token in it")
    return token


def token_warning(token: str | None) -> str | None:
    """The start-up warning for a token short enough to guess (none for no token: bind_warning's)."""
    if token and len(token) < MIN_TOKEN_CHARS:
        return (f"the auth token is only {len(token)} characters long: anyone who can reach the server may guess it "
                f"(wrong tokens are not rate-limited); use a long random one (at least {MIN_TOKEN_CHARS} characters), "
                f"e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE; chmod 600 FILE; "
                f"then --token-file FILE")
    return None


def config_token(cfg) -> None:
    """server.auth_token_file read into ``cfg.auth_token`` (a ServerConfig)."""
    if cfg.auth_token and cfg.auth_token_file:
        raise ConfigError("server.auth_token and server.auth_token_file are both set: keep one (the file keeps the "
                          "token out of the config)")
    if cfg.auth_token_file:
        cfg.auth_token = read_token_file(cfg.auth_token_file, "server.auth_token_file")


def cli_token(token: str | None, token_file: str | None, env: dict, without: str = "serve without one") -> str | None:
    """`kame serve`'s token and `kame client`'s: --token or --token-file, else KAME_AUTH_TOKEN (None:
    the config's, or for kame client the URL's, which passes an empty ``env`` then), cleaned by
    ``clean_token`` (its errors say ``without``). A --token given empty is refused too (a systemd
    unit's `--token ${UNSET}`: was silently no auth); an empty KAME_AUTH_TOKEN counts as unset (an
    EnvironmentFile's `KAME_AUTH_TOKEN=`). A token from KAME_AUTH_TOKEN is said at INFO (kame client
    sends it to whichever server its URL names: a 401 then points there)."""
    token = clean_token(token, "--token", "give the token (an unset variable in --token $VAR?), or omit --token",
                        empty_is_unset=False, without=without)
    if token and token_file:
        raise ConfigError("--token and --token-file are both given: use one (--token-file keeps the token out of `ps`)")
    if token_file:
        return read_token_file(token_file, "--token-file")
    if token:
        return token
    token = clean_token(env.get("KAME_AUTH_TOKEN"), "KAME_AUTH_TOKEN", "set it to the token, or unset it (or set it "
                        "empty)", without=without)
    if token:
        log.info("the bearer token is the one in the environment variable KAME_AUTH_TOKEN")
    return token


def clean_token(value, where: str, fix: str, empty_is_unset: bool = True, without: str = "serve without one"
                ) -> str | None:
    """A bearer token as ``where`` gives it ("--token", "KAME_AUTH_TOKEN", "server.auth_token"),
    surrounding whitespace stripped, as a token file's is; None when not given, or empty
    (``empty_is_unset``). A blank one is a ConfigError that says ``fix`` (how to give the token or
    go ``without`` one there; was: the blanks as the token, or no auth)."""
    if isinstance(value, str) and not value.strip() and (value or not empty_is_unset):
        raise ConfigError(f"{where} {value!r}: a blank token would {without}; {fix} to {without}")
    return (value.strip() if isinstance(value, str) else value) or None


def listen_socket(host: str, port: int):
    """The server's socket, bound to ``host:port`` (port 0: any free one) before the agent loads
    (tens of seconds), so a port in use or a bad host fails first; main's first startup hook makes
    it listen before the agent's start begins (meanwhile /api/health says "loading")."""
    import socket

    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port}: must be in 0..65535")
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name == "posix":  # as asyncio does (a restart binds while the old connections close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    elif hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows, where SO_REUSEADDR shares a port in use
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        hint = LISTEN_HINTS.get(exc.errno)
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}" + (f" ({hint})" if hint else "")) from None
    return sock


LISTEN_HINTS = {  # errno of a failed bind -> what to do
    errno.EADDRINUSE: "another `kame serve`, or another program, uses it: choose another with --port (0: any free one)",
    errno.EADDRNOTAVAIL: "no network interface of this machine has that address: use 127.0.0.1, 0.0.0.0 (all) "
                         "or one of its own addresses with --host",
    errno.EACCES: "ports below 1024 need privileges: choose one above 1023 with --port",
}
