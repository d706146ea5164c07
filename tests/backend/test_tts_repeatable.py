"""A TTS's speech is repeatable: the same text in the same voice gives the same samples (and word
times) whatever was synthesized before it in the process (espeak-ng carries state from one
utterance to the next; piper's noise came from a generator each voice makes once)."""

import numpy as np
import pytest

from kame.errors import ConfigError

A = "How many legs does a spider have, and why?"
B = "The largest planet is Jupiter. Do you agree with that?"


def test_espeak_says_a_text_the_same_whatever_was_said_before():
    pytest.importorskip("espeakng_loader")
    from kame.backend.tts.espeak import EspeakTTS

    tts, other = EspeakTTS("en-us"), EspeakTTS("en-gb-x-rp")
    first, words = tts.synth_words(A)
    other.synth(B)
    tts.synth(B)
    again, words_again = tts.synth_words(A)
    assert np.array_equal(first, again) and words == words_again
    assert np.array_equal(tts.synth(A), first)


def test_a_bad_seed_is_a_config_error_naming_it():
    pytest.importorskip("espeakng_loader")
    from kame.backend.tts.espeak import EspeakTTS

    assert EspeakTTS("en-us+f2", seed=3).seed == 3 and EspeakTTS().seed == 0
    with pytest.raises(ConfigError, match="espeak TTS: seed must be a whole number >= 0, got 'x'"):
        EspeakTTS(seed="x")
    pytest.importorskip("piper")
    from kame.backend.tts.piper import PiperTTS

    with pytest.raises(ConfigError, match="piper TTS: seed must be a whole number >= 0, got -1"):
        PiperTTS(seed=-1)


def test_piper_says_a_text_the_same_whatever_was_said_before():
    pytest.importorskip("piper")
    pytest.importorskip("onnx")
    from kame.backend.tts.piper import PiperTTS

    tts = PiperTTS()  # its noise on (the default scales), seed 0
    first = tts.synth("Spiders have eight legs.")
    tts.synth("Jupiter is large.")
    assert np.array_equal(tts.synth("Spiders have eight legs."), first)
