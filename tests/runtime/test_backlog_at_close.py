"""User audio a tandem session still buffers when it closes (never stepped) is counted in its
final stats' dropped_input_s, and input_backlog_s says how much waits (kame serve steps it first
after END_INPUT: tests/server/test_end_input_backlog.py). Was: dropped at close, counted nowhere."""

from __future__ import annotations

import numpy as np
import pytest

from .fakes import Recorder, step
from .test_engine import make_agent

F = 1920


async def test_audio_left_in_the_backlog_at_close_is_counted_as_dropped():
    agent, clock, _ = make_agent()
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    await s.push_audio(np.full(5 * F + 100, 0.1, np.float32))  # 0.4 s and a bit, at once
    assert s.input_backlog_s == pytest.approx((5 * F + 100) / 24000)
    await step(agent, clock, 2)
    assert s.stats.input_frames == 2 and s.input_backlog_s == pytest.approx((3 * F + 100) / 24000)
    await s.close()
    await rec.task
    final = rec.meta("stats")[-1]
    assert final["final"] and final["dropped_input_s"] == pytest.approx((3 * F + 100) / 24000)  # (was: 0)
    assert s.input_backlog_s == 0
    await agent.stop()
