"""The pocketsphinx child's state, for the agents' health (DecoderProcess.state, and the
pocketsphinx and embedded STTs' ``state``): a killed child is reaped at once (no zombie until
the next utterance) and is "down" until the next utterance's restart runs it (was: no state
at all, so health said "up" with the child dead)."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

pytest.importorskip("pocketsphinx")


def _reaped(pid: int) -> bool:
    """Whether the process ``pid`` is gone from /proc (a zombie stays there until reaped)."""
    for _ in range(250):  # (a bounded wait for the watcher: no timing is checked)
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_killed_pocketsphinx_child_is_reaped_and_down_until_the_next_utterance():
    from kame.backend.stt.embedded import EmbeddedSTT
    from kame.backend.stt.pocketsphinx import DecoderProcess, PocketsphinxRecognizer, PocketsphinxSTT

    server = DecoderProcess()
    embedded, plain = EmbeddedSTT.__new__(EmbeddedSTT), PocketsphinxSTT.__new__(PocketsphinxSTT)
    embedded.ps_server = plain.server = server  # (the STTs say their child's state)
    try:
        assert server.state == embedded.state == plain.state == "up"
        pid = server.proc.pid
        os.kill(pid, signal.SIGKILL)
        assert _reaped(pid), "the killed pocketsphinx child stayed a zombie"
        assert server.proc.exitcode == -9  # reaped by kame: its exit code is known
        assert server.state == embedded.state == plain.state == "down"
        rec = PocketsphinxRecognizer(server)  # the next utterance restarts it
        assert server.restarts == 1 and server.proc.pid != pid and server.state == "up"
        rec.accept(np.zeros(1280, np.float32))
        assert rec.final() == [] and embedded.state == "up"  # restarted and working
        server.close()  # on purpose (release_children)
        assert server.state == embedded.state == "stopped"
    finally:
        server.close()
