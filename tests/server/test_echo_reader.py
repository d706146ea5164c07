"""The echo agent's session has one outputs() reader at a time, as the tandem's and the cascade's
(kame.runtime.base.SingleReader): a second open reader is a ReaderError (was: both read the one
queue and each silently got part of the outputs); a reader that ended leaves the rest to the next."""

from __future__ import annotations

import asyncio

import pytest

from kame.runtime.base import AgentAudio, Meta, ReaderError
from kame.runtime.clock import FakeClock
from kame.server.echo import EchoAgent


async def _frames(clock, n: int) -> None:
    for _ in range(n):
        clock.advance(0.08)
        for _ in range(5):
            await asyncio.sleep(0)


async def test_a_second_reader_is_an_error_and_the_first_gets_every_frame():
    clock = FakeClock()
    agent = EchoAgent(delay_frames=1, clock=clock)
    s = await agent.open_session()
    got, second = [], []

    async def read(into):
        async for out in s.outputs():
            into.append(out)

    first = asyncio.create_task(read(got))
    try:
        await _frames(clock, 3)
        with pytest.raises(ReaderError, match=r"already has an outputs\(\) reader"):
            s.outputs()
        other = asyncio.create_task(read(second))  # the hunt's layout: a task per kind of output
        await _frames(clock, 3)
        assert other.done() and isinstance(other.exception(), ReaderError) and not second
        await s.close()
        await asyncio.wait_for(first, 5)  # its outputs end with the session
        assert sum(isinstance(o, AgentAudio) for o in got) == s._frames >= 4  # every frame played
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await agent.stop()


async def test_a_reader_that_ended_leaves_the_outputs_to_the_next_losing_nothing():
    clock = FakeClock()
    agent = EchoAgent(delay_frames=1, clock=clock)
    s = await agent.open_session()
    got = []

    async def read():
        async for out in s.outputs():
            got.append(out)

    first = asyncio.create_task(read())
    try:
        await _frames(clock, 2)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await _frames(clock, 2)  # nobody reads: the outputs stay queued
        async for out in s.outputs():  # the next reader gets them
            got.append(out)
            if sum(isinstance(o, AgentAudio) for o in got) == s._frames:
                break
        assert s._frames >= 3
        await s.close()
        rest = [o async for o in s.outputs()]  # a closed session's outputs end at once, its final "stats" last
        assert [(type(o), o.data["type"], o.data["final"]) for o in rest] == [(Meta, "stats", True)]
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await agent.stop()
