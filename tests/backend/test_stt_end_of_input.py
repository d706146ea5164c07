"""An input that ends in the silence after speech, before the VAD ends the utterance (a client's
END_INPUT 0.2-0.4 s after the user stopped): the final is asked for up to where the voice ended,
not up to the input's end (was: the silence decoded too, and whisper, which had begun a decode at
the pause, decoded the utterance a second time: a cascade close after END_INPUT waited twice).
Piper speech through the real VAD and worker thread, a recognizer that records what it is asked."""

import asyncio

import numpy as np
import pytest

from kame.backend.stt.base import open_stream
from kame.backend.stt.streaming import Recognizer, SegmentedSTT
from kame.backend.types import AudioFrame, Word
from kame.runtime.clock import FakeClock


@pytest.fixture(scope="module")
def speech():
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from kame.backend.tts.piper import PiperTTS

    onnxruntime.set_seed(0)
    return PiperTTS().synth("Hello there.")


class _Asked(Recognizer):
    def __init__(self, asked):
        self.asked = asked

    def accept(self, pcm16k):
        pass

    def partial(self):
        return [Word("hello", 0.0, 0.3)]

    def final(self, speech_end=None):
        self.asked.append(speech_end)
        return self.partial()


class _AskedSTT(SegmentedSTT):
    name = "asked"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.asked: list = []

    def new_recognizer(self):
        return _Asked(self.asked)


async def test_an_input_ending_in_the_pause_after_speech_is_final_up_to_the_voice(speech):
    clock = FakeClock(100.0)
    pcm = np.concatenate([np.zeros(12000, np.float32), speech, np.zeros(7200, np.float32)])  # 0.3 s tail
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % 1920, np.float32)])
    stt = _AskedSTT(clock=clock, max_lag=float("inf"))

    async def frames():
        for i in range(0, len(pcm), 1920):
            yield AudioFrame(pcm[i:i + 1920], clock.now())
            clock.advance(0.08)
            await asyncio.sleep(0)

    trs = [tr async for tr in open_stream(stt, frames(), None)]
    assert [tr.final for tr in trs if tr.final] == [True] and len(stt.asked) == 1
    spoken = (12000 + len(speech)) / 24000  # (where the voice ends, from the utterance's start at most this)
    assert stt.asked[0] is not None and stt.asked[0] < spoken - 0.5 + 0.2, stt.asked  # (was: the input's end)
