"""`kame client` at a server's shutdown (close 1001): the input the session still buffered, which
a shutdown closes without stepping (the final "stats" counts it), is put on the shutdown, not on
the network (was: "held back by the network, then sent at once"). What it left is the final
stats' unstepped_at_close_s (was: every drop since the last periodic stats: with
runtime.stats_interval_s = 0, all of a --fast client's drops)."""

from __future__ import annotations

import argparse

import pytest
from kame.server.client import ChatResult
from kame.server.clientreport import dropped_at_shutdown, report

ARGS = argparse.Namespace(fast=False, json=None, tail=2.0, max_tail=30.0)


def stats(dropped, final=False, frames=40, left=None):
    m = {"type": "stats", "frames": frames, "missed_deadlines": 0, "dropped_input_s": dropped, "final": final}
    return m if left is None else {**m, "unstepped_at_close_s": left}


def test_a_shutdown_drop_is_named_not_blamed_on_the_network(capsys):
    res = ChatResult(close_code=1001, close_reason="server shutting down",
                     metas=[stats(0.0, frames=13), stats(0.0, frames=26), stats(0.08, final=True, frames=43, left=0.08)])
    assert dropped_at_shutdown(res) == 0.08
    assert report(res, ARGS) == 1
    out, err = capsys.readouterr()
    assert "input dropped by the server 0.08 s (0.08 s of it unheard at its shutdown)" in out
    assert "warning: the server dropped" not in err and "network" not in err  # (was: the network blamed)
    assert "error: the connection closed with code 1001 (server shutting down)" in err


def test_earlier_drops_keep_their_warning_with_the_shutdowns_part_named(capsys):
    res = ChatResult(close_code=1001, close_reason="server shutting down",
                     metas=[stats(1.2, frames=26), stats(1.28, final=True, left=0.08)])
    assert report(res, ARGS) == 1
    out, err = capsys.readouterr()
    assert "input dropped by the server 1.28 s (0.08 s of it unheard at its shutdown)" in out
    assert ("warning: the server dropped 1.20 s of the input (and 0.08 s it still held when it shut down): "
            "it keeps only a short backlog and the audio reached it faster than real time") in err


@pytest.mark.parametrize("code, metas", [
    (1000, [stats(0.0), stats(0.08, final=True)]),  # (a normal close: as before)
    (1001, [stats(0.0), stats(0.08)]),  # (no final stats came: nothing is the shutdown's)
    (1001, [stats(0.0), stats(0.08, final=True)]),  # (an older server's, without unstepped_at_close_s: none claimed)
    (1001, [stats(0.0), stats(0.08, final=True, left=0.0)]),  # (the session had stepped all it took)
])
def test_other_drops_are_warned_of_as_before(code, metas, capsys):
    res = ChatResult(close_code=code, metas=metas)
    assert dropped_at_shutdown(res) == 0.0
    report(res, ARGS)
    out, err = capsys.readouterr()
    assert "unheard at its shutdown" not in out
    assert "warning: the server dropped 0.08 s of the input: it keeps only a short backlog and the audio " \
           "reached it faster than real time at times (held back by the network" in err


def test_only_what_close_left_is_the_shutdowns_without_periodic_stats(capsys):
    """(r3: runtime.stats_interval_s = 0 sends only the final stats: a --fast client's 8.91 s of cap
    drops were all "unheard at its shutdown", and the warning to leave --fast out was not given)"""
    res = ChatResult(close_code=1001, close_reason="server shutting down",
                     metas=[stats(8.91, final=True, left=0.04)])
    assert dropped_at_shutdown(res) == 0.04  # (was: 8.91)
    report(res, argparse.Namespace(**{**vars(ARGS), "fast": True}))
    out, err = capsys.readouterr()
    assert "input dropped by the server 8.91 s (0.04 s of it unheard at its shutdown)" in out
    assert ("warning: the server dropped 8.87 s of the input (and 0.04 s it still held when it shut down): it "
            "keeps only a short backlog and --fast sent faster than real time; leave --fast out") in err
