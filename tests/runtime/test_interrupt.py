"""kame.runtime.interrupt: Ctrl-C in kame run / kame client (a real SIGINT to this process)."""

import asyncio
import os
import signal
import time

import numpy as np
import pytest

from kame.config import load_config
from kame.runtime.filemode import run_conversation
from kame.runtime.interrupt import first_ctrl_c, unless_stopped


def test_first_ctrl_c_sets_the_event_a_second_quits_at_once_even_when_the_loop_is_busy():
    """(was: loop.add_signal_handler: both presses queued behind busy synchronous code, so the
    second never quit; and it replaced an ignored SIGINT, restoring Python's default after)"""
    async def run():
        async with first_ctrl_c("testing") as stop:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.05)
            assert stop.is_set()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 5:  # busy: the loop runs no callback meanwhile
                    pass
        return signal.getsignal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    assert asyncio.run(run()) is not None and signal.getsignal(signal.SIGINT) is before
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # `cmd &` in a script: left alone
    try:
        async def ignored():
            async with first_ctrl_c("testing"):
                return signal.getsignal(signal.SIGINT)
        assert asyncio.run(ignored()) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


async def test_unless_stopped_cancels_the_work_when_stop_comes_first():
    stop = asyncio.Event()
    cancelled = []

    async def load():  # (an agent's start that takes long)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    asyncio.get_running_loop().call_later(0.05, stop.set)
    t0 = time.monotonic()
    assert await unless_stopped(load(), stop) is False and cancelled and time.monotonic() - t0 < 5
    assert await unless_stopped(asyncio.sleep(0), asyncio.Event()) is True and await unless_stopped(asyncio.sleep(0), None)
    with pytest.raises(ValueError):  # the work's own error comes through

        async def broken():
            raise ValueError("no")
        await unless_stopped(broken(), asyncio.Event())


async def test_ctrl_c_while_the_agent_loads_ends_the_run_at_once():
    """(was: the first Ctrl-C waited for the whole load, ~20 s with the embedded LLM)"""
    class SlowAgent:
        async def start(self):
            await asyncio.sleep(60)

    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    t0 = time.monotonic()
    rec = await run_conversation(load_config(), np.zeros(24000, np.float32), agent=SlowAgent(), stop=stop)
    assert rec["interrupted"] and rec["frames"] == 0 and time.monotonic() - t0 < 5


def test_run_to_end_leaves_a_task_that_ignores_its_cancellation(caplog):
    """A plugin's stream that catches its cancellation hung `kame run` for ever (asyncio.run waits
    for every task); run_to_end waits a bounded time, names the task, and returns the result."""
    import logging

    from kame.runtime.interrupt import run_to_end

    release = []

    async def stubborn():
        while not release:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # (a plugin that swallows it)

    async def main():
        asyncio.get_running_loop().create_task(stubborn(), name="plugin-llm-stream")
        await asyncio.sleep(0)
        return "the record"

    with caplog.at_level(logging.WARNING, logger="kame.runtime.interrupt"):
        assert run_to_end(main(), leave_after=0.05) == "the record"
    assert any("1 task(s) did not stop" in r.getMessage() and "plugin-llm-stream" in r.getMessage()
               for r in caplog.records)
    release.append(True)
    assert run_to_end(asyncio.sleep(0, result=7)) == 7  # (nothing left: closed as asyncio.run does)


def test_run_to_end_says_when_ctrl_c_cut_its_wait_short(caplog, monkeypatch):
    """Ctrl-C while run_to_end waits for the leftover tasks: they are left at once, and the
    warning says so (it said they did not stop "within 5 s", which they had not been given)."""
    import logging

    from kame.runtime import interrupt

    async def stubborn():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    async def main():
        asyncio.get_running_loop().create_task(stubborn(), name="plugin-stt-stream")
        await asyncio.sleep(0)
        return "the record"

    async def ctrl_c_in_the_wait(leave_after):  # (as a key press: asyncio.Runner cancels, then raises)
        signal.raise_signal(signal.SIGINT)
        await asyncio.sleep(3600)

    monkeypatch.setattr(interrupt, "_end_leftovers", ctrl_c_in_the_wait)
    with caplog.at_level(logging.WARNING, logger="kame.runtime.interrupt"):
        assert interrupt.run_to_end(main(), leave_after=3600) == "the record"
    said = [r.getMessage() for r in caplog.records if "did not stop" in r.getMessage()]
    assert len(said) == 1 and "plugin-stt-stream" in said[0] and "before Ctrl-C cut their wait short" in said[0]
    assert "within" not in said[0]


def test_run_to_end_does_not_wait_for_a_cancelled_model_load():
    """Ctrl-C while a model loads in this process (kame run): the cancelled load's thread runs on,
    and closing the event loop's executor would wait for it to end (a large front-end: a minute)."""
    import threading

    from kame.backend.childproc import load_in_thread, loads_running
    from kame.runtime.interrupt import run_to_end

    started, release = threading.Event(), threading.Event()

    def load():
        started.set()
        release.wait()

    async def main():
        task = asyncio.ensure_future(load_in_thread(load))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        return "interrupted"

    watchdog = threading.Timer(30, release.set)  # (were it waited for: released after 30 s, not forever)
    watchdog.start()
    try:
        assert run_to_end(main()) == "interrupted"
        assert not release.is_set() and loads_running() >= 1  # returned while the load still ran
    finally:
        release.set()
        watchdog.cancel()


def test_exit_status_follows_stopped_by():
    from kame.runtime.interrupt import TERMINATED_STATUS, QuitAtOnce, exit_status, stopped_by

    for name, status in [(None, 130), ("SIGINT", 130), ("SIGTERM", TERMINATED_STATUS)]:
        assert exit_status(name) == status and (status == 130) == (stopped_by(name) == "interrupted")
    assert [QuitAtOnce(s).status for s in (signal.SIGINT, signal.SIGTERM)] == [130, TERMINATED_STATUS]


@pytest.mark.parametrize("stopped", [False, True])
def test_after_stop_holds_a_sigterm_and_makes_a_signal_after_a_stop_the_second(stopped):
    from kame.runtime.interrupt import QuitAtOnce, after_stop

    def guard(signum, frame):  # (were no handler installed, the test process would not be killed)
        raise AssertionError("SIGTERM reached the previous handler")

    before = signal.signal(signal.SIGTERM, guard)
    try:
        if stopped:  # a SIGTERM or a Ctrl-C is the second signal: quits at once
            for sig in (signal.SIGTERM, signal.SIGINT):
                with pytest.raises(QuitAtOnce) as quit_now, after_stop(True):
                    os.kill(os.getpid(), sig)
                assert quit_now.value.signal == sig.name
        else:  # a SIGTERM is held to the block's end, a Ctrl-C is a first one
            with after_stop(False) as held:
                os.kill(os.getpid(), signal.SIGTERM)
                assert held.signal == "SIGTERM"
            with pytest.raises(KeyboardInterrupt) as pressed, after_stop(False):
                os.kill(os.getpid(), signal.SIGINT)
            assert not isinstance(pressed.value, QuitAtOnce)
        assert signal.getsignal(signal.SIGTERM) is guard
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize("sigterm,sigint", [(True, False), (False, True), (True, True), (False, False)])
def test_sigterm_as_ctrl_c_notes_the_signals_it_takes_and_gives_the_handlers_back(sigterm, sigint):
    from kame.runtime.interrupt import sigterm_as_ctrl_c

    def guard(signum, frame):  # (a signal the block does not take reaches it)
        raise LookupError(signal.Signals(signum).name)

    before = {sig: signal.signal(sig, guard) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sig, taken in ((signal.SIGTERM, sigterm), (signal.SIGINT, sigint)):
            with pytest.raises(KeyboardInterrupt if taken else LookupError), \
                    sigterm_as_ctrl_c(sigterm=sigterm, sigint=sigint) as by:
                os.kill(os.getpid(), sig)
            assert by == ([sig.name] if taken else [])
        assert all(signal.getsignal(sig) is guard for sig in before)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
