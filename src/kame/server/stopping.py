"""How `kame serve` stops (kame.server.app.main): the signals that stop it, what the log says
(``stopping: SIGTERM`` when the stop begins, ``stopped after S s (exit N)`` when it has ended),
its exit status, and the help text that lists them.

    stopping = Stopping()      # records the signals' handlers of before the server (done gives them back)
    if stopping.early():       # checkpoints before the server's loop: a signal kame.cli recorded (then return)
        return stopping.status
    stopping.install()         # on the running loop, after aiohttp's handlers: replaces them
    web.run_app(...)           # a stop signal: logged, the stop begins (web.GracefulExit)
    ... release the back-end's children ...
    stopping.done()            # "stopped after S s (exit N)"; the signals' handlers given back
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from aiohttp import web

from ..runtime.signals import early_signal, records

log = logging.getLogger("kame.server")

SERVE_EPILOG = """\
stopping:
  Ctrl-C (SIGINT) or SIGTERM   closes the sessions (their final stats sent, then 1001 "server
                               shutting down"), stops the agent and its back-end children and
                               exits; a second Ctrl-C quits at once, a second SIGTERM is ignored.
                               During start-up it cancels the agent's load and exits without
                               waiting for a model still loading in the process
  SIGHUP                       as SIGTERM (a closed terminal), unless ignored (nohup)

exit status:
  0    stopped by SIGTERM (a service manager's normal stop) or SIGHUP
  1    an error before serving (config, token file, address in use), or the agent could
       not start
  2    command-line syntax
  130  stopped by Ctrl-C (SIGINT), as every kame command
"""

# SIGTERM and SIGHUP (where there is one): the stop signals held from the first one to the end
HELD = (signal.SIGTERM,) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


class Stopping:
    """Which signal stopped `kame serve`, for the log and its exit status. ``install`` (on the
    running loop, after aiohttp's handlers, so it replaces its SIGINT's and SIGTERM's) handles
    Ctrl-C (exit 130, as every kame command), SIGTERM (0: a service manager's normal stop is no
    failure) and SIGHUP (where there is one: its terminal or ssh session closed, a `kill -HUP`:
    as SIGTERM; not where the process was started with it ignored: nohup's, left ignored as
    kame.runtime.interrupt does). The first logs ``stopping: CAUSE`` and begins the stop
    (web.GracefulExit). From then to ``done`` SIGTERM and SIGHUP are ignored (``begin``); a
    Ctrl-C then quits at once (KeyboardInterrupt). Before these handlers, from the command's
    start, kame.cli's ``stopped_early`` records SIGTERM and SIGHUP: ``early`` (main's checkpoints
    before the server's loop) and ``install`` (as the loop takes them over) make a recorded one the
    same stop, exit 0. ``done`` gives SIGTERM and SIGHUP back the handlers they had before the
    server, recorded when the Stopping is created (before web.run_app: not aiohttp's, asyncio's that
    do nothing), so that a SIGTERM in the rest of the exit ends the process; stopped_early's, which
    only records, is not given back: a SIGTERM or SIGHUP then ends the process at once with the
    stop's status (``_leave``)."""

    def __init__(self) -> None:
        self.interrupted = False  # a Ctrl-C (exit 130)
        self.failed = False  # (done's: the agent could not start, exit 1)
        self.cause: str | None = None  # what began the stop, once it has begun ("SIGTERM", ...)
        self.since: float | None = None  # (time.monotonic()) when it began
        # SIGTERM's and SIGHUP's handlers before the server's loop, and those of the signals install
        # handles (begin holds them to done, which gives these back)
        self._before = {sig: signal.getsignal(sig) for sig in HELD}
        self._held: dict = {}

    def install(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGINT, self._sigint)
            for sig in HELD:  # (not where it is ignored: nohup's SIGHUP, so the server outlives its terminal)
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._held[sig] = self._before[sig]
                    loop.add_signal_handler(sig, self._stop_signal, sig)
            # one kame.cli's early stop recorded before these handlers: the stop begins now, as for
            # one from now on (checked after the handlers are in: none comes in between unseen)
            if (sig := early_signal()) is not None:
                loop.call_soon(self._stop_signal, sig)
        except (NotImplementedError, RuntimeError):  # no signal handlers there (Windows, not the main thread)
            pass

    def early(self) -> bool:
        """Whether kame.cli's early stop recorded a SIGTERM or SIGHUP (kame.runtime.signals'
        early_signal): if so the stop begins and ends here, logged as a later one's (main's
        checkpoints before the server's loop, where nothing is running yet to be stopped)."""
        sig = early_signal()
        if sig is not None:
            # (the signals the recorder handles are held, as install's would be: done gives them _leave)
            self._held = {s: h for s, h in self._before.items() if records(signal.getsignal(s))}
            self.begin(_cause(sig))
            self.done()
        return sig is not None

    def _stop_signal(self, sig: int) -> None:
        if self.since is not None:  # (begun already: the recorded one came through the loop's handler too)
            return
        self.begin(_cause(sig))
        raise web.GracefulExit()

    def _sigint(self) -> None:
        if self.since is not None:  # Ctrl-C during the stop (a second one, or after SIGTERM): quit at once
            self.interrupted = True
            raise KeyboardInterrupt
        self.interrupted = True
        self.begin("Ctrl-C (SIGINT)")
        raise web.GracefulExit()

    def begin(self, cause: str | None) -> None:
        """The stop begins (once; ``cause``: logged; None: not a signal's, e.g. the agent could
        not start, said elsewhere, or the server's loop has ended): it is timed, and SIGTERM and
        SIGHUP are held to ``done``, by a handler that does nothing (not SIG_IGN, which the
        children started meanwhile would inherit). Was: aiohttp's SIGTERM handler cut the stop
        under way short, and once the server had stopped the default action killed the process
        (143) while the back-end's children were being stopped, leaving them running."""
        if self.since is not None:
            return
        self.cause, self.since = cause, time.monotonic()
        if cause:
            log.info("stopping: %s", cause)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # (after the server's loop: its handlers are gone already)
            loop = None
        for sig in self._held:
            if loop is not None:  # (then aiohttp's own removal at its end finds none: no SIG_DFL meanwhile)
                loop.remove_signal_handler(sig)
            signal.signal(sig, _ignored)

    def done(self, failed: bool = False) -> None:
        """The stop has ended (the server, the agent, the back-end's children): log it with how
        long it took and the exit status, and give the held signals their handlers back
        (``failed``: the agent could not start, the exit status is 1: _leave's too)."""
        self.failed = failed
        if self.cause:
            log.info("stopped after %.1f s (exit %d)", time.monotonic() - self.since, self.status)
        for sig, handler in self._held.items():  # (None: set outside Python; SIG_DFL, as asyncio's removal)
            handler = self._leave if records(handler) else handler  # (no checkpoint reads a record any more)
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def _leave(self, signum, frame) -> None:
        """A SIGTERM or SIGHUP once the stop is done (a step of the exit that hangs: an exit hook, a
        thread joined): the process ends at once, as a kill would, with the stop's status (1 after
        a failed start)."""
        # a bare os._exit, not childproc.leave_now: no flush, no log shutdown (the hang may hold their locks)
        os._exit(1 if self.failed else self.status)

    @property
    def status(self) -> int:
        return 130 if self.interrupted else 0


def _cause(sig: int) -> str:
    """The log's name for a stop signal's cause."""
    return "SIGTERM" if sig == signal.SIGTERM else "hang-up (SIGHUP), as for SIGTERM"


def _ignored(signum, frame) -> None:
    """A stop signal during the stop under way: it goes on (and nothing is written here: this runs
    between two bytecodes of the main thread, perhaps inside a log line's write)."""


def leave_if_loading(health, status: int) -> None:
    """After the server stopped while the agent loaded (``health.cut_short``, a kame.server.ops
    Health): the cancelled load has terminated its back-end children, but a model loading in this
    process (the front-end's: a minute for a large preset) runs on to its end; leave now with
    ``status`` instead of waiting for it (kame.backend.childproc.exit_if_loading)."""
    from ..backend.childproc import exit_if_loading

    if health.cut_short:
        exit_if_loading(status, log.info)
