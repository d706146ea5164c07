"""Every session has ``input_backlog_s`` (kame.runtime.base.Session), as docs/runtime.md says
(was: only the tandem's and the echo agent's sessions: a cascade session's was an AttributeError).
The cascade hands each whole frame to its STT as it is pushed: nothing waits to be stepped."""

import asyncio

import numpy as np

from kame.runtime.clock import FakeClock

from .fakes import FakeLLM, FakeTTS, speech_frame
from .test_session import _agent


async def test_a_cascade_session_has_no_input_backlog():
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock))
    s = await agent.open_session()
    try:
        assert s.input_backlog_s == 0.0
        await s.push_audio(np.concatenate([speech_frame()] * 3))  # at once, in one chunk
        assert s.input_backlog_s == 0.0
        for _ in range(50):
            await asyncio.sleep(0)
        assert s.stt.frames == 3  # (handed to its STT: none waits)
    finally:
        await s.close()
        await agent.stop()
