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


class ReadsOneSTT:
    """Reads one frame, then nothing more (busy decoding) until its stream is cancelled; then it
    unwinds once ``release`` is set (at once if it was set before)."""

    def __init__(self) -> None:
        self.read = 0
        self.release = asyncio.Event()

    async def stream(self, frames):
        try:
            async for _ in frames:
                self.read += 1
                await asyncio.Event().wait()
        finally:
            await self.release.wait()
        yield  # (an async generator)


@pytest.mark.parametrize("unwinds_at_once", [True, False])
async def test_stt_audio_queued_at_close_is_counted_in_stt_dropped_s(unwinds_at_once):
    """Counted when the session closes, whether its STT stream has unwound by then or not."""
    stt = ReadsOneSTT()
    if unwinds_at_once:
        stt.release.set()
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
    if not unwinds_at_once:
        assert not s.backend.stopped  # (still unwinding)
    final = rec.meta("stats")[-1]
    assert final["final"] and final["stt_dropped_s"] == pytest.approx(4 * 0.08)
    assert s.stats.frames == 5
    stt.release.set()
    await agent.stop()
