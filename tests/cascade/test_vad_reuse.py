"""The cascade reuses its sessions' VADs (reset) instead of building one per connection: a silero
VAD per session (an onnxruntime session each) grew a server's memory by ~1 MB per
connect/disconnect (kame bench soak --parts cycles); the tandem keeps one per batch row."""

import asyncio

from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeLLM, FakeTTS, FakeVAD, speech_frame
from .test_open_close import SlowToStopSTT, _spin
from .test_session import _agent


class ResettableVAD(FakeVAD):
    """A FakeVAD with the reset() of kame's VADs (StreamingVAD, EnergyVAD); counts them."""

    built: list = []

    def __init__(self) -> None:
        super().__init__()
        self.resets = 0
        ResettableVAD.built.append(self)

    def reset(self) -> None:
        self.resets += 1
        self.in_speech, self.last_end, self.silence = False, None, 0.0


async def test_open_close_cycles_reuse_one_vad_reset():
    """60 connect/disconnect cycles build one VAD, reset before each reuse (was: 60 built), and
    a reused VAD does not carry the last session's speech into the next one."""
    ResettableVAD.built = []
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), vad=ResettableVAD)
    for _ in range(60):
        s = await agent.open_session()
        d = Driver(clock, s)
        await d.step(speech_frame(), frames=2)  # (leaves its VAD in speech)
        await d.close()
        await s.wait_stopped()
    assert len(ResettableVAD.built) == 1
    assert ResettableVAD.built[0].resets == 59
    s = await agent.open_session()
    assert not s._turns.vad.in_speech and s._turns.vad.last_voice is None
    await agent.stop()


async def test_a_vad_is_not_reused_while_its_closed_session_still_unwinds():
    """The VAD of a closed session whose STT stream is still unwinding (its transcripts may still
    read the VAD) is not handed to the next session; once that session has stopped it is."""
    ResettableVAD.built = []
    clock, stt = FakeClock(), SlowToStopSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt, vad=ResettableVAD)
    first = await agent.open_session()
    d = Driver(clock, first)
    await d.step(speech_frame(), frames=2)  # (its STT stream is under way)
    d._task.cancel()  # (a server's client left: no reader)
    await asyncio.gather(d._task, return_exceptions=True)
    await first.close()  # its stream is cancelled and waits for stt.release to unwind
    await _spin()
    second = await agent.open_session()
    assert not first.stopped
    assert len(ResettableVAD.built) == 2 and second._turns.vad is not first._turns.vad
    await second.close()
    stt.release.set()
    await asyncio.gather(first.wait_stopped(), second.wait_stopped())
    third = await agent.open_session()
    assert len(ResettableVAD.built) == 2 and third._turns.vad in ResettableVAD.built
    await agent.stop()
