"""An STT slower than real time under kame's STTSupervisor (QA "long" #1): kame's own STTs
(SegmentedSTT) take frames only as their worker gets to them (at most streaming.INBOX_FRAMES
ahead), so the supervisor's queue holds the rest: at most MAX_QUEUED_FRAMES, the oldest dropped
and counted (stt_dropped_s), and a stream that takes nothing for stall_s while audio waits is
reported as stalled. Was: the stream's feeder moved every frame at once into an unbounded inbox
of its worker, so the supervisor's queue was always empty: nothing dropped, counted or reported
while the STT fell minutes behind. The recognizer here blocks (a decode that never ends, until
the test lets it go), on a FakeClock: no timing decides the outcome."""

import asyncio
import logging
import threading
import time

import numpy as np
import pytest

from kame.backend.stt import streaming
from kame.backend.stt.streaming import Recognizer, SegmentedSTT, StreamStopped, stream_stop_event
from kame.backend.types import FRAME_SIZE, AudioFrame, Word
from kame.runtime.clock import FakeClock
from kame.runtime.sttloop import MAX_QUEUED_FRAMES, STTSupervisor


@pytest.fixture(scope="module")
def question():
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from kame.backend.tts.piper import PiperTTS

    onnxruntime.set_seed(0)
    speech = PiperTTS().synth("Where is the nearest train station?")
    x = np.concatenate([np.zeros(24000, np.float32), speech])
    return np.concatenate([x, np.zeros(-len(x) % FRAME_SIZE, np.float32)])


class _Stuck(Recognizer):
    """Its first accept holds the worker (``entered`` says it is in) until its stream is stopped
    (as a recognizer waiting for something shared gives up: streaming.stream_stop_event)."""

    def __init__(self, stt):
        self.stt = stt

    def accept(self, pcm16k):
        self.stt.entered.set()
        stop = stream_stop_event()
        while not stop.wait(60):
            pass
        raise StreamStopped("stopped")

    def partial(self):
        return None

    def final(self, speech_end=None):
        return [Word("hello", 0.0, 0.5)]


class _SlowSTT(SegmentedSTT):
    name = "slow"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.entered = threading.Event()

    def new_recognizer(self):
        return _Stuck(self)


async def _until(cond, what: str) -> None:
    """Let the loop (and the worker thread) run until ``cond()``; 30 s of wall time is a hang."""
    end = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < end, f"never: {what}"
        await asyncio.sleep(0.01)


async def test_a_stuck_stt_leaves_its_audio_in_the_supervisors_bounded_queue(question, caplog):
    clock = FakeClock(100.0)
    failures: list[str] = []
    stt = _SlowSTT(clock=clock)

    async def on_transcript(tr):
        pass

    sup = STTSupervisor(stt, clock, who="t1", on_transcript=on_transcript,
                        on_failure=lambda exc, wait: failures.append(str(exc)))
    task = asyncio.create_task(sup.run())
    pushed = 0

    def push(pcm):  # (stamped as live audio would be; the clock itself stays put: no stall while pushing)
        nonlocal pushed
        sup.push(AudioFrame(pcm, 100.0 + 0.08 * pushed))
        pushed += 1

    try:
        for i in range(0, len(question), FRAME_SIZE):  # 1 s of silence, then speech: the worker gets stuck
            push(question[i:i + FRAME_SIZE])
            await asyncio.sleep(0)
        await _until(stt.entered.is_set, "the recognizer got audio")
        before = pushed  # (frames the stream may have taken before it got stuck: these, and its inbox)
        caplog.set_level(logging.WARNING, logger="kame.runtime.sttloop")
        for _ in range(streaming.INBOX_FRAMES + MAX_QUEUED_FRAMES + 100):  # on a clock that does not move: no stall yet
            push(np.zeros(FRAME_SIZE, np.float32))
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        waiting = sup._frames.qsize()
        taken = pushed - waiting - sup.dropped_frames  # frames the stream took from the supervisor
        assert taken <= before + streaming.INBOX_FRAMES  # was: all of them (an unbounded backlog in the STT)
        assert waiting == MAX_QUEUED_FRAMES  # the bound the docs promise, at the supervisor
        assert sup.dropped_frames == pushed - taken - MAX_QUEUED_FRAMES > 0  # counted (stt_dropped_s)
        (warning,) = [r.getMessage() for r in caplog.records if "behind real time" in r.getMessage()]
        assert warning.startswith("session t1: STT slow is more than 20 s behind real time")
        assert not failures
        # no audio taken for stall_s while audio waits: a stall, reported, its waiting audio counted
        clock.advance(sup.stall_s + 0.08)
        push(np.zeros(FRAME_SIZE, np.float32))
        await _until(lambda: failures, "the stall was reported")
        assert failures == ["STT slow stalled: it has taken no audio for 5.1 s (20.0 s of audio waiting for it)"]
        assert sup.dropped_frames == pushed - taken  # all it never took (but what its own inbox held)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_worker_frees_a_place_for_each_frame_it_takes(monkeypatch):
    """The hand-off itself: a stream of more frames than its inbox holds goes through whole
    (none kept waiting for a place never freed), never more than INBOX_FRAMES in the inbox."""
    clock = FakeClock(100.0)

    class _Quiet(SegmentedSTT):
        name = "quiet"

        def new_recognizer(self):
            raise AssertionError("silence opens no utterance")

    seen = []
    real_put = streaming._Worker.put

    def put(self, pcm, t):
        real_put(self, pcm, t)
        seen.append(len(self.inbox))

    async def frames():
        for k in range(3 * streaming.INBOX_FRAMES):
            yield AudioFrame(np.zeros(FRAME_SIZE, np.float32), clock.now() + 0.08 * k)

    monkeypatch.setattr(streaming._Worker, "put", put)
    assert [tr async for tr in _Quiet(clock=clock).stream(frames())] == []
    assert len(seen) == 3 * streaming.INBOX_FRAMES and max(seen) <= streaming.INBOX_FRAMES
