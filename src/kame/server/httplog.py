"""aiohttp's own log lines in `kame serve`: tokens kept out of them (RedactQueries, on aiohttp's
loggers), and a malformed request said in one WARNING, not a flood of them (HttpLog, the logger
kame.server.app gives aiohttp's request handler); asyncio's "out of file descriptors" when it
accepts a connection, and kame's refusals of connections over its caps, said once in a while
(accept_errors); each of these through one Throttle. aiohttp's loggers keep the levels their user
gave them: nothing here sets one."""

from __future__ import annotations

import logging
import sys
import time

from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from .logsafe import TOO_LONG, clean, redact

MALFORMED_BURST = 5  # malformed requests said at WARNING in a row ...
MALFORMED_EVERY_S = 12.0  # ... then one per this many seconds (the others at DEBUG, counted)


class RedactQueries(logging.Filter):
    """On aiohttp's loggers. aiohttp logs a malformed request (a bad Content-Length, a control
    character in the URL) at ERROR with a traceback whose message quotes the raw request line or
    header, ``?token=SECRET`` or ``Authorization: Bearer SECRET`` included. Such a request is the
    client's fault: it becomes one line (at WARNING, or the lower level HttpLog gave it) without
    the traceback, secret header values cut and control characters escaped (of a line or header
    too long to read, LineTooLong, only its length is said: aiohttp quotes a header's value
    without its name); in every line a query string is cut to ``?…``."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            lines = [redact(x.strip()) for x in str(exc.message).splitlines()]  # (per line: a header's ends it)
            said = " ".join(x for x in lines if x and set(x) != {"^"})  # (no caret lines)
            if isinstance(exc, LineTooLong) and len(exc.args) > 1:  # (args: line, limit, size; its quote may be a
                said = f"Got more than {clean(exc.args[1])} bytes when reading {TOO_LONG}"  # header's value alone)
            more = getattr(record, "kame_suppressed", 0)
            record.msg = clean(redact(f"{record.getMessage()}: malformed request (HTTP {exc.code}): {said}"
                                      + (f" (and {more} more since the last of these warnings, at DEBUG)"
                                         if more else "")))
            record.args = ()
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
            return True
        msg = record.getMessage()
        if redact(msg) != msg:
            record.msg, record.args = redact(msg), ()
        if record.exc_info and not record.exc_text:  # (formatters print exc_text when it is set)
            text = logging.Formatter().formatException(record.exc_info)
            if redact(text) != text:
                record.exc_text = redact(text)
        return True


REDACT = RedactQueries()


def install_log_filters() -> None:
    """Idempotent (one filter instance)."""
    for name in ("aiohttp.server", "aiohttp.access", "aiohttp.web"):
        logging.getLogger(name).addFilter(REDACT)


class Throttle:
    """Log lines said ``burst`` in a row at most, then one per ``every_s`` (a bucket of ``burst``
    lines, refilled by one per ``every_s``; burst 1: one per ``every_s``): ``due()`` is the number
    of lines left out since the last one said (0 or more) when one may be said now, else None (and
    it is counted)."""

    def __init__(self, every_s: float, clock=time.monotonic, *, burst: int = 1) -> None:
        self.every_s, self.burst, self.clock = every_s, burst, clock
        self.full_at: float | None = None  # when the bucket is full again (None: it is)
        self.suppressed = 0

    def due(self) -> int | None:
        now = self.clock()
        full_at = now if self.full_at is None else max(self.full_at, now)
        if full_at - now > (self.burst - 1) * self.every_s:  # (less than one line left in the bucket)
            self.suppressed += 1
            return None
        self.full_at, more, self.suppressed = full_at + self.every_s, self.suppressed, 0
        return more


class HttpLog(logging.LoggerAdapter):
    """The logger of aiohttp's request handler (web.Application's handler_args): aiohttp.server,
    except for a malformed request (an HttpProcessingError), which is logged at WARNING (a
    request not HTTP at all, e.g. TLS handshake bytes, aiohttp logs at DEBUG; the rest at ERROR
    with a traceback: RedactQueries makes it one line) but at most MALFORMED_BURST in a row, then
    one per MALFORMED_EVERY_S: the others at DEBUG, their number said in the next WARNING (a
    port scan must not flood the log)."""

    def __init__(self, clock=time.monotonic) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.throttle = Throttle(MALFORMED_EVERY_S, clock, burst=MALFORMED_BURST)

    def log(self, level, msg, *args, exc_info=None, **kwargs) -> None:
        exc = sys.exc_info()[1] if exc_info is True else exc_info
        if isinstance(exc, HttpProcessingError):
            more = self.throttle.due()
            level = logging.DEBUG if more is None else logging.WARNING
            kwargs["extra"] = {**(kwargs.get("extra") or {}), "kame_suppressed": more or 0}
        if self.logger.isEnabledFor(level):
            self.logger.log(level, msg, *args, exc_info=exc_info, **kwargs)


# ---- connections: out of file descriptors, refused ---------------------------------------------

ACCEPT_ERROR_EVERY_S = 60.0  # "out of file descriptors" said at most once per this many seconds


def accept_errors(cfg, previous=None, every_s: float = ACCEPT_ERROR_EVERY_S, clock=time.monotonic):
    """An asyncio exception handler (loop.set_exception_handler) for `kame serve`: asyncio's
    "socket.accept() out of system resource" (the process is out of file descriptors: EMFILE,
    or the system's) becomes one ERROR line without a traceback, at most one per ``every_s``,
    saying what to do (was: an ERROR with a traceback per attempt, asyncio 3.11 retrying up to
    the backlog at once each time: over 100 MB of log a minute). Anything else goes to
    ``previous`` (or the loop's default handler)."""
    throttle = Throttle(every_s, clock)
    log = logging.getLogger("kame.server")

    def handle(loop, context: dict) -> None:
        if not str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        more = throttle.due()
        if more is None:
            return
        exc = context.get("exception")
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "out of system resource"
        log.error("cannot accept new connections (%s): they wait until some close. Raise the open-file limit "
                  "(ulimit -n, now %s) or lower server.max_connections (%d) and server.max_connections_per_client "
                  "(%d)%s", clean(why), open_files_limit() or "unknown", cfg.max_connections,
                  cfg.max_connections_per_client,
                  f" ({more} more of these since the last)" if more else "")

    return handle


def open_files_limit() -> int | None:
    """The process's soft limit on open files (``ulimit -n``), None if unlimited or unknown."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft
