"""kame's STTs (SegmentedSTT) send one stream's metrics to that stream's sink when given one
(``stream(frames, metrics=sink)``: a session's, which tags them with the session), else to the
sink they were created with (the agent's). Piper speech through the real VAD and worker thread,
a trivial recognizer, on a FakeClock."""

import asyncio

import numpy as np
import pytest

from kame.backend.stt.base import open_stream, takes_stream_metrics
from kame.backend.stt.streaming import Recognizer, SegmentedSTT
from kame.backend.types import AudioFrame, Word
from kame.runtime.clock import FakeClock
from kame.runtime.metrics import MetricsLog


@pytest.fixture(scope="module")
def question():
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from kame.backend.tts.piper import PiperTTS

    onnxruntime.set_seed(0)
    speech = PiperTTS().synth("Where is the nearest train station?")
    sil = np.zeros(24000, np.float32)
    x = np.concatenate([sil, speech, sil])
    return np.concatenate([x, np.zeros(-len(x) % 1920, np.float32)])


class _Words(Recognizer):
    """One more word per partial; the final repeats them."""

    def __init__(self):
        self.n = 0

    def accept(self, pcm16k):
        self.n += 1

    def partial(self):
        return [Word(f"w{i}", 0.08 * i, 0.08 * i + 0.08) for i in range(min(self.n, 5))]

    def final(self, speech_end=None):
        return self.partial()


class _WordsSTT(SegmentedSTT):
    name = "words"
    partial_interval = 0.24

    def new_recognizer(self):
        return _Words()


async def frames(pcm, clock):
    for i in range(0, len(pcm), 1920):
        yield AudioFrame(pcm[i:i + 1920], clock.now())
        clock.advance(0.08)
        await asyncio.sleep(0)


@pytest.mark.parametrize("per_stream", [True, False])
async def test_a_streams_metrics_go_to_its_own_sink(question, per_stream):
    clock = FakeClock(100.0)
    agent_sink, stream_sink = MetricsLog(), MetricsLog()
    stt = _WordsSTT(clock=clock, metrics=agent_sink, max_lag=float("inf"))
    assert takes_stream_metrics(stt)
    trs = [tr async for tr in open_stream(stt, frames(question, clock), stream_sink if per_stream else None)]
    assert any(tr.final for tr in trs) and any(not tr.final for tr in trs)
    got, other = (stream_sink, agent_sink) if per_stream else (agent_sink, stream_sink)
    assert {m.name for m in got.events} == {"stt_partial_latency", "stt_final_latency"}
    assert all(m.labels == {"stt": "words"} for m in got.events)
    assert other.events == []  # each metric once, in one place


class _Called:
    """An empty async iterator that keeps what its stream() was called with."""

    def __init__(self, *args):
        self.args = args

    def __aiter__(self):
        return self

    async def __anext__(self):
        raise StopAsyncIteration


def test_open_stream_leaves_the_keyword_out_for_stts_without_it():
    class Plain:
        def stream(self, frames):
            return _Called("plain", frames)

    class Keyword:
        def stream(self, frames, *, metrics=None):
            return _Called("keyword", frames, metrics)

    sink = MetricsLog()
    # (.iterator: what the STT's stream() returned, inside the stream open_stream returns)
    assert not takes_stream_metrics(Plain()) and open_stream(Plain(), "f", sink).iterator.args == ("plain", "f")
    assert open_stream(Keyword(), "f", sink).iterator.args == ("keyword", "f", sink)
    assert open_stream(Keyword(), "f").iterator.args == ("keyword", "f", None)
