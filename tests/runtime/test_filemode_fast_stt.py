"""`kame run --fast` (QA review r4 #3): virtual time runs far ahead of the STT, which is not at
fault, so its supervisor bounds nothing (kame.runtime.sttloop.unpaced): no queue cap, no stall.
Was (8d2db89): the STT's audio waited in a queue capped at 20 s of that virtual time and a stall
after stall_s of it: audio dropped, "STT ... stalled" errors, finals missing. A cascade with fake
components (tests/cascade/fakes.py); the STT here is slow on the session clock, not on wall time."""

from __future__ import annotations

import numpy as np

from kame.config import load_config
from kame.runtime.clock import FakeClock
from kame.runtime.filemode import FRAME, run_conversation
from kame.runtime.sttloop import MAX_QUEUED_FRAMES, STTSupervisor, unpaced

from ..cascade.fakes import FakeLLM, FakeTTS
from ..cascade.test_session import _agent


class BehindSTT:
    """Takes its first frame, then decodes it for 25 s of the session clock before it reads on
    (far behind the file's virtual time); counts the frames it got."""

    name = "behind"

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.got = clock, 0

    async def stream(self, frames):
        async for _ in frames:
            self.got += 1
            if self.got == 1:
                await self.clock.sleep(25.0)
        return
        yield  # (an async generator)


async def test_a_fast_run_gives_its_stt_all_its_audio():
    clock = FakeClock(start=0.08)
    stt = BehindSTT(clock)
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt)
    pcm = np.zeros(40 * 12 * FRAME, np.float32)  # 38.4 s: more than the 20 s queue, and any stall_s
    rec = await run_conversation(load_config(None, {"mode": "cascade"}), pcm, fast=True, agent=agent, clock=clock)
    final = rec["stats"][-1]
    assert final["final"] and final["stt_dropped_s"] == 0.0  # (was: 6.08)
    assert stt.got == rec["frames"] == 480  # every frame (was: 404)
    assert rec["errors"] == []  # (was: "stt behind failed: STT behind stalled: it has taken no audio for 5.0 s ...")


async def test_only_the_sessions_opened_under_unpaced_lose_their_bound_and_stall():
    """(--fast's session alone: kame run paced, kame serve and the others keep both.)"""
    clock = FakeClock()

    def supervisor() -> STTSupervisor:
        return STTSupervisor(BehindSTT(clock), clock, who="s1", on_transcript=None, on_failure=None)

    with unpaced(False):
        assert supervisor()._max_queued == MAX_QUEUED_FRAMES
    with unpaced():
        fast = supervisor()
    paced = supervisor()
    assert fast._stall_after == fast._max_queued == float("inf")
    assert paced._stall_after == paced.stall_s == 5.0 and paced._max_queued == MAX_QUEUED_FRAMES
