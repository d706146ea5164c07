"""kame.runtime.signals: a Stopped of `kame serve`'s early stop (stopped_early) that Python could
only report (raised inside a weakref callback, as importlib runs one at each import's end) is
raised again (was: the signal was lost, and later ones ignored)."""

import signal
import sys
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

