"""A missing silero-vad wheel is said with what the VAD was for: the embedded STT's end-of-utterance
detector, or the turn VAD runtime.vad chose (named, with its other choices). Was: both said "the
embedded STT's end-of-utterance detector", also for a tandem run with no STT at all."""

from __future__ import annotations

import sys

import pytest

from kame.config import load_config
from kame.errors import NotAvailableError

pytest.importorskip("onnxruntime")  # (checked before the wheel)


@pytest.fixture
def no_silero_wheel(monkeypatch):
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # importlib.util.find_spec gives None


def test_the_embedded_stt_says_the_vad_is_its_end_of_utterance_detector(no_silero_wheel):
    from kame.backend.stt.embedded import EmbeddedSTT

    with pytest.raises(NotAvailableError) as err:
        EmbeddedSTT()
    said = str(err.value)
    assert said.startswith("the embedded STT's end-of-utterance detector: silero VAD needs the silero-vad "
                           "wheel: pip install --no-deps silero-vad=="), said
    assert "runtime.vad" not in said


async def test_runtime_vad_silero_names_the_key_and_its_other_choices(no_silero_wheel):
    from kame.runtime.clock import FakeClock
    from kame.runtime.engine import TandemAgent

    from ..runtime.fakes import FakeFrameModel

    cfg = load_config(None, {"runtime.max_sessions": 1, "runtime.vad": "silero", "backend.stt": "none",
                             "backend.llm": "none"})
    agent = TandemAgent(cfg, clock=FakeClock(), frame_models=FakeFrameModel, backend=lambda s: None)
    with pytest.raises(NotAvailableError) as err:
        await agent.start()
    said = str(err.value)
    assert said.startswith("runtime.vad = 'silero': silero VAD needs the silero-vad wheel: pip install "), said
    assert said.endswith("; or set runtime.vad=auto (silero if installed, else energy), webrtc or energy"), said
    assert "STT" not in said
    await agent.stop()


def test_runtime_vad_auto_still_falls_back_to_the_energy_vad(no_silero_wheel):
    from kame.runtime.worker import EnergyVAD, make_vad_factory

    assert isinstance(make_vad_factory("auto")(), EnergyVAD)
