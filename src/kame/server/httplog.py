"""aiohttp's own log lines in `kame serve`: tokens kept out of them (RedactQueries, on aiohttp's
loggers), and a malformed request said in one WARNING, not a flood of them (HttpLog, the logger
kame.server.app gives aiohttp's request handler). aiohttp's loggers keep the levels their user
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


class HttpLog(logging.LoggerAdapter):
    """The logger of aiohttp's request handler (web.Application's handler_args): aiohttp.server,
    except for a malformed request (an HttpProcessingError), which is logged at WARNING (a
    request not HTTP at all, e.g. TLS handshake bytes, aiohttp logs at DEBUG; the rest at ERROR
    with a traceback: RedactQueries makes it one line) but at most MALFORMED_BURST in a row, then
    one per MALFORMED_EVERY_S: the others at DEBUG, their number said in the next WARNING (a
    port scan must not flood the log)."""

    def __init__(self, clock=time.monotonic) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.clock = clock
        self.credit, self.at, self.suppressed = float(MALFORMED_BURST), clock(), 0

    def log(self, level, msg, *args, exc_info=None, **kwargs) -> None:
        exc = sys.exc_info()[1] if exc_info is True else exc_info
        if isinstance(exc, HttpProcessingError):
            now = self.clock()
            self.credit = min(float(MALFORMED_BURST), self.credit + (now - self.at) / MALFORMED_EVERY_S)
            self.at = now
            if self.credit >= 1:
                self.credit -= 1
                level, more, self.suppressed = logging.WARNING, self.suppressed, 0
            else:
                level, more = logging.DEBUG, 0
                self.suppressed += 1
            kwargs["extra"] = {**(kwargs.get("extra") or {}), "kame_suppressed": more}
        if self.logger.isEnabledFor(level):
            self.logger.log(level, msg, *args, exc_info=exc_info, **kwargs)
