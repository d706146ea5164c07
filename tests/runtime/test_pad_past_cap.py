"""kame serve's END_INPUT silence (Session.pad_input) goes past the real-time cap in the tandem's
and the echo agent's sessions, as in the cascade's (tests/cascade/test_input_backlog.py): for a
client at the cap, none of its audio is dropped for the server's silence, the silence is not
counted as its own, and the part-frame becomes a whole frame to step (review r3: through
push_audio, 40 ms of the client's oldest audio was dropped and counted as its own, the backlog
stayed at the cap and the part-frame stayed). What close leaves unstepped of the client's audio
is said apart in the final stats (unstepped_at_close_s), the pad not counted in it."""

from __future__ import annotations

import numpy as np
import pytest

from kame.backend.types import FRAME_SIZE
from kame.config import load_config
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.server.echo import MAX_BACKLOG_S, EchoAgent

from .fakes import FakeFrameModel


def _final(outs) -> dict:
    (final,) = [o.data for o in outs if getattr(o, "data", {}).get("type") == "stats" and o.data.get("final")]
    return final


async def _drain(s) -> list:
    return [o async for o in s.outputs()]


async def test_the_tandems_pad_drops_none_of_the_clients_audio():
    cfg = load_config(None, {"runtime.max_sessions": 1, "runtime.vad": "energy", "runtime.stats_interval_s": 0.0,
                             "runtime.max_input_backlog_s": 1.0, "backend.stt": "none", "backend.llm": "none"})
    agent = TandemAgent(cfg, clock=FakeClock(), frame_models=FakeFrameModel, backend=lambda s: None)
    await agent.start()
    s = await agent.open_session()
    try:
        await s.push_audio(np.full(24000 * 2, 0.1, np.float32))  # a burst: 1 s kept (12.5 frames), 1 s dropped
        assert s.stats.dropped_input_s == pytest.approx(1.0)
        await s.pad_input()
        assert s.stats.dropped_input_s == pytest.approx(1.0)  # (was: 1.04, the server's silence took 40 ms)
        assert s.input_backlog_s * 24000 == 13 * FRAME_SIZE  # a whole frame more (was: 24000, a part-frame)
        await s.pad_input()  # (nothing left to fill)
        assert s.input_backlog_s * 24000 == 13 * FRAME_SIZE
        await s.close()  # (not stepped: the client's 1 s is counted, not the pad's 40 ms)
        final = _final(await _drain(s))
        assert final["dropped_input_s"] == pytest.approx(2.0)
        assert final["unstepped_at_close_s"] == 1.0
    finally:
        await agent.stop()


async def test_the_tandems_padded_part_frame_is_stepped():
    cfg = load_config(None, {"runtime.max_sessions": 1, "runtime.vad": "energy", "runtime.stats_interval_s": 0.0,
                             "backend.stt": "none", "backend.llm": "none"})
    agent = TandemAgent(cfg, clock=FakeClock(), frame_models=FakeFrameModel, backend=lambda s: None)
    await agent.start()
    s = await agent.open_session()
    try:
        await s.push_audio(np.full(FRAME_SIZE * 5 // 2, 0.1, np.float32))
        await s.pad_input()
        assert s.input_backlog_s * 24000 == 3 * FRAME_SIZE
        for t in (0.08, 0.16, 0.24):
            s.take_input(t)
        assert s.input_backlog_s == 0.0 and s.stats.input_frames == 3
        await s.close()
        final = _final(await _drain(s))
        assert final["dropped_input_s"] == 0 and final["unstepped_at_close_s"] == 0
    finally:
        await agent.stop()


async def test_the_echo_agents_pad_drops_none_of_the_clients_audio():
    agent = EchoAgent(clock=FakeClock())
    s = await agent.open_session()
    try:
        cap = round(MAX_BACKLOG_S / 0.08)
        await s.push_audio(np.full(FRAME_SIZE * cap + FRAME_SIZE // 2, 0.1, np.float32))  # at the cap, + half a frame
        assert s.dropped_input_s == 0
        await s.pad_input()
        assert s.dropped_input_s == 0  # (was: 0.08, the client's oldest frame dropped for the server's silence)
        assert s.input_backlog_s == pytest.approx((cap + 1) * 0.08)
        await s.close()  # (not played: the client's audio is counted, not the pad's 40 ms)
        final = _final(await _drain(s))
        assert final["dropped_input_s"] == pytest.approx(cap * 0.08 + 0.04)
        assert final["unstepped_at_close_s"] == pytest.approx(cap * 0.08 + 0.04)
    finally:
        await agent.stop()


async def test_the_base_sessions_pad_pushes_nothing_through_the_cap():
    """A plugin's Session subclass that does not override pad_input: the base pushes nothing through
    its push_audio (was: FRAME_SIZE - part samples of silence, for which a session at its cap
    dropped the client's oldest audio, counted as the client's: the bug the three overrides
    mend). Its skip_flush (kame serve's shutdown) is a no-op too."""
    from kame.runtime.base import Session

    class Plugin(Session):
        id = "p1"
        pushed: list = []

        async def push_audio(self, pcm):
            self.pushed.append(len(pcm))

        def outputs(self):
            raise NotImplementedError

        async def close(self):
            pass

        @property
        def input_backlog_s(self):
            return (FRAME_SIZE // 2) / 24000  # (half a frame waiting)

    s = Plugin()
    await s.pad_input()
    s.skip_flush()
    assert s.pushed == []
