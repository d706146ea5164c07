"""Signal handlers that import nothing heavier than the standard library's ``signal``, ``contextlib``
and ``_thread``: ``handling`` (a handler within a block, the previous one given back) and ``stopped_early``
(`kame serve`'s SIGTERM and SIGHUP before its server's loop handles them). Kept apart from
kame.runtime.interrupt, which imports asyncio (0.1-0.3 s at start-up on a busy machine), so that
kame.cli installs ``stopped_early`` as soon as its command line runs, before any such import:

    with stopped_early(signal.SIGTERM, signal.SIGHUP):   # kame.cli._main, for `kame serve`
        ...                                              # a first SIGTERM here: Stopped, exit 0
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import time


@contextlib.contextmanager
def handling(sig: int, handler):
    """``handler`` for signal ``sig`` within the block, the previous one restored at its end;
    yields that previous handler, or None where none was installed: the signal is ignored (``cmd &``
    in a script ignores SIGINT), handled outside Python (getsignal's None: signal.signal could not
    restore it), or this is not the main thread. (first_ctrl_c's, sigterm_held's and kame eval
    mtbench's handlers: kame.runtime.interrupt, kame.eval.stopping.)"""
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
        if installed:
            signal.signal(sig, previous)


class Stopped(SystemExit):
    """stopped_early's: a stop signal came before the command's own handlers took it over; exit
    status 0 (a SystemExit: asyncio lets it out of a running loop, and no ``except Exception``
    keeps it); ``signal``: its name ("SIGTERM")."""

    def __init__(self, name: str) -> None:
        super().__init__(0)
        self.signal = name


@contextlib.contextmanager
def stopped_early(*sigs: int):
    """Within the block, the first of ``sigs`` raises Stopped (exit status 0) where it would have
    killed the process at once (SIGTERM: status 143, SIGHUP: 129): `kame serve` once kame's command
    line runs (kame.cli, before it builds its parser and imports the command's modules, a second or
    more; Python's own start-up and the import of kame.cli, about 0.1 s, excepted: a signal then
    is still a kill), for a service manager's normal stop. A handler installed later for one of
    them (the server's event loop's) takes it over; later ones of ``sigs`` within the block are
    ignored (the stop under way is not cut short). Not installed where the signal is ignored
    (nohup's SIGHUP stays ignored) or handled outside Python nor outside the main thread
    (``handling``); the previous handlers are restored at the end.

    A Stopped raised where Python only reports it ("Exception ignored in": a finalizer, a weakref
    callback, as importlib runs one at each import's end: one early signal in a few hundred) is
    raised again, by the same signal sent again to the main thread; so is one that came
    while the main thread ran sys.unraisablehook (the previous hook, for another exception: Python
    would only have printed "Exception ignored in sys.unraisablehook"), bar the few bytecodes before
    the hook notes it. The block's end waits for a signal being sent again (so it never comes once
    the previous handlers are back: SIGTERM's default, a kill, status 143), and a signal handled
    from then on is ignored (the command has ended)."""
    stopped: list[str] = []
    main = _thread.get_ident()  # (handling installs nothing outside the main thread)
    reporting = []  # (set while the main thread runs sys.unraisablehook: a Stopped raised there is lost too)
    ended = []
    sending = _thread.allocate_lock()  # (held by _send_again's thread across its check and its send)

    def wanted() -> bool:
        return not stopped and not ended

    def stop(signum, frame) -> None:  # (takes no lock: it runs on the main thread, which may hold one)
        if reporting:
            _send_again(signum, main, wanted, sending)
        elif wanted():
            stopped.append(signal.Signals(signum).name)
            raise Stopped(stopped[0])

    def report(unraisable) -> None:
        here = _thread.get_ident() == main
        if here:
            reporting.append(True)
        try:
            if isinstance(unraisable.exc_value, Stopped) and stopped:
                _send_again(signal.Signals[stopped.pop()], main, wanted, sending)
            else:
                previous_hook(unraisable)
        finally:
            if here:
                reporting.pop()

    previous_hook = sys.unraisablehook
    with contextlib.ExitStack() as handlers:
        for sig in sigs:
            handlers.enter_context(handling(sig, stop))
        sys.unraisablehook = report
        try:
            yield
        finally:
            ended.append(True)  # (first: stop ignores a signal sent again that interrupts the wait below)
            if sys.unraisablehook is report:  # (not if something replaced it meanwhile)
                sys.unraisablehook = previous_hook
            with sending:  # (a send under way ends before the handlers are given back: none comes after)
                pass


def _send_again(sig: int, main: int, wanted, sending) -> None:
    """Send ``sig`` again to the thread ``main``, from a thread of its own, once the code that lost its
    Stopped has returned (a hundredth of a second later), if ``wanted()`` still (no other signal
    raised Stopped meanwhile, the block has not ended), holding the lock ``sending`` across that
    check and the send: stopped_early's end takes it before it gives the previous handlers back."""

    def send() -> None:
        time.sleep(0.01)
        with sending:
            if not wanted():
                return
            if hasattr(signal, "pthread_kill"):
                signal.pthread_kill(main, sig)  # (interrupts a blocking call of the main thread too)
            else:
                _thread.interrupt_main(sig)

    _thread.start_new_thread(send, ())
