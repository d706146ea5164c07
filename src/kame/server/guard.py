"""What `kame serve` refuses before and during a session, to keep one client (or one web page)
from using or starving the server (kame.server.app and .connection call these):

- a browser's WebSocket upgrade from a page of another origin (cross-site WebSocket hijacking:
  any page the operator visits could open sessions on ws://127.0.0.1:8998): the Origin must be
  the server's own host:port or be listed in ``server.allowed_origins``; no Origin (kame client,
  scripts) is allowed;
- on a loopback bind, any request whose Host is not a loopback name (DNS rebinding: a page of
  evil.example whose name later resolves to 127.0.0.1); on another bind without a token, any whose
  Host is neither an IP address, a loopback name nor one of this machine's names (the same attack on
  a LAN or 0.0.0.0 bind; with a token, the token is the defence: the page cannot know it); unless
  listed in ``server.allowed_hosts`` or forwarded by a trusted proxy (which decides the names it serves);
- more live sessions from one client address than ``server.max_sessions_per_client``;
- a WebSocket upgrade of another version than RFC 6455's 13 (426);
- a client that does not read what it is sent (SendQueue: bounded, the oldest audio dropped);
- client audio faster than real time plus a burst (``server.audio_burst_s``; AudioBudget: dropped
  before decoding, so a flood of Opus cannot keep the decoding threads busy), and sessions that
  send too little audio to be in use (AudioActivity: the idle timeout).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket

from aiohttp import web

from ..errors import ConfigError
from . import clientaddr, ops
from .logsafe import clean

log = logging.getLogger("kame.server")

# client audio may run this far ahead of real time (server.audio_burst_s); beyond it, it is dropped
AUDIO_BURST_S = 3.0
# a session that sent less than this share of real time in audio over the idle window is idle
# (server.idle_audio_share): low, so push-to-talk and turn-based clients stay, a trickle does not
IDLE_AUDIO_SHARE = 0.05
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LOG_CAP = 100  # refused hosts/origins logged at WARNING (then DEBUG: a page could flood the log)
WS_VERSION = "13"  # RFC 6455, the only WebSocket version kame speaks (aiohttp also takes the drafts' 7 and 8)


# ---- config ----------------------------------------------------------------------------------


def _items(value, key: str) -> list[str]:
    """A list of strings from a TOML list or a comma-separated string (--set key=a,b)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"server.{key}: expected a list of strings, got {value!r}")
    return [v.strip() for v in value if v.strip()]


def parse_origins(value) -> tuple[str, ...]:
    """``server.allowed_origins``: origins such as "https://app.example.com" (scheme, host, an
    optional port; no path), or "*" for any; normalized (lower case, default port left out)."""
    out = []
    for item in _items(value, "allowed_origins"):
        parts = None if item == "*" else _origin_parts(item)
        if item != "*" and parts is None:
            raise ConfigError(f"server.allowed_origins: {item!r} is not an origin; give the scheme and host of "
                              f"the page, e.g. \"https://app.example.com\" or \"http://localhost:3000\" (no path), "
                              f"or \"*\" for any")
        out.append("*" if parts is None else f"{parts[0]}://{_host_key(*parts[1:], parts[0])}")
    return tuple(out)


def parse_hosts(value) -> tuple[str, ...]:
    """``server.allowed_hosts``: host names (no port) the server answers to besides localhost,
    127.x.x.x and [::1] (and, on a non-loopback bind, its IP addresses and this machine's names);
    "*" for any."""
    out = []
    for item in _items(value, "allowed_hosts"):
        split = _split_host(item)
        if item != "*" and (split is None or split[1] is not None or "/" in item):
            raise ConfigError(f"server.allowed_hosts: {item!r} is not a host name; give the name clients use to "
                              f"reach the server, without scheme or port (e.g. \"kame.lan\"), or \"*\" for any")
        out.append("*" if item == "*" else split[0])
    return tuple(out)


def parse_share(value) -> float:
    """``server.idle_audio_share``: a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"server.idle_audio_share: expected a number from 0 to 1 (the share of real time a "
                          f"session must send in audio over idle_timeout_s; 0: any audio), got {value!r}")
    return float(value)


def parse_burst(value) -> float:
    """``server.audio_burst_s``: at least one 80 ms frame (kame.config declares the same minimum)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.08 <= value < float("inf"):
        raise ConfigError(f"server.audio_burst_s: expected a number of seconds, at least 0.08 (how far a client's "
                          f"audio may run ahead of real time before the excess is dropped; default "
                          f"{AUDIO_BURST_S:g}), got {value!r}")
    return float(value)


WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # binds on all addresses (loopback included)


def bound_host(host: str) -> str:
    """The address a bind on ``host`` listens on: a short numeric form the socket takes too ("0",
    "127.1", "0x7f.1", "2130706433") as the address it is ("0.0.0.0", "127.0.0.1"; was: taken for a
    LAN name, in the banner, the warnings and the Host rules); a name, an address or "" unchanged."""
    if not host.strip() or _is_ip(host.strip()):
        return host
    try:  # (read as the bind's getaddrinfo reads it; numeric only: no DNS asked)
        return socket.getaddrinfo(host.strip(), None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0][4][0]
    except (OSError, UnicodeError, IndexError):
        return host


def bind_warning(cfg) -> str | None:
    """The start-up warning for a server without a token that more than this machine's own programs
    can use: a non-loopback bind (any host that reaches it), or "*" in server.allowed_origins or
    allowed_hosts (any web page a user visits; was: not said on a loopback bind)."""
    if cfg.auth_token:
        return None
    host = bound_host(cfg.host)
    loopback = is_loopback_name(host)
    who = f"any web page a user of this machine{'' if loopback else ' or network'} visits can open sessions"
    pages = [f"{who} (server.allowed_origins has \"*\": cross-site WebSocket hijacking); list only your own pages' "
             f"origins in it, e.g. \"http://localhost:3000\""] if "*" in parse_origins(cfg.allowed_origins) else []
    if "*" in parse_hosts(cfg.allowed_hosts):
        pages.append(f"{who} through DNS rebinding (a name re-pointed at this address: server.allowed_hosts has "
                     f"\"*\", so any Host is answered); list only the names clients use in it")
    if loopback:
        return f"serving on {host} without an auth token: {'; '.join(pages)}; or give a token: --token-file PATH" \
            if pages else None
    also = " (it also listens on 127.0.0.1)" if host in WILDCARD_HOSTS else ""
    pages = pages or ["web pages cannot through DNS rebinding: it answers only to Host names that are IP addresses, "
                      "localhost, this machine's names or in server.allowed_hosts"]
    return (f"serving on {host}{also} without an auth token: anyone who can reach it can open sessions; "
            f"{'; '.join(pages)}; give a token: --token-file PATH")


# ---- Host and Origin -------------------------------------------------------------------------


def _split_host(value: str) -> tuple[str, int | None] | None:
    """"Name:port" / "[::1]:port" / "name" -> (lower-case name, port or None); None if malformed."""
    v = value.strip().lower()
    if not v:
        return None
    if v.startswith("["):
        end = v.find("]")
        host, rest = v[: end + 1], v[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    elif v.count(":") == 1:
        host, _, port = v.partition(":")
    else:
        host, port = v, None
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return None
    host = host.rstrip(".")  # ("localhost." is localhost)
    return (host, int(port) if port else None) if host else None


def _host_key(host: str, port: int | None, scheme: str) -> str:
    return host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"


def _origin_parts(origin: str) -> tuple[str, str, int | None] | None:
    """"HTTPS://App.example.com:8443" -> ("https", "app.example.com", 8443); None if it is not
    scheme://host[:port]."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    rest = rest.rstrip("/")
    if not sep or not scheme.isalpha() or not rest or "/" in rest or "@" in rest:
        return None
    split = _split_host(rest)
    return None if split is None else (scheme, *split)


def is_loopback_name(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (with or without brackets)."""
    h = host.strip().lower().strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    """An IPv4 or IPv6 address, the latter bracketed or not (a Host no DNS-rebinding page can have)."""
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        return False
    return True


def own_names(bind: str | None = None) -> frozenset[str]:
    """This machine's names, lower-case: socket.gethostname(), socket.getfqdn() and
    "<hostname>.local" (mDNS), and the name the server was bound by (``--host NAME``: the URL
    kame serve prints), which a non-loopback server without a token answers to. kame.server.app
    asks once, at start (getfqdn may ask the resolver)."""
    names = set()
    if bind and not _is_ip(bind) and bind.strip() not in ("", "*"):
        names.add(bind.strip().lower().rstrip("."))
    for get in (socket.gethostname, socket.getfqdn):
        try:
            names.add(get().strip().lower().rstrip("."))
        except (OSError, UnicodeError):  # (no name: IP addresses still work)
            pass
    try:
        names.add(socket.gethostname().strip().lower().split(".")[0] + ".local")
    except (OSError, UnicodeError):
        pass
    return frozenset(n for n in names if n and n != ".local")


def log_host_names(own: frozenset[str] | None, allowed) -> None:
    """Say at start which Host names a non-loopback server without a token answers to (its 403
    does not list them: a rebinding page could read them; the operator's log does)."""
    if own is not None and "*" not in allowed:  # (each name once: getfqdn() may be "localhost", said already)
        names = [n for n in dict.fromkeys(sorted(own) + [str(a).lower() for a in allowed]) if n != "localhost"]
        log.info("answering Host names: IP addresses, localhost%s; another name (a container's, a router's DNS "
                 "name) needs server.allowed_hosts or a token", "".join(f", {n}" for n in names))


def _from_proxy(request: web.BaseRequest, trusted: tuple, name: str) -> str | None:
    """Header ``name`` as the nearest proxy set it (its last value), only from a trusted proxy."""
    if not clientaddr.from_trusted_proxy(request, trusted):
        return None
    values = clientaddr.header_values(request, name)
    return values[-1] if values else None


def _forwarded(request: web.BaseRequest, server) -> bool:
    """Whether the request came through a trusted proxy: its peer is one, and it carries the
    X-Forwarded-For or -Host a proxy adds (a browser's WebSocket cannot send them; this keeps a
    DNS-rebinding page, whose peer is 127.0.0.1 too, from passing for the proxy)."""
    return clientaddr.from_trusted_proxy(request, server.trusted) and \
        any(h in request.headers for h in ("X-Forwarded-For", "X-Forwarded-Host"))


_RECIPE = {  # (nginx's lines; Caddy 2.5+ sends these headers itself)
    "X-Forwarded-Host": "nginx: proxy_set_header X-Forwarded-Host $http_host; proxy_set_header X-Forwarded-Proto "
                        "$scheme; Caddy sends them itself",
    "X-Forwarded-For": "nginx: proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; Caddy sends it itself",
}


def _proxy_hint(request: web.BaseRequest, server, need: str) -> str:
    """What to set when a request through a reverse proxy is refused for want of header ``need``
    (docs/protocol.md, "Behind a reverse proxy")."""
    peer = (request.remote or "?")[:60]
    if clientaddr.from_trusted_proxy(request, server.trusted):
        if need not in request.headers:
            return f"the reverse proxy at {peer} sent no {need}: have it send it ({_RECIPE[need]})"
        return "the reverse proxy's X-Forwarded-Host and -Proto do not name the page's origin"
    if any(h.startswith("x-forwarded-") for h in map(str.lower, request.headers)):
        return (f"X-Forwarded-* ignored: {peer} is not a trusted proxy; if it is your reverse proxy, start kame "
                f"serve with --trusted-proxy {peer} (server.trusted_proxy)")
    return (f"behind a reverse proxy: start kame serve with --trusted-proxy ADDRESS (server.trusted_proxy) and have "
            f"the proxy send {need} ({_RECIPE[need]})")


def origin_problem(request: web.BaseRequest, server) -> str | None:
    """Why a WebSocket upgrade's Origin is refused, or None: no Origin (not a browser), the
    server's own host:port (the page it serves), or one of ``server.allowed_origins``."""
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    allowed, parts = server.allowed_origins, _origin_parts(origin)
    if "*" in allowed or (parts is not None and f"{parts[0]}://{_host_key(*parts[1:], parts[0])}" in allowed):
        return None
    host = _from_proxy(request, server.trusted, "X-Forwarded-Host") or request.headers.get("Host", "")
    scheme = (_from_proxy(request, server.trusted, "X-Forwarded-Proto") or request.scheme).lower()
    split = _split_host(host)
    # the page's own server: the same host:port (each without its scheme's default port)
    if parts is not None and split is not None and _host_key(*parts[1:], parts[0]) == _host_key(*split, scheme):
        return None
    return (f"cross-origin WebSocket refused: the page at Origin {origin[:100]!r} is not served by this server "
            f"(Host {host[:100]!r}); {_proxy_hint(request, server, 'X-Forwarded-Host')}; or, to let a page "
            f"served elsewhere use it, list its origin in server.allowed_origins (docs/protocol.md, \"Behind a reverse proxy\")")


def host_problem(request: web.BaseRequest, server) -> str | None:
    """Why the request's Host is refused (DNS rebinding), or None. Checked on a loopback bind
    (loopback names only), and on another bind without a token (``server.own_names`` is then this
    machine's names; IP addresses pass too: a rebinding page needs a domain name); with a token it
    is not (the page cannot know the token). A request forwarded by a trusted proxy is not checked
    either: the proxy decides which names it serves."""
    own = server.own_names  # (None on a loopback bind)
    if (own is None and not server.loopback) or _forwarded(request, server):
        return None
    host = request.headers.get("Host", "")
    split = _split_host(host)
    allowed = server.allowed_hosts
    if "*" in allowed or (split is not None and (is_loopback_name(split[0]) or split[0] in allowed)):
        return None
    if own is not None and split is not None and (_is_ip(split[0]) or split[0] in own):
        return None
    if split is None:  # (no name to allow: say so, not "add it to allowed_hosts")
        return (f"{'no Host header' if not host.strip() else f'a malformed Host header ({host[:100]!r})'}: this "
                f"server answers only requests whose Host names it (HTTP/1.1 clients send one; a health check "
                f"over HTTP/1.0 must add 'Host: localhost' or the server's address)")
    proxy = f"{_proxy_hint(request, server, 'X-Forwarded-For')} (docs/protocol.md, \"Behind a reverse proxy\")"
    if own is None:
        return (f"Host {host[:100]!r} refused: this server listens on a loopback address and answers only to "
                f"localhost, 127.0.0.1 or [::1] (a page on another name reaching it would be DNS rebinding); "
                f"to reach it by that name, add it to server.allowed_hosts; or, {proxy}")
    # (the names are not listed: a rebinding page can read this answer)
    return (f"Host {host[:100]!r} refused: this server listens on {server.cfg.host or 'all addresses'} without an "
            f"auth token and answers only to its IP addresses, localhost and this machine's own names (its host "
            f"name, its fully qualified name, HOSTNAME.local) (a page on another name reaching it would be DNS "
            f"rebinding); to reach it by that name, add it to "
            f"server.allowed_hosts, or give the server a token (--token-file PATH), or use its IP address in "
            f"the URL; or, {proxy}")


def _log_refusal(server, request: web.BaseRequest, why: str) -> None:
    level = logging.WARNING if server.refusals_logged < _LOG_CAP else logging.DEBUG
    server.refusals_logged += 1
    # (the path as sent: a decoded %0A would start a line of its own; ``why`` quotes with repr)
    log.log(level, "refused %s %s from %s (HTTP 403): %s", clean(request.method), clean(request.rel_url.raw_path),
            ops.client_logged(request, server.trusted), why)


@web.middleware
async def host_guard(request: web.Request, handler):
    """403 for every request whose Host the server must not answer (DNS rebinding: host_problem)."""
    server = request.app[ops.SERVER_KEY]
    why = host_problem(request, server)
    if why is None:
        return await handler(request)
    _log_refusal(server, request, why)
    body = {"error": "forbidden_host", "message": why}
    if request.path == "/api/chat":  # (counted as /api/chat's refusals are)
        return ops.refuse(server, body, status=403)
    return web.json_response(body, status=403)


def refuse_origin(request: web.Request, server) -> web.Response | None:
    """A 403 for /api/chat when its Origin is refused (origin_problem), else None."""
    why = origin_problem(request, server)
    if why is None:
        return None
    _log_refusal(server, request, why)
    return ops.refuse(server, {"error": "forbidden_origin", "message": why}, status=403)


def refuse_version(request: web.Request) -> web.Response | None:
    """A 426 for a WebSocket upgrade of another version than RFC 6455's 13 (aiohttp would accept
    the drafts' 7 and 8), naming the one required as RFC 6455 section 4.2.2 asks; else None."""
    version = request.headers.get("Sec-WebSocket-Version")
    if version is None or version == WS_VERSION or request.headers.get("Upgrade", "").strip().lower() != "websocket":
        return None  # (no upgrade, or no version at all: the not_websocket 400)
    return web.json_response(
        {"error": "websocket_version", "message": f"WebSocket version {version[:20]!r} is not supported: "
         f"kame speaks RFC 6455, Sec-WebSocket-Version: {WS_VERSION} (every current browser and WebSocket library)"},
        status=426, headers={"Sec-WebSocket-Version": WS_VERSION, "Upgrade": "websocket"})


def loads(agent) -> str:
    """What ``agent`` loads, for the "loading" 503 and kame serve's line (a cascade: no front-end or
    codec; a tandem with cascade.hybrid_routing: a TTS too, for the turns it answers the cascade's way)."""
    cfg = getattr(agent, "config", None)
    if getattr(cfg, "mode", None) == "cascade":
        return "STT, LLM, TTS"
    return "front-end, codec, STT, LLM" + (", TTS" if getattr(getattr(cfg, "cascade", None), "hybrid_routing", False)
                                            else "")


# ---- slow clients ------------------------------------------------------------------------------


class SlowClient(Exception):
    pass


class SendQueue:
    """Bounded outgoing queue. Audio is droppable (oldest first); other messages are not."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._q: collections.deque[tuple[bytes, bool]] = collections.deque()
        self._ev = asyncio.Event()  # set: something to send
        self._room = asyncio.Event()  # set: the writer took a message
        self.dropped = 0

    def put(self, data: bytes, droppable: bool = False) -> None:
        if len(self._q) >= self.maxlen:
            for i, (_, d) in enumerate(self._q):
                if d:
                    del self._q[i]
                    self.dropped += 1
                    break
            else:
                if droppable:
                    self.dropped += 1
                    return
                raise SlowClient(f"client is not reading: {len(self._q)} messages queued")
        self._q.append((data, droppable))
        self._ev.set()

    async def put_when_room(self, data: bytes) -> None:
        """``put`` for replies to the client's own messages (pongs, protocol errors): while the
        queue is nearly full (all but a quarter of it, at most 8 places, kept for the agent's
        text and metadata and for a final error) of messages that cannot be dropped, wait until
        the writer takes one, so a client that sends a burst faster than the replies go out is
        slowed down (its messages wait unread) instead of closed as not reading. A client that
        really stops reading is caught by the connection's send timeout."""
        room = self.maxlen - min(8, self.maxlen // 4)
        while len(self._q) >= room and sum(1 for _, d in self._q if not d) >= room:
            self._room.clear()
            await self._room.wait()
        self.put(data)

    async def get(self) -> bytes:
        while not self._q:
            self._ev.clear()
            await self._ev.wait()
        self._room.set()
        return self._q.popleft()[0]

    def __len__(self) -> int:
        return len(self._q)


def hard_limit(cfg) -> int:
    """The largest client message read (max_message_bytes x hard_message_factor); beyond: 1009."""
    return cfg.max_message_bytes * cfg.hard_message_factor


def hard_limit_said(cfg, error) -> str:
    """aiohttp's error text for a message beyond it, naming the limit, not aiohttp's (one more)."""
    return str(error).replace(f"exceeds limit {hard_limit(cfg) + 1}", f"exceeds limit {hard_limit(cfg)}")


async def close_ws(ws: web.WebSocketResponse, transport, code: int, message: bytes, timeout: float = 2.0) -> None:
    """Closes ``ws`` (its close frame, the client's answer awaited up to ``timeout``), then
    drop_unsent: a client that has not taken everything sent, the close frame included, within
    ``timeout`` more (it stopped reading) loses its TCP connection. Not at once: aiohttp's close
    returns once the send buffer is below its low-water mark (at once when the client closed
    first), and a client that reads gets the end of the stream and the close frame."""
    try:
        await asyncio.wait_for(ws.close(code=code, message=message), timeout)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    except asyncio.CancelledError:  # (aiohttp's drain waiter, cancelled under a stuck close: not this task's)
        if (me := asyncio.current_task()) is not None and me.cancelling():
            raise
    finally:
        drop_unsent(transport, timeout)


def drop_unsent(transport, grace: float = 2.0) -> None:
    """Aborts ``transport`` (closed, or closing: its close waits for its buffer to be sent) if
    data is still unsent ``grace`` seconds from now: the transport's graceful close would wait
    for it as long as a client that stopped reading keeps the connection open, holding an fd and
    its buffers (megabytes) outside max_sessions. A client that reads has emptied it by then."""
    if transport is None or not transport.get_write_buffer_size():
        return

    def drop() -> None:
        if transport.get_write_buffer_size():  # (0 once sent, or once the connection is lost)
            log.debug("dropping a TCP connection with %d bytes unsent %g s after its close",
                      transport.get_write_buffer_size(), grace)
            transport.abort()

    asyncio.get_running_loop().call_later(grace, drop)


# ---- sessions per client -----------------------------------------------------------------------


class ClientSlots:
    """Live sessions per client, for ``server.max_sessions_per_client`` (0: no cap); a client is
    its address's clientaddr.client_key (an IPv6 address's /64; ``trusted``: the proxies' networks)."""

    def __init__(self, cap: int, trusted: tuple = ()) -> None:
        self.cap, self.trusted = cap, trusted
        self._n: collections.Counter[str] = collections.Counter()

    def take(self, addr: str) -> bool:
        key = clientaddr.client_key(addr, self.trusted)
        if self.cap and self._n[key] >= self.cap:
            return False
        self._n[key] += 1
        return True

    def give_back(self, addr: str) -> None:
        key = clientaddr.client_key(addr, self.trusted)
        self._n[key] -= 1
        if self._n[key] <= 0:
            del self._n[key]

    def __getitem__(self, addr: str) -> int:
        return self._n.get(clientaddr.client_key(addr, self.trusted), 0)


# ---- client audio ------------------------------------------------------------------------------


class AudioBudget:
    """Client audio accepted at real time plus a burst: a credit of seconds that grows with the
    clock up to ``burst_s`` and that each accepted message spends (a message is accepted while
    any credit is left, so one message, of at most 10 s, may overdraw it: the server checks a
    message before it charges it). Audio past it is dropped before it is decoded, counted in
    ``dropped_s``."""

    def __init__(self, clock, burst_s: float = AUDIO_BURST_S) -> None:
        self.clock, self.burst_s = clock, burst_s
        self.credit, self.at = burst_s, clock.now()
        self.dropped_s, self.dropped_messages = 0.0, 0
        self.reported_s = self.agent_dropped_s = 0.0  # (for the client's stats)

    def take(self, seconds: float) -> bool:
        now = self.clock.now()
        self.credit, self.at = min(self.burst_s, self.credit + (now - self.at)), now
        if seconds <= 0:  # (Ogg header pages: no audio)
            return True
        if self.credit <= 0:
            self.dropped_s += seconds
            self.dropped_messages += 1
            return False
        self.credit -= seconds
        return True

    def merged(self, data):
        """An agent's "stats" Meta with the input the server dropped added to its dropped_input_s:
        the client is told the total (kame client warns of the largest it saw), and ``report``
        does not send it again."""
        if isinstance(data, dict) and data.get("type") == "stats":
            try:
                self.agent_dropped_s = float(data.get("dropped_input_s") or 0.0)
            except (TypeError, ValueError):
                return data
            if self.dropped_s:
                data = {**data, "dropped_input_s": round(self.agent_dropped_s + self.dropped_s, 3)}
                self.reported_s = self.dropped_s
        return data

    def report(self, session_id: str) -> dict | None:
        """A "stats" object with that total when the server dropped more since its last report,
        else None (sent at the pace of the agent's output, which may send no stats of its own)."""
        if self.dropped_s == self.reported_s:
            return None
        self.reported_s = self.dropped_s
        return {"type": "stats", "session": session_id, "dropped_input_s": round(self.agent_dropped_s + self.dropped_s, 3)}


class AudioActivity:
    """Seconds of client audio received over the last ``window_s`` (in 16 buckets), to tell a
    session in use from one kept open by a sample now and then."""

    def __init__(self, clock, window_s: float, share: float = IDLE_AUDIO_SHARE) -> None:
        self.clock, self.window_s, self.share = clock, window_s, share
        self.width = window_s / 16 if window_s > 0 else 1.0
        self.opened = clock.now()
        self._buckets: collections.deque[list] = collections.deque()  # [index, seconds]

    def add(self, seconds: float) -> None:
        i = int(self.clock.now() // self.width)
        if self._buckets and self._buckets[-1][0] == i:
            self._buckets[-1][1] += seconds
        else:
            self._buckets.append([i, seconds])
        self._prune()

    def _prune(self) -> None:
        first = int((self.clock.now() - self.window_s) // self.width)
        while self._buckets and self._buckets[0][0] < first:
            self._buckets.popleft()

    def received_s(self) -> float:
        self._prune()
        return sum(s for _, s in self._buckets)

    def idle(self) -> str | None:
        """Why the session is idle (a full window open, too little audio in it), or None."""
        if self.window_s <= 0 or self.clock.now() - self.opened < self.window_s:
            return None
        got = self.received_s()
        if got >= self.share * self.window_s:
            return None
        if got == 0:
            return f"no audio from the client for {self.window_s:g} s"
        return (f"the client sent only {got:.2f} s of audio in the last {self.window_s:g} s (less than "
                f"{self.share * 100:g} % of real time, server.idle_audio_share: a session in use sends its audio)")
