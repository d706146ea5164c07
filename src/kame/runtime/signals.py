"""Signal handlers that import nothing heavier than the standard library's ``signal`` and
``contextlib``: ``handling`` (a handler within a block, the previous one given back) and
``stopped_early`` (`kame serve`'s SIGTERM and SIGHUP before its server's loop handles them: recorded,
for its checkpoints to read with ``early_signal``). Kept apart from kame.runtime.interrupt, which
imports asyncio (0.1-0.3 s at start-up on a busy machine), so that kame.cli installs
``stopped_early`` as soon as its command line runs, before any such import:

    with stopped_early(signal.SIGTERM, signal.SIGHUP):   # kame.cli._main, for `kame serve`
        ...                                              # a SIGTERM here is only recorded
        early_signal()                                   # kame.server's checkpoints: signal.SIGTERM
"""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def handling(sig: int, handler, *, keep_replaced: bool = False):
    """``handler`` for signal ``sig`` within the block, the previous one restored at its end (with
    ``keep_replaced``, only where ``handler`` still handles it: one installed meanwhile stays);
    yields that previous handler, or None where none was installed: the signal is ignored (``cmd &``
    in a script ignores SIGINT), handled outside Python (getsignal's None: signal.signal could not
    restore it), or this is not the main thread. (first_ctrl_c's, sigterm_held's and kame eval
    mtbench's handlers: kame.runtime.interrupt, kame.eval.stopping; stopped_early's.)"""
    previous = signal.getsignal(sig)
    installed = False
    if previous is not signal.SIG_IGN and previous is not None:
        try:
            signal.signal(sig, handler)
            installed = True
        except ValueError:  # not the main thread
            pass
    try:
        yield previous if installed else None
    finally:
        if installed and not (keep_replaced and signal.getsignal(sig) is not handler):
            signal.signal(sig, previous)


class _Record:
    """stopped_early's handler: notes the first of its signals (``signum``) and raises nothing, so
    none is lost where Python only reports an exception (a finalizer, a weakref callback, as
    importlib runs one at each import's end: "Exception ignored in")."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum, frame) -> None:
        if self.signum is None:  # (later ones: the stop to come is the first's)
            self.signum = signum


_block: list[_Record] = []  # (the record of the stopped_early block under way)


@contextlib.contextmanager
def stopped_early(*sigs: int):
    """Within the block, the first of ``sigs`` is recorded (``early_signal``) where it would have
    killed the process at once (SIGTERM: status 143, SIGHUP: 129), and nothing else happens: the
    command checks the record at fixed points and stops there (`kame serve`: kame.server.app.main,
    once its imports are done, once its agent is built, once its app is made, and as its server's
    loop takes the signals over: a stop that waits at most for the imports or the build under way,
    seconds). Installed by kame.cli once kame's command line runs (Python's own start-up and the
    import of kame.cli, about 0.1 s, come before: a signal then is still a kill, or ignored where the
    process is a container's PID 1). Not installed where the signal is ignored (nohup's SIGHUP
    stays ignored) or handled outside Python nor outside the main thread.
    At the end a signal's previous handler is restored where the recorder still handles it; one
    the command installed meanwhile stays (kame.server.stopping's, for the rest of the exit: its
    hooks and threads' joins come after this block)."""
    record = _Record()
    with contextlib.ExitStack() as handlers:
        for sig in sigs:
            handlers.enter_context(handling(sig, record, keep_replaced=True))
        _block.append(record)
        try:
            yield
        finally:
            _block.remove(record)


def early_signal() -> int | None:
    """The first signal the stopped_early block under way recorded (signal.SIGTERM, ...), or None:
    none came, or no block is under way (a command run without kame.cli)."""
    return signal.Signals(_block[-1].signum) if _block and _block[-1].signum is not None else None


def records(handler) -> bool:
    """Whether ``handler`` is stopped_early's, which only records: a signal it gets once its
    command has passed its last checkpoint does nothing (kame.server.stopping gives the signals
    another handler then)."""
    return isinstance(handler, _Record)
