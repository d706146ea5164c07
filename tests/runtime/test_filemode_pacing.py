"""`kame run` against a cascade with cascade.emit_silence = false (no AgentAudio for a silent
frame): the run is paced by the clock, not by waiting for an audio frame that never comes, and
the reply's audio keeps its place in OUT.wav."""

from __future__ import annotations

import numpy as np

from kame.cascade.config import CascadeConfig
from kame.runtime.base import AgentAudio
from kame.runtime.filemode import FRAME, agent_track, run_conversation

from .test_filemode import _TurnAgent


class _QuietAgent(_TurnAgent):
    """_TurnAgent sending audio only while it speaks (frames ``start``..``end``), as a cascade
    with emit_silence off."""

    cfg = CascadeConfig(emit_silence=False)

    async def outputs(self):
        async for item in super().outputs():
            if not (isinstance(item, AgentAudio) and not np.abs(item.pcm).max()):
                yield item


async def test_a_cascade_that_sends_no_audio_for_silence_is_not_waited_for_per_frame():
    from kame.config import load_config

    cfg, pcm = load_config(None, []), np.zeros(30 * FRAME, np.float32)
    rec = await run_conversation(cfg, pcm, fast=True, agent=_QuietAgent(10, 14), frame_timeout_s=1.0)
    # (was: every frame waited for and late, the audio count behind the frames: 1 s for the first, 0.1 s each after)
    assert rec["late_frames"] == 0 and rec["frames"] == 30
    agent = agent_track(rec, 30 * FRAME)
    loud = np.flatnonzero(np.abs(agent) > 0.05)
    assert loud.size == 5 * FRAME and loud[0] == 10 * FRAME  # its 5 frames of reply, in place
