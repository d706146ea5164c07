"""A tandem session's outputs() has one reader at a time: a second open reader is a ReaderError
(was: both read the one queue and each silently got part of the outputs), and a reader that
ended, was closed, cancelled or left leaves the outputs to the next one, losing nothing."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kame.runtime.base import AgentAudio, Meta, ReaderError

from .fakes import Recorder, step
from .test_engine import make_agent


async def _open():
    agent, clock, _ = make_agent()
    await agent.start()
    s = await agent.open_session()
    await step(agent, clock)
    return agent, clock, s


def _frames(items) -> int:
    return sum(isinstance(o, AgentAudio) for o in items)


async def test_a_second_reader_is_an_error_and_the_first_gets_everything():
    agent, clock, s = await _open()
    rec = Recorder(s)  # reading (its task waits in outputs())
    await step(agent, clock, 2)
    with pytest.raises(ReaderError, match=r"already has an outputs\(\) reader.*one loop that dispatches by type"):
        s.outputs()
    await step(agent, clock, 2)
    await s.close()
    await rec.task
    assert _frames(rec.items) == s.stats.frames == 5
    assert rec.items[-1].data["type"] == "stats" and rec.items[-1].data["final"]
    await agent.stop()


async def test_one_task_for_audio_one_for_meta_fails_instead_of_splitting():
    """The hunt's layout: the task that opened the second reader fails with ReaderError."""
    agent, clock, s = await _open()
    audio, metas = [], []

    async def read_audio():
        async for out in s.outputs():
            if isinstance(out, AgentAudio):
                audio.append(out)

    async def read_meta():
        async for out in s.outputs():
            if isinstance(out, Meta):
                metas.append(out)

    a, m = asyncio.create_task(read_audio()), asyncio.create_task(read_meta())
    await step(agent, clock, 3)
    assert m.done() and isinstance(m.exception(), ReaderError)
    await s.close()
    await a
    assert len(audio) == s.stats.frames == 4
    await agent.stop()


async def test_reading_again_after_a_reader_was_cancelled_loses_nothing():
    agent, clock, s = await _open()
    first = Recorder(s)
    await step(agent, clock, 2)
    first.task.cancel()  # (waiting in outputs())
    await asyncio.gather(first.task, return_exceptions=True)
    await step(agent, clock, 2)  # outputs nobody reads meanwhile stay queued
    second = Recorder(s)
    await step(agent, clock)
    await s.close()
    await second.task
    assert _frames(first.items) + _frames(second.items) == s.stats.frames == 6
    await agent.stop()


async def test_a_reader_left_with_break_or_cancelled_in_its_loop_body_frees_the_outputs_at_once():
    agent, clock, s = await _open()
    async for out in s.outputs():
        break  # (no aclose: dropped)
    got = [out]
    busy = asyncio.Event()

    async def slow_reader():
        async for out in s.outputs():
            got.append(out)
            await busy.wait()  # cancelled here, between items (as a send to a slow client)

    task = asyncio.create_task(slow_reader())
    await step(agent, clock, 2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with contextlib.aclosing(s.outputs()) as outs:  # (the server's pump)
        got.append(await outs.__anext__())
    last = Recorder(s)  # after a closed one
    await step(agent, clock)
    await s.close()
    await last.task
    got += last.items
    assert _frames(got) == s.stats.frames == 4
    await agent.stop()


async def test_a_reader_kept_in_a_variable_by_a_cancelled_task_does_not_block_the_next():
    """Its task's traceback keeps it alive, but the task has ended: it reads no more."""
    agent, clock, s = await _open()
    got, busy = [], asyncio.Event()

    async def slow_reader():
        outs = s.outputs()
        async for out in outs:
            got.append(out)
            await busy.wait()

    task = asyncio.create_task(slow_reader())
    await step(agent, clock)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    rec = Recorder(s)
    await step(agent, clock)
    await s.close()
    await rec.task
    assert _frames(got) + _frames(rec.items) == s.stats.frames == 3
    await agent.stop()


async def test_an_old_reader_resumed_after_a_newer_one_took_over_is_an_error():
    agent, clock, s = await _open()
    old = await asyncio.create_task(_outputs(s))  # made by a task that has ended since
    new = s.outputs()
    with pytest.raises(ReaderError, match="replaced by a newer one"):
        await old.__anext__()
    assert isinstance(await new.__anext__(), Meta)  # (its "info")
    await new.aclose()
    await agent.stop()


async def _outputs(s):
    return s.outputs()


async def test_outputs_after_the_end_end_at_once_for_every_reader():
    agent, clock, s = await _open()
    await s.close()
    assert [o.data["type"] for o in [o async for o in s.outputs()] if isinstance(o, Meta)][-1] == "stats"
    for _ in range(2):
        assert await asyncio.wait_for(_collect(s), 2.0) == []
    await agent.stop()


async def _collect(s):
    return [o async for o in s.outputs()]
