"""A stream's hooks are given where it is opened (kame.backend.stt.base.open_stream's owner=,
on_fault=, on_discard=; one mechanism, was: STREAM_OWNER set by open_stream beside two ContextVars
the supervisor set itself), read by the STT with ``stream_hooks()``; an STT that does not read them
works as before. They belong to the stream open_stream returns, set while each of its steps runs
(review r1 of 064a4b6, finding 1: they were set in the opener's task for good, so a later bare
``stt.stream()`` there sent its failure to the old on_fault and went on instead of ending, and of
two streams opened in one task both had the second's)."""

import asyncio
import gc
import sys

import numpy as np
import pytest

from kame.backend import vad as vad_mod
from kame.backend.stt.base import StreamHooks, open_stream, owner_prefix, stream_hooks
from kame.backend.stt.streaming import Recognizer, SegmentedSTT
from kame.backend.types import AudioFrame, Transcript, Word
from kame.errors import BackendError
from kame.runtime.clock import leave

from .test_stt_stop import SILENCE, SPEECH, _EnergyModel


class _Plain:
    """A plugin's STT: ``stream(frames)`` only, knows nothing of hooks; notes those it runs with:
    ``seen`` as each stream starts (hooks, prefix), ``owners`` the owner it reads after each of its
    awaits (one list a stream; the other streams run meanwhile)."""

    name = "plain"

    def __init__(self) -> None:
        self.seen: list[tuple[StreamHooks, str]] = []
        self.owners: list[list[str]] = []

    async def stream(self, frames):
        self.seen.append((stream_hooks(), owner_prefix()))
        owners: list[str] = []
        self.owners.append(owners)
        async for f in frames:
            await asyncio.sleep(0)  # (the other task's stream runs meanwhile)
            owners.append(stream_hooks().owner)
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
    assert stt.owners == [["c2", "c2"]]

    class PlainDef:  # (a plain def stream() returning an async iterator: it has them as it is called)
        def stream(self, frames):
            self.hooks = stream_hooks()
            return _frames(1)

    stt = PlainDef()
    assert [tr async for tr in open_stream(stt, _frames(), owner="c3")] and stt.hooks.owner == "c3"


async def test_each_stream_has_its_openers_hooks_only():
    """Two sessions' streams at once each see their own, at every step (not one shared value the
    other session's stream set meanwhile); a stream opened with none has none (not an earlier
    stream's of the same task), nor has a task that opened no stream."""
    stt = _Plain()

    async def session(who: str) -> None:
        async for _ in open_stream(stt, _frames(3), owner=who, on_discard=lambda n: None):
            pass

    await asyncio.gather(session("s1"), session("s2"))
    assert sorted(h.owner for h, _ in stt.seen) == ["s1", "s2"]
    assert sorted(stt.owners) == [["s1"] * 3, ["s2"] * 3]  # (each read after an await: its own session)
    assert stream_hooks() == StreamHooks() and owner_prefix() == ""  # (the tasks' own, not this one's)

    async def later() -> None:
        async for _ in open_stream(stt, _frames(1), owner="s3", on_fault=print):
            pass
        async for _ in open_stream(stt, _frames(1)):
            pass

    await asyncio.create_task(later())
    assert stt.seen[-2][0].owner == "s3" and stt.seen[-1] == (StreamHooks(), "")


async def test_the_hooks_end_with_their_stream():
    """(finding 1a) After a stream opened with hooks, the task that read it has none: a bare
    ``stt.stream()`` read there next has none either."""
    stt = _Plain()
    async for _ in open_stream(stt, _frames(), owner="c2", on_fault=print, on_discard=print):
        assert stream_hooks() == StreamHooks()  # (nor between its steps)
    assert stream_hooks() == StreamHooks() and owner_prefix() == ""
    async for _ in stt.stream(_frames()):
        pass
    assert stt.seen[-1] == (StreamHooks(), "") and stt.owners[-1] == ["", ""]


async def test_two_streams_opened_in_one_task_each_have_their_own_hooks():
    """(finding 1b) Opened one after the other and read in turns, each has its own (was: both had
    the second's: the first's dropped frames went to the second's on_discard)."""
    stt = _Plain()
    a = open_stream(stt, _frames(), owner="A")
    b = open_stream(stt, _frames(), owner="B")
    for _ in range(2):
        await anext(a)
        await anext(b)
    assert [h.owner for h, _ in stt.seen] == ["A", "B"] and stt.owners == [["A", "A"], ["B", "B"]]
    await a.aclose()
    await b.aclose()


async def test_a_task_started_before_the_stream_was_opened_reads_it_with_its_hooks():
    """(finding 1c) The hooks go with the stream, not with the context of the task that opened it."""
    stt = _Plain()
    handed: asyncio.Queue = asyncio.Queue()

    async def reader() -> list[str]:
        return [tr.text async for tr in await handed.get()]

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)  # (the reader is waiting)
    handed.put_nowait(open_stream(stt, _frames(), owner="c4"))
    assert await task == ["hi", "hi"]
    assert stt.seen == [(StreamHooks(owner="c4"), "session c4: ")] and stt.owners == [["c4", "c4"]]


def test_a_left_behind_stream_task_says_nothing_when_it_is_collected(monkeypatch):
    """(review r5 of f0cad83, finding 1) A plugin stream that swallows its cancellation is left
    behind with kame's one warning (kame.runtime.clock.leave); when its task is collected (at the
    latest at exit), its coroutine is closed outside the task, and the step's reset of the hooks
    there is nothing to undo (was: "Exception ignored in: <coroutine ...> ... ValueError: <Token
    ...> was created in a different Context" on stderr after the warning)."""

    class Stubborn:
        name = "stubborn"

        async def stream(self, frames):
            while True:
                try:
                    await asyncio.get_running_loop().create_future()  # (never done)
                except asyncio.CancelledError:
                    pass  # (swallowed)
            yield

    async def read() -> None:
        async for _ in open_stream(Stubborn(), _frames(), owner="x"):
            pass

    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value}"))
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(read(), name="STT stubborn's stream (session x)")
        loop.run_until_complete(asyncio.sleep(0))  # (it waits in the STT's step, the hooks set in its context)
        task.cancel()
        loop.run_until_complete(asyncio.sleep(0))  # (swallowed: it waits again)
        assert not task.done()
        leave([task])
    finally:
        loop.close()
    del task
    gc.collect()
    assert unraisable == []


# ---------------------------------------------------------------- kame's own SegmentedSTT (finding 1a)

@pytest.fixture
def energy_vad(monkeypatch):
    monkeypatch.setattr(vad_mod, "SileroModel", _EnergyModel)


class _DiesAfterFinal(Recognizer):
    """Its final comes, then a helper's failure that cost no transcript (as the embedded STT's
    pocketsphinx child dying: Recognizer.error_after_final)."""

    def accept(self, pcm: np.ndarray) -> None:
        pass

    def partial(self):
        return None

    def final(self, speech_end=None):
        self.error_after_final = BackendError("helper died")
        return [Word("hi", 0.0, 0.1)]


class _DyingSTT(SegmentedSTT):
    name = "dying"

    def new_recognizer(self) -> Recognizer:
        return _DiesAfterFinal()


async def _utterance():
    for k, pcm in enumerate([SPEECH] * 10 + [SILENCE] * 12):
        yield AudioFrame(pcm, 0.08 * k)


async def test_a_bare_stream_after_one_opened_with_on_fault_ends_with_the_error(energy_vad):
    """The docs' promise (docs/backend.md, embedded STT): a script's own ``stt.stream(...)`` ends
    with the error after the final; one opened with ``open_stream(..., on_fault=fn)``: ``fn`` hears
    it and the stream goes on. Was: read in the same task after the latter, the bare stream's error
    went to the old ``fn`` and it went on."""
    heard: list[str] = []
    stt = _DyingSTT(max_lag=float("inf"))  # (all frames are queued at once)
    got = [tr.text async for tr in open_stream(stt, _utterance(), owner="c1", on_fault=lambda e: heard.append(str(e)))]
    assert (got, heard) == (["hi"], ["helper died"])
    bare: list[str] = []
    with pytest.raises(BackendError, match="^helper died$"):
        async for tr in stt.stream(_utterance()):
            bare.append(tr.text)
    assert (bare, heard) == (["hi"], ["helper died"])  # (the first stream's on_fault heard nothing more)
