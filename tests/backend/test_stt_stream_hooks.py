"""A stream's hooks are given where it is opened (kame.backend.stt.base.open_stream's owner=,
on_fault=, on_discard=; one mechanism, was: STREAM_OWNER set by open_stream beside two ContextVars
the supervisor set itself), read by the STT with ``stream_hooks()``; an STT that does not read them
works as before."""

import asyncio

from kame.backend.stt.base import StreamHooks, open_stream, owner_prefix, stream_hooks
from kame.backend.types import AudioFrame, Transcript, Word


class _Plain:
    """A plugin's STT: ``stream(frames)`` only, knows nothing of hooks; notes those it runs with."""

    name = "plain"

    def __init__(self) -> None:
        self.seen: list[tuple[StreamHooks, str]] = []

    async def stream(self, frames):
        self.seen.append((stream_hooks(), owner_prefix()))
        async for f in frames:
            await asyncio.sleep(0)  # (the other task's stream runs meanwhile)
            yield Transcript((Word("hi", f.t, f.t),), True, f.t)


async def _frames(n: int = 2):
    for k in range(n):
        yield AudioFrame([0.0] * 1920, 0.08 * k)


async def test_open_stream_gives_the_stream_its_hooks():
    faults, discards = [], []
    stt = _Plain()
    trs = [tr async for tr in open_stream(stt, _frames(), None, owner="c2", on_fault=faults.append,
                                          on_discard=discards.append)]
    assert [tr.text for tr in trs] == ["hi", "hi"]  # (a plain STT works with them given)
    ((hooks, prefix),) = stt.seen
    assert (hooks.owner, hooks.on_fault, hooks.on_discard, prefix) == ("c2", faults.append, discards.append,
                                                                        "session c2: ")


async def test_each_stream_has_its_openers_hooks_only():
    """Two sessions' streams at once each see their own; a stream opened with none has none (not
    an earlier stream's of the same task), nor has a task that opened no stream."""
    stt = _Plain()

    async def session(who: str) -> None:
        async for _ in open_stream(stt, _frames(3), owner=who, on_discard=lambda n: None):
            pass

    await asyncio.gather(session("s1"), session("s2"))
    assert sorted(h.owner for h, _ in stt.seen) == ["s1", "s2"]
    assert stream_hooks() == StreamHooks() and owner_prefix() == ""  # (the tasks' own, not this one's)

    async def later() -> None:
        async for _ in open_stream(stt, _frames(1), owner="s3", on_fault=print):
            pass
        async for _ in open_stream(stt, _frames(1)):
            pass

    await asyncio.create_task(later())
    assert stt.seen[-2][0].owner == "s3" and stt.seen[-1] == (StreamHooks(), "")
