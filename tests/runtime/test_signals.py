"""kame.runtime.signals: `kame serve`'s early stop (stopped_early) only records its signals, for
kame.server.app.main's checkpoints (early_signal): a signal that comes where Python only reports an
exception (a weakref callback, as importlib runs one at each import's end, a finalizer) is not lost,
since nothing is raised there (was: a Stopped raised in the handler, lost there and sent again by a
thread of its own); the block's end gives the previous handlers back and forgets the record."""

import signal
import sys
import weakref

import pytest

from kame.runtime.signals import early_signal, records, stopped_early


NO_SIGHUP = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")


@pytest.fixture
def default_sighup():
    """SIGHUP at its default for the test (a test run under nohup would find it ignored)."""
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, before)


class _Thing:
    pass


def _in_a_callback(what) -> None:
    """``what()`` runs in a weakref callback: an exception it raises would only be reported."""
    thing = _Thing()
    ref = weakref.ref(thing, lambda _: what())
    assert ref() is thing
    del thing  # (the callback runs here)


@NO_SIGHUP
def test_a_signal_is_recorded_the_first_one_kept_and_the_block_goes_on(default_sighup):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    assert early_signal() is None  # (no block)
    with stopped_early(signal.SIGTERM, signal.SIGHUP):
        assert records(signal.getsignal(signal.SIGTERM)) and early_signal() is None
        signal.raise_signal(signal.SIGHUP)  # (nothing raised: the block goes on)
        signal.raise_signal(signal.SIGTERM)
        assert early_signal() == signal.SIGHUP  # (the first)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before
    assert early_signal() is None


def test_a_signal_where_python_only_reports_an_exception_is_not_lost(monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    with stopped_early(signal.SIGTERM):
        _in_a_callback(lambda: signal.raise_signal(signal.SIGTERM))  # (its handler runs in there)
        assert early_signal() == signal.SIGTERM
    assert reported == []  # (no "Exception ignored in")


@NO_SIGHUP
def test_an_ignored_signal_is_left_ignored():
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # (nohup's)
    try:
        with stopped_early(signal.SIGHUP):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)
            assert early_signal() is None
    finally:
        signal.signal(signal.SIGHUP, before)
