"""An STT slower than real time under kame's STTSupervisor (QA "long" #1): kame's own STTs
(SegmentedSTT) take frames only as their worker gets to them (at most streaming.INBOX_FRAMES
ahead), so the supervisor's queue holds the rest: at most MAX_QUEUED_FRAMES, the oldest dropped
and counted (stt_dropped_s), and a stream that takes nothing while audio waits is reported as
stalled: after stall_s, or a kame STT's decode_stall_s (one slow decode is no stall), the frames
its worker held then counted too. Was: the stream's feeder moved every frame at once into an unbounded inbox
of its worker, so the supervisor's queue was always empty: nothing dropped, counted or reported
while the STT fell minutes behind. The recognizer here blocks (a decode that never ends, until
the test lets it go), on a FakeClock: no timing decides the outcome."""

import asyncio
import logging
import threading
import time

import numpy as np
import pytest

from kame.backend.stt import streaming, streamworker
from kame.backend.stt.streaming import (BufferedRecognizer, Recognizer, SegmentedSTT, StreamStopped,
                                        stream_stop_event)
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
        assert warning.startswith("session t1: STT slow is at least 20 s behind real time")
        assert not failures
        clock.advance(sup.stall_s + 0.08)  # a kame STT's decode may take longer than stall_s: no stall yet
        push(np.zeros(FRAME_SIZE, np.float32))
        assert not failures and not sup._stall.done()  # (was: set, at that push)
        # no audio taken for its decode_stall_s while audio waits: a stall, reported, all it lost counted
        clock.advance(stt.decode_stall_s - sup.stall_s)
        push(np.zeros(FRAME_SIZE, np.float32))
        await _until(lambda: failures, "the stall was reported")
        assert failures == ["STT slow stalled: it has taken no audio for 30.1 s (20.0 s of audio waiting for it)"]
        # all but what its worker processed: what waited here, and what its inbox held (was: not counted)
        assert sup.dropped_frames == pushed - taken + streaming.INBOX_FRAMES
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class _SlowFinal(BufferedRecognizer):
    """Its final takes as long as the test wants (``release``): a slow decode that does return
    (``entered`` once it is in it); it gives up if its stream is stopped."""

    def __init__(self, stt):
        super().__init__()
        self.stt = stt

    def partial(self):
        return None

    def final(self, speech_end=None):
        self.stt.entered.set()
        stop = stream_stop_event()
        while not self.stt.release.wait(0.01):
            if stop.is_set():
                raise StreamStopped("stopped")
        return [Word("where", 0.0, 0.5)]


class _SlowFinalSTT(SegmentedSTT):
    name = "slow"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.entered, self.release = threading.Event(), threading.Event()

    def new_recognizer(self):
        return _SlowFinal(self)


async def test_a_decode_longer_than_stall_s_is_no_stall_the_oldest_audio_is_dropped(question, caplog):
    """(QA review r4 #1) Whisper's final on a busy CPU: one decode holds the stream longer than
    stall_s while its inbox is full. Was: declared stalled after stall_s (5 s), restarted, the
    utterance lost; now the supervisor's queue drops its oldest audio (counted, said once) and
    the final comes."""
    clock = FakeClock(100.0)
    failures: list[str] = []
    finals: list[str] = []
    stt = _SlowFinalSTT(clock=clock)

    async def on_transcript(tr):
        if tr.final:
            finals.append(tr.text)

    sup = STTSupervisor(stt, clock, who="t2", on_transcript=on_transcript,
                        on_failure=lambda exc, wait: failures.append(str(exc)))
    task = asyncio.create_task(sup.run())
    pushed = 0

    async def push(pcm):
        nonlocal pushed
        sup.push(AudioFrame(pcm, 100.0 + 0.08 * pushed))
        pushed += 1
        await asyncio.sleep(0)

    silence = np.zeros(FRAME_SIZE, np.float32)
    try:
        for i in range(0, len(question), FRAME_SIZE):
            await push(question[i:i + FRAME_SIZE])
        for _ in range(40):  # 3.2 s of silence: the utterance ends, its final decode begins
            await push(silence)
        await _until(stt.entered.is_set, "the final decode began")
        caplog.set_level(logging.WARNING, logger="kame.runtime.sttloop")
        for _ in range(streaming.INBOX_FRAMES + MAX_QUEUED_FRAMES + 100):
            await push(silence)
        for _ in range(5):
            await asyncio.sleep(0)
        waiting = sup._frames.qsize()
        assert waiting == MAX_QUEUED_FRAMES and sup.dropped_frames > 0  # the oldest dropped, counted
        dropped = sup.dropped_frames
        clock.advance(sup.stall_s + 5.0)  # the decode goes on, 10 s with no frame taken: no stall
        await push(silence)
        assert not sup._stall.done()  # (was: set, at that push: "STT slow stalled: it has taken no audio for 10.0 s")
        stt.release.set()  # the decode ends: its final comes, and the stream reads on
        await _until(lambda: finals, "the final came")
        assert finals == ["where"] and not failures
        assert sup.dropped_frames == dropped + 1  # (the push above, the queue full)
        warned = [r.getMessage() for r in caplog.records if "behind real time" in r.getMessage()]
        assert len(warned) == 1 and warned[0].startswith("session t2: STT slow is at least 20 s behind real time")
    finally:
        stt.release.set()
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
    real_put = streamworker._Worker.put

    def put(self, pcm, t):
        real_put(self, pcm, t)
        seen.append(len(self.inbox))

    async def frames():
        for k in range(3 * streaming.INBOX_FRAMES):
            yield AudioFrame(np.zeros(FRAME_SIZE, np.float32), clock.now() + 0.08 * k)

    monkeypatch.setattr(streamworker._Worker, "put", put)
    assert [tr async for tr in _Quiet(clock=clock).stream(frames())] == []
    assert len(seen) == 3 * streaming.INBOX_FRAMES and max(seen) <= streaming.INBOX_FRAMES
