"""Hybrid routing's routed reply is a cascade ReplyPipeline: after an LLM failure that says a new
request will work (BackendError ``restarting``: the embedded LLM's child died while idle) it
reports it, asks again once and waits out the reload, the front-end muted meanwhile, then speaks
the answer and gives the front-end back (review r2 finding 4; docs/cascade.md, hybrid routing).
On a FakeClock."""

import numpy as np

from kame.runtime.base import ErrorEvent, Meta
from kame.runtime.clock import FakeClock

from ..backend.scripted_llm import ReloadingLLM
from .fakes import FakeTTS
from .test_hybrid import FRONT, _final, _frames, _router
from .test_reply_restart import DIED, died_while_idle


async def test_a_routed_reply_whose_llm_restarts_is_asked_again_with_the_front_end_muted():
    clock = FakeClock()
    llm = ReloadingLLM()
    router, events = _router(clock, llm, FakeTTS(clock))
    assert router.on_transcript(_final("what is seventeen times twenty three", clock.now())) == "structured"
    await _frames(clock, router, 2)
    assert len(llm.calls) == 1
    llm.reload()  # (the embedded LLM's dispatcher starts the restart as it answers the request)
    llm.calls[0].fail(died_while_idle())
    waiting = await _frames(clock, router, 250)  # 20 s of reload: twice the first-piece timeout
    assert len(llm.calls) == 2 and router.active  # asked again; that request waits for the reload
    assert all(f is not FRONT and not np.any(f) for f in waiting)  # the front-end stays muted (silence)
    errors = [e.message for e in events if isinstance(e, ErrorEvent)]
    assert errors == [f"llm embedded failed during the reply to turn 1: {DIED}; the reply asks it again (once), "
                      "waiting for that"]
    llm.loaded()
    await _frames(clock, router, 2)
    llm.calls[1].send("Three hundred ninety one.")
    llm.calls[1].end()
    frames = await _frames(clock, router, 80)
    assert any(np.abs(f).max() > 0.1 for f in frames if f is not FRONT)  # the answer is spoken
    assert frames[-1] is FRONT  # then the front-end is back
    done = [e.data for e in events if isinstance(e, Meta) and e.data["type"] == "agent_turn"]
    assert done[-1]["failed"] is False and done[-1]["text"] == "Three hundred ninety one."
    assert len(llm.calls) == 2 and len([e for e in events if isinstance(e, ErrorEvent)]) == 1
