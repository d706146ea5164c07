"""A Ctrl-C that cuts the pocketsphinx child's stop short (DecoderProcess.close, waiting for the
child after closing its pipe): the child is taken off first, so the next close() (the exit hook's,
kame's main's) does not stop it over again (was: it waited for it again, up to 10 s, where a second
Ctrl-C printed the atexit traceback); the child, its pipe closed, leaves by itself."""

from __future__ import annotations

import os
import signal

import pytest

pytest.importorskip("pocketsphinx")


def test_a_stop_cut_short_by_ctrl_c_is_not_done_again(monkeypatch):
    from kame.backend.stt import pocketsphinx
    from kame.backend.stt.pocketsphinx import DecoderProcess

    calls = []

    def cut(proc, conn):  # stop_child, a Ctrl-C during its wait for the child
        if proc is None:  # (nothing to stop)
            return
        calls.append(proc)
        conn.close()
        if len(calls) == 1:  # (once: a KeyboardInterrupt out of a test would end the test run)
            os.kill(os.getpid(), signal.SIGINT)
        proc.join(10)

    server = DecoderProcess()
    proc = server.proc
    monkeypatch.setattr(pocketsphinx, "stop_child", cut)
    try:
        with pytest.raises(KeyboardInterrupt):
            server.close()
        assert server.proc is None and server.state == "stopped"
        assert server.close() is False and calls == [proc]  # (was: stopped again, [proc, proc])
        proc.join(10)
        assert proc.exitcode == 0  # its pipe closed: it left by itself
    finally:
        monkeypatch.undo()
        server.close()
        if proc.is_alive():
            proc.terminate()
