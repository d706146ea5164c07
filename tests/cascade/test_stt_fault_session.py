"""A cascade session whose STT stream reports a failure it goes on from (its on_fault hook,
kame.backend.stt.base.stream_hooks, as the embedded STT does when its pocketsphinx child dies mid-utterance: the
utterance's whisper final came first): the session tells it as any STT failure (an ErrorEvent
saying the stream goes on, the "backend" stt "down" Meta, counted in backend_failures), nothing
restarts, the final before it is answered, and the next transcript brings "up" and its answer."""

from kame.backend.stt.base import stream_hooks
from kame.errors import BackendError
from kame.runtime.base import ErrorEvent
from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeLLM, FakeSTT, FakeTTS
from .test_session import _agent

DIED = "the pocketsphinx child process died (exit code -9)"


class FaultSTT(FakeSTT):
    """FakeSTT whose queued BackendError goes to the stream's fault handler (the stream goes on)."""

    streams = 0

    async def stream(self, frames):
        self.streams += 1
        on_fault = stream_hooks().on_fault  # (given by the session's STT supervisor: open_stream)
        async for tr in super().stream(frames):
            if isinstance(tr, BackendError):
                on_fault(tr)
                continue
            yield tr


async def test_a_failure_the_stt_stream_goes_on_from_is_reported_and_the_next_turn_brings_it_up():
    clock = FakeClock()
    stt = FaultSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."], delay=0.1), FakeTTS(clock), stt=stt)
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(frames=5)
    stt.say("what is it", clock.now())  # its final, then the failure
    stt.queue.put_nowait(BackendError(DIED))
    await d.step(frames=40)
    errors = [o.message for o in d.out if isinstance(o, ErrorEvent)]
    assert errors == [f"stt fake-stt failed: {DIED}; the stream goes on and its next utterance tries again"]
    assert [(m["component"], m["status"], m.get("goes_on")) for m in d.metas("backend")] == [("stt", "down", True)]
    assert s.stats.backend_failures == 1 and stt.streams == 1  # reported, not restarted
    assert [m["text"] for m in d.metas("agent_turn")] == ["Hi."]  # the final before it is answered
    stt.say("hello", clock.now())
    await d.step(frames=40)
    assert [(m["component"], m["status"]) for m in d.metas("backend")] == [("stt", "down"), ("stt", "up")]
    assert [m["text"] for m in d.metas("agent_turn")] == ["Hi.", "Hi."] and stt.streams == 1
    await d.close()
    await agent.stop()
