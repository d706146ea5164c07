"""A plugin component whose call never returns (here a codec's encode_frame, blocked on a
threading.Event) holds neither the agent's stop() nor the process's exit: stop() waits for the
step thread StepWorker.STOP_GRACE_S, then leaves it with a warning naming the call; the thread
is a daemon (was: stop() hung for ever in the pool's shutdown, and so did the exit, which joins
a ThreadPoolExecutor's threads)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from kame import registry
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.runtime.metrics import MetricsLog
from kame.runtime.worker import StepWorker

from .fakes import wait_for
from .test_frontend_real import real_cfg
from .wrapped_codec import INNER, WrappedCodec, WrappedStream


class Gate:
    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()


class HangStream(WrappedStream):
    def __init__(self, inner, gate: Gate) -> None:
        super().__init__(inner)
        self.gate = gate

    def encode_frame(self, pcm):
        if self.gate.armed:
            self.gate.entered.set()
            self.gate.release.wait()  # (a plugin stuck in its own code)
        return self.inner.encode_frame(pcm)


class HangCodec(WrappedCodec):
    def __init__(self, gate: Gate) -> None:
        super().__init__(INNER)
        self.gate = gate

    def stream(self, batch_size=1):
        return HangStream(self.inner.stream(batch_size), self.gate)


@pytest.fixture
def gate():
    g = Gate()
    registry.schemes("codec")  # the built-in table first
    registry.register("codec", "hang", lambda arg=None, **kw: HangCodec(g))
    try:
        yield g
    finally:
        g.release.set()  # (the stuck thread ends)
        del registry._ENTRIES["codec"]["hang"]


async def test_stop_leaves_a_step_stuck_in_a_plugin_codec_and_names_it(gate, monkeypatch, caplog):
    monkeypatch.setattr(StepWorker, "STOP_GRACE_S", 0.2)
    clock = FakeClock()
    agent = TandemAgent(real_cfg(**{"codec.spec": "hang"}), clock=clock, metrics=MetricsLog())
    await agent.start()
    s = await agent.open_session()
    await s.push_audio(np.zeros(1920, np.float32))
    gate.armed = True
    clock.advance(0.08)
    await wait_for(gate.entered.is_set)
    worker = agent.worker
    with caplog.at_level(logging.WARNING, "kame.runtime.worker"):
        try:
            await asyncio.wait_for(agent.stop(), 30)  # (was: for ever)
        except asyncio.TimeoutError:
            gate.release.set()  # (the test fails; the stuck call ends)
            raise
    assert agent.worker is None
    warned = [r.getMessage() for r in caplog.records if "did not end" in r.getMessage()]
    assert len(warned) == 1 and "it is still in codec hang's encode_frame()" in warned[0]
    assert worker._thread._thread.daemon and not worker._thread.ended.done()
    gate.release.set()
    await asyncio.wrap_future(worker._thread.ended)  # (released: it ends)


SCRIPT = textwrap.dedent('''
    import asyncio, threading
    import numpy as np
    from kame.config import load_config
    from kame.runtime.clock import FakeClock
    from kame.runtime.engine import TandemAgent
    from kame.runtime.worker import FrameOut

    entered, never = threading.Event(), threading.Event()

    class Stuck:
        batch_size = 1
        def reset(self, rows): pass
        def oracle_reset(self, row): pass
        def oracle_append(self, row, ids): pass
        def step(self, pcm, active):
            entered.set()
            never.wait()  # a plugin call that never returns

    async def main():
        cfg = load_config(None, {"runtime.max_sessions": 1, "runtime.vad": "energy"})
        agent = TandemAgent(cfg, clock=FakeClock(), frame_models=lambda b: Stuck(), backend=lambda s: None)
        await agent.start()
        s = await agent.open_session()
        await s.push_audio(np.zeros(1920, np.float32))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        print("stuck", flush=True)  # the program ends without stopping the agent

    asyncio.run(main())
''')


def test_a_step_stuck_in_a_plugin_does_not_hold_the_process_exit():
    try:
        done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit: its stuck step thread held it")
    assert done.returncode == 0 and done.stdout.strip() == "stuck", done.stderr
