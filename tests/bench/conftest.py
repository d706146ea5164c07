"""Fixtures shared by the bench tests."""

from __future__ import annotations

import numpy as np
import pytest


class Heard:
    """whisper, heard: the text given."""

    def __init__(self, text: str = "hello there") -> None:
        self.text = text

    def __call__(self, pcm, rate) -> str:
        return self.text


@pytest.fixture
def quality(monkeypatch):
    """kame.bench.codec_quality without whisper, synthesis or fidelity measures: its stand-ins (the
    streaming round trip is each test's own)."""
    from kame.bench import codec_quality
    from kame.codec.embedded import data

    monkeypatch.setattr(codec_quality, "Whisper", Heard)
    monkeypatch.setattr(data, "speak", lambda pairs, seed: [np.zeros(24000, np.float32) for _ in pairs])
    monkeypatch.setattr(codec_quality, "fidelity", lambda orig, rec, delay: (0.5, [20.0], 1))
    return codec_quality
