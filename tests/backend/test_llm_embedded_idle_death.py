"""The embedded LLM's child dying while idle (between requests; QA k45 chaos findings 2 and 3),
with stand-in children (no model load): the next request is told at once, as one whose child
died during it (was: it silently waited out the 20-70 s reload, and the session said nothing:
no ErrorEvent, no "backend" Meta, errors 0), and the restart it began goes on for the request
after it; a (re)start that fails is logged even when its request's consumer has gone (was:
nothing logged, the next restart gave no cause)."""

import asyncio
import logging
import threading

import pytest

from kame.errors import BackendError

from .test_llm_embedded_hung import _answers, _gate_start, _llm, _starts, _text, _until, _worker_with


async def test_a_child_that_died_while_idle_fails_the_next_request_at_once_and_restarts():
    loading, gate = threading.Event(), threading.Event()
    worker = _worker_with(_answers)
    worker.start()
    try:
        llm = _llm(worker, stall_timeout=30)
        assert await _text(llm) == "hello"
        first = worker.proc
        first.kill()  # idle: no request running (an operator's kill, the OOM killer)
        first.join(10)
        _gate_start(worker, loading, gate)  # (the restart's load lasts until the test says)
        with pytest.raises(BackendError, match=r"embedded LLM failed: the LLM child process died \(exit code -9\) "
                                               r"between requests; restarting it"):
            await _text(llm)  # told before the load ends (the gate is still shut)
        assert not gate.is_set()
        await _until(loading.is_set)
        assert worker.state == "loading" and worker.restarts == 1  # the restart goes on
        reply = asyncio.create_task(_text(llm))  # the next request waits for it
        gate.set()
        assert await reply == "hello" and worker.proc.pid != first.pid and worker.restarts == 1
    finally:
        gate.set()
        worker.close()


def _dies_while_loading(conn):
    """Exits before saying "loaded" (killed while it loads the model)."""
    import os

    os._exit(9)


async def test_a_restart_that_fails_is_logged_with_its_cause_when_no_consumer_is_left(caplog):
    worker = _worker_with(_answers)
    worker.start()
    try:
        llm = _llm(worker, stall_timeout=30)
        worker.proc.kill()
        worker.proc.join(10)
        worker.start = _starts(worker, _dies_while_loading)
        with caplog.at_level(logging.ERROR, logger="kame.backend.llm.embedded"):
            with pytest.raises(BackendError, match="between requests"):  # (its consumer has gone when the load fails)
                await _text(llm)
            await _until(lambda: not worker.loading and "(re)starting" in caplog.text)
        assert "(re)starting the embedded LLM child failed: a stand-in failed to start" in caplog.text
        assert "exit code 9" in caplog.text
    finally:
        worker.close()
