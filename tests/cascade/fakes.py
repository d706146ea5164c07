"""Fake STT / LLM / TTS / VAD for cascade tests, all timed on a FakeClock, plus a driver that
pushes 80 ms frames and advances the clock."""

from __future__ import annotations

import asyncio

import numpy as np

from kame.backend.types import FRAME_SIZE, Transcript, Word
from kame.backend.vad import VADEvent
from kame.errors import BackendError
from kame.runtime.base import AgentAudio, Meta
from kame.runtime.clock import FakeClock


class FakeVAD:
    """Speech = frame peak above 0.1 (the tests push loud noise for speech, zeros for silence)."""

    def __init__(self, min_silence: float = 0.24) -> None:
        self.in_speech, self.last_end, self.silence, self.min_silence = False, None, 0.0, min_silence

    @property
    def last_voice(self):
        return self.last_end

    def push(self, pcm, t):
        t1 = t + pcm.shape[0] / 24000
        if np.abs(pcm).max() > 0.1:
            ev = [] if self.in_speech else [VADEvent("start", t, t1)]
            self.in_speech, self.silence, self.last_end = True, 0.0, t1
            return ev
        if self.in_speech:
            self.silence += t1 - t
            if self.silence >= self.min_silence:
                self.in_speech = False
                return [VADEvent("end", self.last_end, t1)]
        return []


class FakeSTT:
    """Drains the frames; yields whatever transcripts the test puts in ``queue``."""

    name = "fake-stt"

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.frames = 0

    def say(self, text: str, t: float, final: bool = True) -> None:
        words = tuple(Word(w, t - 0.3 * (len(text.split()) - i), t - 0.3 * (len(text.split()) - i - 1))
                      for i, w in enumerate(text.split()))
        self.queue.put_nowait(Transcript(words, final, t))

    async def stream(self, frames):
        async def drain():
            async for _ in frames:
                self.frames += 1
            self.queue.put_nowait(None)

        task = asyncio.create_task(drain())
        try:
            while (tr := await self.queue.get()) is not None:
                yield tr
        finally:
            task.cancel()


class FakeLLM:
    """Streams ``pieces`` with ``delay`` clock-seconds between them; records calls/cancellation.
    ``fail_calls``: 1-based call numbers that raise BackendError (a dead back-end)."""

    name = "fake-llm"

    def __init__(self, clock: FakeClock, pieces: list[str], delay: float = 0.2, fail_calls=()) -> None:
        self.clock, self.pieces, self.delay, self.fail_calls = clock, pieces, delay, set(fail_calls)
        self.calls: list[list] = []
        self.finished_at: list[float] = []
        self.cancelled = 0

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        self.calls.append(list(messages))
        if len(self.calls) in self.fail_calls:
            await self.clock.sleep(self.delay)
            raise BackendError("fake LLM is down")
        try:
            for p in self.pieces:
                await self.clock.sleep(self.delay)
                yield p
            self.finished_at.append(self.clock.now())
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise


class FakeTTS:
    """A 0.3-amplitude tone, 0.25 s per word, after ``delay`` clock-seconds."""

    name = "fake-tts"
    sample_rate = 24000

    def __init__(self, clock: FakeClock, delay: float = 0.05) -> None:
        self.clock, self.delay = clock, delay
        self.texts: list[str] = []
        self.started_at: list[float] = []
        self.cancelled = 0

    async def synthesize(self, text):
        self.texts.append(text)
        self.started_at.append(self.clock.now())
        try:
            await self.clock.sleep(self.delay)
            n = int(0.25 * 24000 * len(text.split()))
            yield (0.3 * np.sin(np.arange(n) * 0.05)).astype(np.float32)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise


SILENCE = np.zeros(FRAME_SIZE, np.float32)


def speech_frame() -> np.ndarray:
    return (0.5 * np.random.default_rng(0).uniform(-1, 1, FRAME_SIZE)).astype(np.float32)


class Driver:
    """Collects a session's outputs and steps the FakeClock one 80 ms frame at a time."""

    def __init__(self, clock: FakeClock, session) -> None:
        self.clock, self.session = clock, session
        self.out: list = []
        self._task = asyncio.create_task(self._collect())

    async def _collect(self):
        async for item in self.session.outputs():
            self.out.append(item)

    async def settle(self, n: int = 30) -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    async def step(self, pcm: np.ndarray | None = None, frames: int = 1) -> None:
        for _ in range(frames):
            self.clock.advance(FRAME_SIZE / 24000)
            await self.session.push_audio(SILENCE if pcm is None else pcm)
            await self.settle()

    def audio(self) -> list[AgentAudio]:
        return [o for o in self.out if isinstance(o, AgentAudio)]

    def voiced(self) -> list[AgentAudio]:
        return [o for o in self.audio() if np.abs(o.pcm).max() > 0.01]

    def metas(self, type_: str) -> list[dict]:
        return [o.data for o in self.out if isinstance(o, Meta) and o.data.get("type") == type_]

    async def close(self) -> None:
        await self.session.close()
        await self._task
