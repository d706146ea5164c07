"""Small deterministic fakes for the runtime tests: a frame model, an STT, an LLM, and helpers
that drive the frame ticker on a FakeClock (step, run_plan) and record a session (Recorder)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np

from kame.backend.types import OracleAppend, OracleReset, Transcript, Word
from kame.errors import BackendError
from kame.runtime.base import AgentAudio, AgentText, Meta
from kame.runtime.worker import FrameOut

START = 1000  # the fake front-end's oracle start id


class FakeFrameModel:
    """Per-row state = a hash of everything the row has seen (audio + oracle tokens), so any
    cross-row leak or missed reset changes that row's outputs."""

    def __init__(self, batch_size: int, hook=None, voice_from: int = 2) -> None:
        self.voice_from = voice_from  # a row's outputs are audible from its frame voice_from on
        self.batch_size = batch_size
        self.h = np.zeros(batch_size, np.int64)
        self.n = np.zeros(batch_size, np.int64)
        self.feed = [deque() for _ in range(batch_size)]
        self.hook = hook
        self.steps = 0
        self.batch_sizes: list[int] = []

    def reset(self, rows) -> None:
        for r in rows:
            self.h[r], self.n[r] = 0, 0
            self.feed[r].clear()

    def oracle_reset(self, row: int) -> None:
        self.feed[row].clear()
        self.feed[row].append(START)

    def oracle_append(self, row: int, ids) -> None:
        self.feed[row].extend(int(i) for i in ids)

    def step(self, pcm: np.ndarray, active: np.ndarray) -> FrameOut:
        if self.hook is not None:
            self.hook()
        self.steps += 1
        self.batch_sizes.append(int(active.sum()))
        B = self.batch_size
        out = np.zeros((B, pcm.shape[1]), np.float32)
        text = np.full(B, -1, np.int64)
        oracle = np.full(B, -1, np.int64)
        for r in np.flatnonzero(active):
            tok = self.feed[r].popleft() if self.feed[r] else -1
            energy = int(np.abs(pcm[r]).sum() * 1000)
            self.h[r] = (self.h[r] * 31 + energy + (tok + 2) * 7 + 1) % 1_000_003
            self.n[r] += 1
            if self.n[r] > 1:
                text[r] = self.h[r] % 97
            if self.n[r] >= self.voice_from:
                out[r] = 0.3 * np.sin(np.arange(pcm.shape[1]) * (1 + self.h[r] % 13) / 50.0)
            oracle[r] = tok
        return FrameOut(pcm=out, text=text, oracle=oracle)


class FakeSTT:
    """One word per voiced frame; a partial after each voiced frame, a final after 3 silent
    frames. ``dead`` makes the stream raise (a crashed STT service)."""

    def __init__(self) -> None:
        self.dead = False
        self.streams = 0

    def word(self, n: int) -> str:
        """The text of the utterance's word ``n`` (from 0)."""
        return f"w{n}"

    async def stream(self, frames):
        self.streams += 1
        words: list[Word] = []
        silent = 0
        async for f in frames:
            if self.dead:
                raise BackendError("fake STT is down")
            if np.abs(f.pcm).max() > 0.05:
                words.append(Word(self.word(len(words)), f.t, f.t + 0.08))
                silent = 0
                yield Transcript(tuple(words), False, f.t + 0.08)
            else:
                silent += 1
                if silent == 3 and words:
                    yield Transcript(tuple(words), True, f.t + 0.08)
                    words = []


class FakeLLM:
    """Replies "answer N" in two pieces; ``dead`` makes it raise BackendError. With ``hold``
    a reply stops after its first piece (``in_reply`` is then True) until ``hold`` is cleared
    or the LLM dies: that is how tests kill it mid-reply."""

    def __init__(self) -> None:
        self.dead = False
        self.hold = False
        self.in_reply = False
        self.calls = 0

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        self.calls += 1
        if self.dead:
            raise BackendError("fake LLM is down")
        yield f"answer {self.calls}"  # (the oracle's text says "answer" once the next word begins)
        await asyncio.sleep(0)
        while self.hold and not self.dead:
            self.in_reply = True
            await asyncio.sleep(0.001)
        self.in_reply = False
        if self.dead:
            raise BackendError("fake LLM died mid-reply")
        yield " ."


async def wait_for(pred, timeout: float = 10.0) -> None:
    """Yield to the loop (and the worker thread) until ``pred()`` holds (wall-time bound)."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the runtime")
        await asyncio.sleep(0.0005)


def ticker_waits(agent, clock) -> bool:
    """The tandem's ticker runs no frame until the FakeClock moves: it sleeps on the clock (till
    its next frame time), or no session is live (it waits for one, or resets freed rows)."""
    ticker = agent._ticker
    return not agent.sessions or ticker is None or ticker.done() or any(t is ticker for _, t in clock.sleepers())


async def step(agent, clock, n: int = 1, failed=lambda: 0) -> None:
    """Run ``n`` more frames, one at a time. A frame the ticker runs without the clock (the first
    one, one woken by open_session, or one re-anchored at once after a late frame) is waited
    for; otherwise the FakeClock is advanced 80 ms, only once the ticker sleeps on it (an advance
    that lands mid-step makes that step late). Returns once the ticker waits again.
    ``failed()``: the frames whose step failed so far (they do not count in agent.frames)."""
    def count() -> int:
        return agent.frames + failed()

    for _ in range(n):
        target = count() + 1
        await wait_for(lambda: count() >= target or ticker_waits(agent, clock))
        if count() < target:
            clock.advance(0.08)
        await wait_for(lambda: count() >= target)
        await wait_for(lambda: ticker_waits(agent, clock))  # (a frame re-anchored after a late one runs now)
        for _ in range(5):  # let output consumers (Recorder tasks) drain their queues
            await asyncio.sleep(0)


class Recorder:
    """Collects everything a session outputs (in a task)."""

    def __init__(self, session):
        self.items = []
        self.task = asyncio.create_task(self._run(session))

    async def _run(self, session):
        async for out in session.outputs():
            self.items.append(out)

    def audio(self):
        return [o.pcm for o in self.items if isinstance(o, AgentAudio)]

    def text(self):
        return [o.text for o in self.items if isinstance(o, AgentText)]

    def meta(self, kind):
        return [o.data for o in self.items if isinstance(o, Meta) and o.data.get("type") == kind]


def speech(seed, n_frames, frame=1920):
    """Noise "speech" of n_frames frames, the first 3 silent."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n_frames * frame).astype(np.float32) * 0.2
    x[: 3 * frame] *= 0
    return x


async def run_plan(agent, clock, plan: dict, audio: dict, oracle_at: int | None = None, frame: int = 1920,
                   failed=lambda: 0) -> dict:
    """Sessions join and leave a started agent by ``plan`` {name: (seed, join frame, frames)}:
    each pushes ``audio[name]`` one frame per step from its join frame on and closes after its
    frames. With ``oracle_at`` every session gets an oracle prediction (start + tokens 5..8)
    at its own frame ``oracle_at``. ``failed``: as step's. Returns {name: Recorder}."""
    sessions, recs = {}, {}
    for k in range(max(j + n for _, j, n in plan.values())):
        for name, (_, join, n) in plan.items():
            if k == join:
                sessions[name] = await agent.open_session(name)
                recs[name] = Recorder(sessions[name])
            if name in sessions and k == join + n:
                await sessions.pop(name).close()
        for name, s in sessions.items():
            j = k - plan[name][1]
            await s.push_audio(audio[name][j * frame:(j + 1) * frame])
            if oracle_at is not None and j == oracle_at:
                s.on_oracle(OracleReset(1, clock.now()))
                s.on_oracle(OracleAppend(1, (5, 6, 7, 8), "x", clock.now()))
        await step(agent, clock, failed=failed)
    for s in sessions.values():
        await s.close()
    for r in recs.values():
        await r.task
    return recs


CREATED: list[tuple[object, dict]] = []  # (component, the keyword arguments its factory got)


def create_stt(arg=None, **kwargs) -> FakeSTT:
    """Registry factory (tests register it as stt "fake")."""
    CREATED.append((FakeSTT(), kwargs))
    return CREATED[-1][0]


def create_llm(arg=None, **kwargs) -> FakeLLM:
    """Registry factory (tests register it as llm "fake")."""
    CREATED.append((FakeLLM(), kwargs))
    return CREATED[-1][0]


def create_nice_llm(arg=None, *, nice: int = 0) -> FakeLLM:
    """Registry factory of an LLM that, like the embedded one, takes the back-end's CPU priority."""
    CREATED.append((FakeLLM(), {"nice": nice}))
    return CREATED[-1][0]


class QuestionSTT(FakeSTT):
    """Says "what is 12 times 7" (a "structured" turn) as a final after the first loud frame."""

    async def stream(self, frames):
        said = False
        async for f in frames:
            if not said and np.abs(f.pcm).max() > 0.05:
                said = True
                words = tuple(Word(w, f.t + 0.1 * i, f.t + 0.1 * i + 0.08)
                              for i, w in enumerate("what is 12 times 7".split()))
                yield Transcript(words, True, f.t + 0.5)


class FakeTTS:
    """0.24 s of a constant 0.5 signal per text."""

    name = "fake"
    sample_rate = 24000

    async def synthesize(self, text):
        yield np.full(3 * 1920, 0.5, np.float32)


def create_question_stt(arg=None, **kwargs) -> QuestionSTT:
    return QuestionSTT()


def create_tts(arg=None, **kwargs) -> FakeTTS:
    return FakeTTS()


class SlowCloseSTT:
    """As the embedded STT: a feeder task reads the frames; once its stream is cancelled it
    unwinds only when ``release`` is set (the embedded one joins its decode thread).
    ``log`` says what happened, in order."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.streams = 0
        self.unwinding = 0  # streams cancelled, waiting for release
        self.log: list[str] = []

    async def stream(self, frames):
        self.streams += 1

        async def feed():
            async for _ in frames:
                pass

        feeder = asyncio.create_task(feed())
        try:
            await asyncio.Event().wait()  # (no transcripts: until cancelled)
        finally:
            feeder.cancel()
            self.unwinding += 1
            await self.release.wait()
            self.unwinding -= 1
            self.log.append("stream unwound")
        yield  # (an async generator)

    async def aclose(self) -> None:
        self.log.append("stt closed")
