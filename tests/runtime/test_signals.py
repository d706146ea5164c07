"""kame.runtime.signals: a Stopped of `kame serve`'s early stop (stopped_early) that Python could
only report (raised inside a weakref callback, as importlib runs one at each import's end, or
inside sys.unraisablehook) is raised again (was: the signal was lost, and later ones ignored); the
block's end waits for the signal being sent again (was: it could come after SIGTERM's default
handler was back, a kill, status 143)."""

import signal
import sys
import threading
import time
import weakref

import pytest

from kame.runtime.signals import Stopped, stopped_early


class _Thing:
    pass


def _lost_in_a_callback(what) -> None:
    """``what()`` runs in a weakref callback: an exception it raises is only reported."""
    thing = _Thing()
    ref = weakref.ref(thing, lambda _: what())
    assert ref() is thing
    del thing  # (the callback runs here)


def test_a_stop_raised_where_python_only_reports_it_is_raised_again():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as caught:
        with stopped_early(signal.SIGTERM):
            _lost_in_a_callback(lambda: signal.raise_signal(signal.SIGTERM))  # (its handler runs in there)
            for _ in range(1000):  # (until the signal sent again comes, at most 10 s)
                time.sleep(0.01)
    assert caught.value.signal == "SIGTERM" and caught.value.code == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_other_exceptions_reported_in_the_block_go_to_the_hook_as_before(monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    with stopped_early(signal.SIGTERM):
        _lost_in_a_callback(lambda: 1 / 0)
    assert [type(u.exc_value) for u in reported] == [ZeroDivisionError]
    assert sys.unraisablehook == reported.append  # (given back)


def test_a_stop_that_comes_while_the_previous_hook_runs_is_raised_again(monkeypatch):
    reported = []

    def hook(unraisable) -> None:  # (the hook stopped_early found, for another exception)
        reported.append(type(unraisable.exc_value))
        signal.raise_signal(signal.SIGTERM)  # (its handler runs in here, inside sys.unraisablehook)

    monkeypatch.setattr(sys, "unraisablehook", hook)
    with pytest.raises(Stopped) as caught:
        with stopped_early(signal.SIGTERM):
            _lost_in_a_callback(lambda: 1 / 0)
            for _ in range(1000):  # (until the signal sent again comes, at most 10 s)
                time.sleep(0.01)
    assert caught.value.signal == "SIGTERM"
    assert reported == [ZeroDivisionError]


def test_the_blocks_end_waits_for_a_signal_being_sent_again(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    send = signal.pthread_kill
    under_way, block_ended, sent = threading.Event(), threading.Event(), threading.Event()
    handler_then = []

    def slow_send(thread: int, sig: int) -> None:  # (on the thread that sends it again, checked: wanted)
        under_way.set()
        block_ended.wait(0.5)  # (set once the block has ended: here only if its end did not wait)
        handler_then.append(signal.getsignal(sig))
        if handler_then[0] is not before:  # (never a SIGTERM to pytest's own handler, the default: a kill)
            send(thread, sig)
        sent.set()

    monkeypatch.setattr(signal, "pthread_kill", slow_send)
    with stopped_early(signal.SIGTERM):
        _lost_in_a_callback(lambda: signal.raise_signal(signal.SIGTERM))
        assert under_way.wait(10)
    block_ended.set()  # (no Stopped: the signal that came as the block ended is ignored)
    assert sent.wait(10)
    assert handler_then[0] is not before  # (stopped_early's handler was still in place for it)
    assert signal.getsignal(signal.SIGTERM) is before
