"""Every session has ``input_backlog_s`` (kame.runtime.base.Session), as docs/runtime.md says
(was: only the tandem's and the echo agent's sessions: a cascade session's was an AttributeError).
The cascade hands each whole frame to its STT as it is pushed: only a last part-frame waits, and
kame serve steps it at END_INPUT (filled with silence, as the tandem's); left at close, it is
counted in dropped_input_s."""

import asyncio
import types

import numpy as np

from kame.backend.types import FRAME_SIZE
from kame.runtime.clock import FakeClock
from kame.server import connection
from kame.server.settings import ServerConfig

from .fakes import FakeLLM, FakeTTS, speech_frame
from .test_session import _agent


async def test_whole_frames_pushed_to_a_cascade_session_do_not_wait():
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


async def _part_frame_session(clock):
    """A session (its agent, its outputs' reader) that was pushed 2.5 frames, in one chunk."""
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock))
    s = await agent.open_session()
    outs: list = []

    async def read():
        async for out in s.outputs():
            outs.append(out)

    reader = asyncio.ensure_future(read())
    await s.push_audio(np.concatenate([speech_frame()] * 3)[: FRAME_SIZE * 5 // 2])
    assert s.input_backlog_s == FRAME_SIZE / 2 / 24000  # (was: 0.0, the part-frame unseen)
    return agent, s, outs, reader


def _final_stats(outs) -> dict:
    (final,) = [o.data for o in outs if getattr(o, "data", {}).get("type") == "stats" and o.data.get("final")]
    return final


async def test_a_last_part_frame_is_stepped_at_end_input():
    """(was: a PCM client's last part-frame, < 80 ms, was neither stepped nor counted in the final
    stats; the tandem's was stepped, filled with silence)"""
    clock = FakeClock()
    agent, s, outs, reader = await _part_frame_session(clock)
    try:
        server = types.SimpleNamespace(cfg=ServerConfig(), clock=FakeClock(100.0))
        conn = connection.Connection(server, ws=None, session=s, pcm_out=True)
        conn.stepping_input, conn.ending_since = True, server.clock.now()  # (as _end_input sets them)
        await asyncio.wait_for(conn._step_input_then_close(), 10)  # (a reader: the STT flushes, then closes)
        await asyncio.wait_for(reader, 10)
        assert s.stt.frames == 3 and s.input_backlog_s == 0.0  # (was: 2)
        final = _final_stats(outs)
        assert final["dropped_input_s"] == 0 and final["dropped_frames"] == 0
    finally:
        await agent.stop()


async def test_a_last_part_frame_left_at_close_is_counted_as_dropped():
    """(a client that leaves without END_INPUT, a server's shut-down: never stepped, so counted)"""
    clock = FakeClock()
    agent, s, outs, reader = await _part_frame_session(clock)
    try:
        await s.close()
        await asyncio.wait_for(reader, 10)
        assert s.stt.frames == 2 and _final_stats(outs)["dropped_input_s"] == 0.04  # (was: 0)
    finally:
        await agent.stop()


async def test_the_part_frame_of_a_client_at_the_real_time_cap_is_stepped_and_its_pad_not_counted():
    """(review r1 #1; was: kame serve's silence went through push_audio's real-time cap, so for a
    client at the cap (kame client --fast, a burst) it was dropped and counted as the client's, and
    the part-frame was never stepped, counted at close as dropped too)"""
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), **{"runtime.max_input_backlog_s": 0.43})
    s = await agent.open_session()
    outs: list = []

    async def read():
        async for o in s.outputs():
            outs.append(o)

    reader = asyncio.ensure_future(read())
    try:
        await s.push_audio(np.zeros(24000 * 3, np.float32))  # at once: 0.51 s kept (6 frames and a part)
        await s.push_audio(np.zeros(24000 * 2, np.float32))  # 2 s more at once: at the cap, all dropped
        lost, frames = s.stats.dropped_input_s, s.stt.frames
        assert lost > 1 and s.input_backlog_s > 0  # (a part-frame waits)
        server = types.SimpleNamespace(cfg=ServerConfig(), clock=FakeClock(100.0))
        conn = connection.Connection(server, ws=None, session=s, pcm_out=True)
        conn.stepping_input, conn.ending_since = True, server.clock.now()
        await asyncio.wait_for(conn._step_input_then_close(), 10)
        await asyncio.wait_for(reader, 10)
        assert s.stt.frames == frames + 1  # (was: + 0)
        assert _final_stats(outs)["dropped_input_s"] == lost  # (was: + the pad and the part-frame)
    finally:
        await agent.stop()
