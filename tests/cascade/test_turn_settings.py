"""The cascade's turn-taking settings reach what takes the turns: ``cascade.end_of_turn_silence``
and ``cascade.vad_threshold`` set the STT's utterance VAD (its final transcript starts the reply)
and the turn VAD (end of speech, barge-in). Was: accepted, documented, and never read."""

import numpy as np
import pytest

from kame import registry
from kame.cascade.agent import build_cascade_agent
from kame.config import load_config
from kame.errors import ConfigError
from kame.runtime.worker import EnergyVAD, make_vad_factory

CREATED = []


class RecordingSTT:
    name = "recording"

    def __init__(self, **kwargs):
        CREATED.append(kwargs)

    async def stream(self, frames):
        async for _ in frames:
            pass
        return
        yield

    async def aclose(self):
        pass


def make(arg=None, *, clock=None, metrics=None, nice=0, vad=None):
    return RecordingSTT(clock=clock, vad=vad)


class NoLLM:
    name = "none"

    async def stream_chat(self, messages, **kw):
        yield ""


class NoTTS:
    name = "none"

    async def synthesize(self, text):
        yield np.zeros(0, np.float32)


def test_vad_factory_takes_the_threshold_and_the_silence():
    energy = make_vad_factory("energy", threshold=0.8, min_silence=1.5)()
    assert isinstance(energy, EnergyVAD) and energy.min_silence == 1.5  # (its dB threshold is its own)
    pytest.importorskip("webrtcvad")
    vad = make_vad_factory("webrtc", threshold=0.8, min_silence=1.5)()
    assert (vad.cfg.threshold, vad.cfg.min_silence, vad.cfg.neg_threshold) == (0.8, 1.5, 0.35)
    low = make_vad_factory("webrtc", threshold=0.3)()
    assert low.cfg.neg_threshold == pytest.approx(0.21) and low.cfg.min_silence == 0.5  # hysteresis kept


async def test_cascade_passes_its_turn_settings_to_the_stt_and_the_turn_vad(monkeypatch):
    registry.schemes("stt")  # (the built-in table loaded first)
    monkeypatch.setitem(registry._ENTRIES["stt"], "recording", registry.Entry("tests.cascade.test_turn_settings:make",
                                                                            None, "test"))
    cfg = load_config(None, ["mode=cascade", "backend.stt=recording", "runtime.vad=energy",
                             "cascade.end_of_turn_silence=1.5", "cascade.vad_threshold=0.7"])
    CREATED.clear()
    agent = build_cascade_agent(cfg, components={"llm": NoLLM(), "tts": NoTTS()})
    await agent.start()
    try:
        assert CREATED and CREATED[0]["vad"] == {"min_silence": 1.5, "threshold": 0.7,
                                                 "neg_threshold": pytest.approx(0.35)}
        assert agent._vad_factory().min_silence == 1.5
    finally:
        await agent.stop()


@pytest.mark.parametrize("value", ["0", "1", "-1", "1e12"])
def test_vad_threshold_is_a_probability(value):
    with pytest.raises(ConfigError, match="cascade.vad_threshold: a speech probability in"):
        load_config(None, [f"cascade.vad_threshold={value}"])
