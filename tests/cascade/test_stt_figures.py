"""The cascade's STT figures, as the tandem's (QA "long" #1): the user audio its STT never got is
in its stats as ``stt_dropped_s`` too (the tandem's name; was: ``dropped_frames`` only), and its
STT's latency metrics (stt_partial_latency, stt_final_latency) are the session's "metric" Metas
(was: to the agent's sink only, so OUT.json and the session's clients had no STT latency, and
an STT falling minutes behind showed nowhere)."""

import numpy as np

from kame.runtime.base import Meta
from kame.runtime.clock import FakeClock
from kame.runtime.metrics import Metric

from .fakes import FakeLLM, FakeSTT, FakeTTS
from .test_failures import DeafSTT
from .test_session import _agent


class _TimedSTT(FakeSTT):
    """FakeSTT that, as kame's own STTs, sends its latency metrics to the stream's sink."""

    async def stream(self, frames, *, metrics=None):
        async for tr in super().stream(frames):
            if tr.final and metrics is not None:
                metrics(Metric("stt_final_latency", 1.25, tr.t, labels={"stt": self.name}))
            yield tr


async def _metas(s, kind: str) -> list[dict]:
    return [o.data for o in [o async for o in s.outputs()] if isinstance(o, Meta) and o.data.get("type") == kind]


async def test_audio_the_stt_never_got_is_in_the_stats_as_stt_dropped_s():
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=DeafSTT())
    s = await agent.open_session()
    for _ in range(10):  # 0.8 s waiting for the deaf stream: counted at close
        clock.advance(0.08)
        await s.push_audio(np.zeros(1920, np.float32))
    await s.close()
    final = (await _metas(s, "stats"))[-1]
    assert final["final"] and final["dropped_frames"] == 10 and final["stt_dropped_s"] == 0.8
    await agent.stop()


async def test_the_stts_latency_metrics_are_the_sessions():
    clock = FakeClock()
    stt = _TimedSTT()
    agent, log = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt)
    s = await agent.open_session()
    for _ in range(5):
        clock.advance(0.08)
        await s.push_audio(np.zeros(1920, np.float32))
    stt.say("hello there", clock.now())
    for _ in range(5):
        clock.advance(0.08)
        await s.push_audio(np.zeros(1920, np.float32))
    await s.close()
    (m,) = [d for d in await _metas(s, "metric") if d["name"] == "stt_final_latency"]
    assert m["value"] == 1.25 and m["session"] == s.id and m["labels"] == {"mode": "cascade", "stt": "fake-stt"}
    # once, in the agent's sink too (as the session's other metrics)
    assert [(e.name, e.session) for e in log.events if e.name.startswith("stt_")] == [("stt_final_latency", s.id)]
    await agent.stop()
