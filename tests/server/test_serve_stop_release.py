"""`kame serve` stops its back-end children itself, as the last step of its stop (logged, timed,
its second Ctrl-C's rule): kame's main does not stop them over again (was: after a second Ctrl-C
had cut serve's stop short, which quits at once, kame's main started the children's stop over,
the cut child included, with its own signal rule in place of serve's)."""

from __future__ import annotations

import os
import signal


def test_kame_main_does_not_start_serves_release_over(monkeypatch):
    from kame import cli
    from kame.backend import childproc
    from kame.server.app import _release_children
    from kame.server.stopping import Stopping

    calls = []

    def pocketsphinx():
        calls.append("pocketsphinx")
        if calls.count("pocketsphinx") == 1:  # (once: a KeyboardInterrupt out of a test would end the test run)
            os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, in serve's stop
        return True

    def llm():
        calls.append("llm")
        return True

    monkeypatch.setattr(childproc, "_shared_stops", [pocketsphinx, llm])
    monkeypatch.setattr(childproc, "_released_for_good", False)
    stopping = Stopping()
    _release_children(stopping)  # (kame.server.app.main's end)
    assert stopping.interrupted and calls == ["pocketsphinx"]
    assert cli._released(stopping.status, "kame serve") == 130  # (kame.cli._run's, after serve's main returned)
    assert calls == ["pocketsphinx"]  # (was: ["pocketsphinx", "pocketsphinx", "llm"])
