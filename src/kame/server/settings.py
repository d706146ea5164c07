"""The server's settings: ServerConfig (the fields of a config's [server] section, kame.config
keeps the declarations in sync) and how kame serve builds it from a config, checked before any
model loads; which files of the page's folder are served (``unserved``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import ConfigError
from ..paths import local_path
from . import guard, ops


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8998  # Moshi's default port
    max_message_bytes: int = 65536  # larger client messages get a 0x05 error and are dropped
    hard_message_factor: int = 4  # beyond max_message_bytes * this, the socket is closed (1009)
    idle_timeout_s: float = 30.0  # too little client audio over this long (idle_audio_share) -> 0x05 error + close
    idle_audio_share: float = guard.IDLE_AUDIO_SHARE  # of real time, over idle_timeout_s: less is idle (0..1)
    audio_burst_s: float = guard.AUDIO_BURST_S  # client audio this far ahead of real time is taken; beyond: dropped
    auth_token: str | None = None  # if set, required as Bearer header or ?token=
    auth_token_file: str | None = None  # a file holding auth_token (read by server_config_from)
    max_session_s: float = 0.0  # a session open this long -> 0x05 session_limit + close; 0: no limit
    send_queue_messages: int = 64  # per-client outgoing queue (~5 s of 80 ms audio; kame.config: at least 16)
    send_timeout_s: float = 10.0  # one send blocked this long -> the client is gone, close; 0: never
    max_errors: int = 100  # protocol errors per connection before it is closed
    static_dir: str | None = None  # default: the package's static/ folder
    trusted_proxy: str | None = None  # reverse proxies (addresses/networks) whose X-Forwarded-For is believed
    allowed_origins: list = field(default_factory=list)  # other pages' origins that may open sessions; "*": any
    allowed_hosts: list = field(default_factory=list)  # Host names answered besides localhost's (guard.host_problem)
    max_sessions_per_client: int = 0  # live sessions from one client address (IPv6: its /64); 0: no cap
    # a connection that has not sent a whole request's headers this long after it opened (or after its last
    # answer: an idle keep-alive) is closed; a WebSocket session is not (idle_timeout_s is its)
    header_timeout_s: float = 20.0
    max_connections: int = 256  # open TCP connections in all; more are refused at once (503)
    max_connections_per_client: int = 32  # open TCP connections per peer address (IPv6: its /64; 429); 0: no cap


def server_config_from(section) -> ServerConfig:
    """A ServerConfig from a config's [server] section (object or dict); unknown keys are errors."""
    if section is None:
        return ServerConfig()
    import dataclasses

    items = section if isinstance(section, dict) else dataclasses.asdict(section)
    known = {f.name for f in fields(ServerConfig)}
    unknown = sorted(set(items) - known)
    if isinstance(section, dict) and unknown:
        raise ConfigError(f"unknown [server] keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    cfg = ServerConfig(**{k: v for k, v in items.items() if k in known})
    # "" = no auth; stripped, a blank one refused, as --token's and KAME_AUTH_TOKEN's
    cfg.auth_token = ops.clean_token(cfg.auth_token, "server.auth_token",
                                     "set it to the token, or leave it unset (or empty)")
    guard.parse_origins(cfg.allowed_origins), guard.parse_hosts(cfg.allowed_hosts)  # (bad ones: before the agent loads)
    guard.parse_share(cfg.idle_audio_share), guard.parse_burst(cfg.audio_burst_s)
    ops.config_token(cfg)  # server.auth_token_file (before the agent loads)
    if cfg.static_dir:  # (here: a server-only key stops no `kame run`)
        if not local_path(cfg.static_dir).is_dir():
            raise ConfigError(f"server.static_dir: {cfg.static_dir!r} is not a folder (it holds the browser page: "
                              f"index.html and its files; leave it unset for kame's own page)")
        why = unserved(local_path(cfg.static_dir) / "index.html")
        if why == "missing":  # (was: served, / answering 404, with no word)
            raise ConfigError(f"server.static_dir: {cfg.static_dir!r} has no index.html (the page at /): put the "
                              f"page's in it, or leave static_dir unset for kame's own page")
        if why is not None:
            raise ConfigError(f"server.static_dir: {cfg.static_dir!r}: its index.html (the page at /) is {why}; only "
                              f"regular files at the folder's top level are served (no symlinks, no subfolders: copy "
                              f"the files in), or leave static_dir unset for kame's own page")
    return cfg


def unserved(path: Path) -> str | None:
    """Why a file of the page's folder is not served ("a symlink", "a folder", ...; None: it is):
    only the regular files at its top level are, so a request names one of them, never a path."""
    if path.is_symlink():
        return "a symlink"
    if path.is_dir():
        return "a folder"
    if not path.exists():
        return "missing"
    return None if path.is_file() else "not a regular file"


ECHO_KEYS_FIX = "give --agent config for the configured agent"


def echo_server_config(config: str | None, overrides: list[str], fix: str = ECHO_KEYS_FIX) -> ServerConfig:
    """The echo agent's server settings: the [server] section of the config and ``--set``
    overrides when given (checked like any config: unknown keys are errors; then check_echo_keys),
    else the defaults. The config file's other keys are not used: a warning names them."""
    if not config and not overrides:
        return ServerConfig()
    import sys

    from ..config import load_config

    loaded = load_config(config, overrides)  # (a typo's "unknown config key ..., did you mean": said first)
    check_echo_keys(overrides, fix)
    if (unused := sorted(k for k in getattr(loaded, "_sources", {}) if not k.startswith("server."))):
        print(f"warning: the echo agent (no model) uses only the [server] section of {config}; not used: "
              f"{', '.join(unused)}", file=sys.stderr, flush=True)
    return server_config_from(loaded.server)


def check_echo_keys(overrides: list[str], fix: str = ECHO_KEYS_FIX) -> None:
    """The echo agent's ``--set`` overrides are server.* keys alone: another (runtime.max_sessions,
    backend.llm) is a ConfigError ending with ``fix`` (was ignored by kame serve --agent echo: its
    /api/health showed the defaults); kame serve and kame bench soak."""
    others = [kv for kv in overrides if kv.partition("=")[0].strip().split(".")[0] != "server"]
    if others:
        raise ConfigError(f"--set {others[0]}: the echo agent takes only server.* keys; {fix}")
