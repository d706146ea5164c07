"""A cascade session's outputs() has one reader at a time, as the tandem's: a second open reader
is a ReaderError (was: both read the one queue, each silently got part of the outputs), and a
reader that ended, was closed, cancelled or left leaves the outputs to the next one."""

import asyncio
import contextlib

import pytest

from kame.runtime.base import AgentAudio, Meta, ReaderError
from kame.runtime.clock import FakeClock

from .fakes import FakeLLM, FakeTTS, speech_frame
from .test_session import _agent


async def _spin(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _frames(clock, s, n: int) -> None:
    for _ in range(n):
        await s.push_audio(speech_frame())
        clock.advance(0.08)
        await _spin()


def _audio(items) -> int:
    return sum(isinstance(o, AgentAudio) for o in items)


async def test_a_second_reader_is_an_error_and_the_first_gets_everything():
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock))
    s = await agent.open_session()
    got = []

    async def read_all():
        async for out in s.outputs():
            got.append(out)

    async def read_meta():  # the hunt's layout: one task for audio, one for Meta
        async for out in s.outputs():
            pass

    a, m = asyncio.create_task(read_all()), asyncio.create_task(read_meta())
    await _frames(clock, s, 5)
    assert m.done() and isinstance(m.exception(), ReaderError)
    with pytest.raises(ReaderError, match="one loop that dispatches by type"):
        s.outputs()
    await s.close()
    await a
    assert _audio(got) >= 5 and got[-1].data["type"] == "stats" and got[-1].data["final"]
    assert any(isinstance(o, Meta) and o.data["type"] == "info" for o in got)
    await agent.stop()


async def test_reading_again_after_a_reader_was_cancelled_left_or_closed_loses_nothing():
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock))
    s = await agent.open_session()
    got = []

    async def reader():
        async for out in s.outputs():
            got.append(out)

    task = asyncio.create_task(reader())
    await _frames(clock, s, 3)
    task.cancel()  # (waiting in outputs())
    await asyncio.gather(task, return_exceptions=True)
    await _frames(clock, s, 2)  # unread meanwhile: kept
    async for out in s.outputs():
        got.append(out)
        break  # (no aclose: dropped)
    async with contextlib.aclosing(s.outputs()) as outs:  # (the server's pump)
        got.append(await outs.__anext__())
    assert s._readers == 0  # (close() would not wait to flush the STT for it)
    task = asyncio.create_task(reader())
    await _frames(clock, s, 2)
    await s.close()
    await task
    ts = [o.t for o in got if isinstance(o, AgentAudio)]  # one per 80 ms tick (the first at 0): none lost
    assert ts == pytest.approx([0.08 * k for k in range(8)])
    assert [o async for o in s.outputs()] == []  # after the end: at once
    await agent.stop()
