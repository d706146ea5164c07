"""kame's own failures reach a remote client in short form (the ErrorEvent's brief, set where
it is made: kame.runtime.base.internal_error); the whole message stays for `kame run` and the log."""

from __future__ import annotations

import numpy as np

from kame.runtime.base import SEE_LOG, AgentAudio, ErrorEvent, client_form

from .fakes import Recorder, step
from .test_engine import make_agent


class BrokenRouter:
    """A hybrid router whose frame() raises (a bug inside kame's routing)."""

    active = False

    def on_vad(self, *args) -> None:
        pass

    def on_transcript(self, tr) -> None:
        pass

    def on_agent_text(self, text, t) -> None:
        pass

    def frame(self, pcm):
        raise RuntimeError("index 3 out of range in /opt/kame/cascade/hybrid.py")

    async def aclose(self) -> None:
        pass


async def test_a_hybrid_routing_failure_is_told_in_short_form():
    def backend(session):
        session.router = BrokenRouter()
        return None

    agent, clock, _ = make_agent(backend=backend)
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    await s.push_audio(np.zeros(1920, np.float32))
    await step(agent, clock, 2)
    errors = [o for o in rec.items if isinstance(o, ErrorEvent)]
    assert errors and errors[0].message == "hybrid routing failed: index 3 out of range in /opt/kame/cascade/hybrid.py"
    assert {client_form(e).message for e in errors} == {f"hybrid routing failed; {SEE_LOG}"}
    assert len([o for o in rec.items if isinstance(o, AgentAudio)]) == 2  # (the session goes on)
    await s.close()
    await rec.task
    await agent.stop()
