"""The cascade reuses its sessions' VADs (reset) instead of building one per connection: a silero
VAD per session (an onnxruntime session each) grew a server's memory by ~1 MB per
connect/disconnect (kame bench soak --parts cycles); the tandem keeps one per batch row."""

import asyncio
import logging

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


async def _reconnect_without_reader(agent, clock):
    """A session with speech whose client leaves: close() returns at once, its STT stream unwinds."""
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(speech_frame(), frames=2)
    d._task.cancel()
    await asyncio.gather(d._task, return_exceptions=True)
    await s.close()
    await _spin()
    return s


async def test_reconnect_bursts_build_no_more_vads_than_were_in_use_at_once():
    """max_sessions=1: bursts of 4 reconnects whose closed sessions all still unwind (each holds its
    VAD) build 4 VADs, reused by every later burst (was: the pool kept 1, so each burst built 3
    more: 10 for 3 bursts)."""
    ResettableVAD.built = []
    clock, stt = FakeClock(), SlowToStopSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt, vad=ResettableVAD,
                            **{"runtime.max_sessions": 1})
    for _ in range(3):
        burst = [await _reconnect_without_reader(agent, clock) for _ in range(4)]
        assert not any(s.stopped for s in burst)
        stt.release.set()  # they all finish unwinding
        await asyncio.gather(*(s.wait_stopped() for s in burst))
        stt.release = asyncio.Event()
    assert len(ResettableVAD.built) == 4
    await agent.stop()


async def test_an_open_cancelled_while_its_vad_resets_does_not_lose_that_vad():
    """A client that leaves while its session opens (cancelled awaiting the reused VAD's reset):
    the VAD goes back to the pool and the next session gets it (was: lost, a new one built)."""
    ResettableVAD.built = []
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), vad=ResettableVAD)
    for _ in range(3):
        s = await agent.open_session()
        await s.close()
        await s.wait_stopped()
        opening = asyncio.create_task(agent.open_session())
        while agent._idle_vads or not agent._opening:  # (it took the idle VAD; its reset is queued)
            await asyncio.sleep(0)
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)
        assert opening.cancelled() and len(agent._idle_vads) == 1
    s = await agent.open_session()
    assert len(ResettableVAD.built) == 1 and s._turns.vad is ResettableVAD.built[0]
    await agent.stop()


class BadResetVAD(ResettableVAD):
    """A plugin VAD whose reset() raises."""

    def reset(self) -> None:
        self.resets += 1
        raise RuntimeError("reset not supported in this state")


async def _cycles(agent, n):
    for _ in range(n):
        s = await agent.open_session()
        await s.close()
        await s.wait_stopped()


async def test_a_vad_whose_reset_raises_is_dropped_and_logged_once(caplog):
    """A VAD whose reset() raises is dropped, a new one built, and VADs are no longer reused: one
    warning naming the error (was: each new VAD pooled, its reset failing again, a warning per
    connection)."""
    ResettableVAD.built = []
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), vad=BadResetVAD)
    with caplog.at_level(logging.WARNING, "kame.cascade.agent"):
        await _cycles(agent, 4)
    warned = [r.getMessage() for r in caplog.records if "resetting a VAD" in r.getMessage()]
    assert len(warned) == 1 and "reset not supported in this state" in warned[0]
    assert len(ResettableVAD.built) == 4 and sum(v.resets for v in ResettableVAD.built) == 1
    assert not agent._idle_vads and not agent._lent_vads
    await agent.stop()


async def test_stop_empties_the_vad_pool_and_a_restart_reuses_again(monkeypatch):
    """stop() empties the pool (a start() may load another runtime.vad: a new VAD is built) and
    ends a failed reset's 'no reuse': after a restart VADs are reused again."""
    ResettableVAD.built = []
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), vad=BadResetVAD)
    await _cycles(agent, 2)  # (the second one's reset failed: no reuse)
    await agent.stop()
    assert not agent._idle_vads and not agent._lent_vads and not agent._returning_vads
    monkeypatch.setitem(agent._given, "vad_factory", ResettableVAD)
    await agent.start()
    ResettableVAD.built = []
    await _cycles(agent, 3)
    assert len(ResettableVAD.built) == 1 and ResettableVAD.built[0].resets == 2
    await agent.stop()


async def test_a_vad_without_reset_is_built_per_session():
    """A VAD without reset() cannot be cleared for the next session: each session builds its own,
    none is pooled."""
    built = []

    class PlainVAD(FakeVAD):
        def __init__(self) -> None:
            super().__init__()
            built.append(self)

    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), vad=PlainVAD)
    await _cycles(agent, 3)
    assert len(built) == 3 and len(set(map(id, built))) == 3
    assert not agent._idle_vads and not agent._lent_vads and not agent._returning_vads
    await agent.stop()
