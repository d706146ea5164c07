"""The tandem session's "stats" Meta counts its waits for a reload of the LLM's model
(``wait_llm_loading``, as the cascade's does): its oracle's stall timers that waited on
(OracleProducer.stats, over the session: a producer that failed and was replaced included) and
its hybrid routing's replies' (HybridRouter.stats). Was: counted in those objects only, sent to
no client. On a FakeClock."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np

from kame.backend.types import Transcript, Word
from kame.cascade.agent import default_prompt_fn
from kame.cascade.hybrid import HybridRouter
from kame.runtime.backend import BackendBridge

from ..backend.scripted_llm import ReloadingLLM
from .fakes import FakeSTT, Recorder, step
from .test_engine import make_agent, real_backend

LOUD = (np.ones(1920) * 0.3).astype(np.float32)
QUIET = np.zeros(1920, np.float32)


async def frames(agent, clock, s, pcm, n: int) -> None:
    """Push ``n`` frames of ``pcm``, one per step, letting the back-end's tasks run between them."""
    for _ in range(n):
        await s.push_audio(pcm)
        await step(agent, clock)
        for _ in range(20):
            await asyncio.sleep(0)


def final_stats(rec: Recorder) -> dict:
    return [o.data for o in rec.items if getattr(o, "data", {}).get("type") == "stats"][-1]


async def test_the_oracle_waits_for_a_reload_are_in_the_sessions_stats():
    llm = ReloadingLLM()
    agent, clock, _ = make_agent(backend=real_backend(FakeSTT(), llm), **{"backend.llm_first_token_timeout_s": 1.0})
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    llm.reload()  # (the prediction the user's words start waits for the reload, not a stall)
    await frames(agent, clock, s, LOUD, 3)
    await frames(agent, clock, s, QUIET, 40)  # 3.2 s: the 1 s first-token timer long ran out
    waited = s.backend.oracle_stats["wait_llm_loading"]
    assert waited >= 1 and s.backend.oracle_stats["failed"] == 0
    await s.close()
    await rec.task
    await agent.stop()
    stats = final_stats(rec)
    assert stats["final"] is True and stats["wait_llm_loading"] == waited


async def test_the_counts_of_a_replaced_producer_are_kept():
    """A producer that fails (a bug in it) is replaced by a new one: its counts stay in the
    session's (was: only the running producer's could be read)."""
    made = []

    class FailingProducer:
        def __init__(self):
            self.stats = Counter(wait_llm_loading=1)
            made.append(self)

        async def run(self):
            raise RuntimeError("a bug in the producer")

        async def aclose(self):
            pass

    agent, clock, _ = make_agent(backend=lambda s: BackendBridge(s, FakeSTT(), lambda *a: FailingProducer(), s.clock,
                                                                 retry_s=0.08))
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    await frames(agent, clock, s, QUIET, 6)
    await s.close()
    await rec.task
    await agent.stop()
    assert len(made) >= 2 and final_stats(rec)["wait_llm_loading"] == len(made)


class _NoTTS:
    sample_rate = 24000

    async def synthesize(self, text):
        return
        yield


async def test_hybrid_routings_waits_for_a_reload_are_in_the_sessions_stats():
    llm = ReloadingLLM()
    agent, clock, _ = make_agent(**{"cascade.hybrid_routing": True, "cascade.first_timeout": 1.0})
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    s.router = HybridRouter(llm, _NoTTS(), agent.config.cascade, clock, emit=s._put, prompt_fn=default_prompt_fn())
    llm.reload()
    said = Transcript(tuple(Word(w, 0.1 * i, 0.1 * i + 0.08) for i, w in enumerate("what is two plus two".split())),
                      True, 0.5)
    assert s.on_transcript(said) is True  # structured: a routed reply, which waits for the reload
    await frames(agent, clock, s, QUIET, 40)  # 3.2 s: the 1 s first-piece timer long ran out
    assert s.router.active and s.router.stats["wait_llm_loading"] == 1
    await s.close()
    await rec.task
    await agent.stop()
    stats = final_stats(rec)
    assert stats["final"] is True and stats["wait_llm_loading"] == 1
