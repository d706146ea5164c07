"""The user audio still queued for a session's STT when it closes is counted in its final
"stats" (stt_dropped_s; was: lost uncounted, the final stats said the STT heard it all)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kame.runtime.backend import BackendBridge

from .fakes import Recorder, step
from .test_engine import make_agent

F = 1920


class SlowSTT:
    """Reads one frame, then nothing more (busy decoding) until its stream is cancelled."""

    def __init__(self) -> None:
        self.read = 0
        self.busy = asyncio.Event()  # (never set: the stream is cancelled at close)

    async def stream(self, frames):
        async for _ in frames:
            self.read += 1
            await self.busy.wait()
        yield  # (an async generator)


async def test_stt_audio_queued_at_close_is_counted_in_stt_dropped_s():
    stt = SlowSTT()
    agent, clock, _ = make_agent(backend=lambda s: BackendBridge(s, stt, None, s.clock))
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    for _ in range(5):
        await s.push_audio(np.full(F, 0.1, np.float32))
        await step(agent, clock)
    assert stt.read == 1  # the STT took the first frame; 4 wait for it
    await s.close()
    await rec.task
    final = rec.meta("stats")[-1]
    assert final["final"] and final["stt_dropped_s"] == pytest.approx(4 * 0.08)
    await agent.stop()
