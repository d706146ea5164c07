"""The built-in TTS specs take their options after ';' as the other components' do
(``espeak:en-us;seed=0,rate=180,pitch=60``, ``piper;seed=0``), so a config file or a spec can ask
for repeatable speech (was: a seed only by the constructor's keyword; any option refused). An
unknown option or a bad value is a ConfigError naming the spec and the option, at the config
check, before any voice loads. A spec alone stays unseeded (test_tts_repeatable)."""

import re
import sys

import numpy as np
import pytest

from kame import registry
from kame.errors import ConfigError

BAD = [  # spec -> what the error says after "tts spec '<spec>': "
    ("espeak:en-us;sead=0", "unknown option 'sead'; options after ';' are NAME=VALUE, comma-separated, "
                            "NAME one of seed, rate, pitch"),
    ("espeak;seed=x", "seed must be a whole number >= 0, got 'x'"),
    ("espeak:en-us+f2;rate=fast", "rate must be a whole number >= 80 and <= 450, got 'fast'"),
    ("espeak;pitch=101", "pitch must be a whole number >= 0 and <= 100, got '101'"),
    ("espeak;seed=0,seed=1", "'seed' given twice"),
    ("piper;seed=-1", "seed must be a whole number >= 0, got '-1'"),
    ("piper;rate=2", "unknown option 'rate'; .* NAME one of seed, length_scale, noise_scale"),
    ("embedded;length_scale=0", "length_scale must be a number > 0, got '0'"),
]


def test_an_espeak_spec_with_a_seed_says_a_text_the_same_twice():
    pytest.importorskip("espeakng_loader")
    tts = registry.create("tts", "espeak:en-us;seed=0,rate=180,pitch=60")
    assert (tts.voice, tts.seed, tts.rate, tts.pitch) == ("en-us", 0, 180, 60)
    first = tts.synth("How many legs does a spider have?")
    tts.synth("Jupiter is large.")
    assert first.size and np.array_equal(tts.synth("How many legs does a spider have?"), first)
    assert registry.create("tts", "espeak;seed=3").seed == 3  # options straight after the scheme


@pytest.mark.parametrize("spec, says", BAD)
def test_a_bad_tts_option_is_a_config_error_naming_the_spec_and_the_option(spec, says):
    with pytest.raises(ConfigError, match=rf"^tts spec '{re.escape(spec)}': {says}"):
        registry.check_spec("tts", spec)
    with pytest.raises(ConfigError, match=says):  # (create checks the spec first too)
        registry.create("tts", spec)


def test_the_config_check_refuses_a_bad_tts_option_before_anything_loads(monkeypatch):
    from kame.cascade.config import CascadeConfig

    for module in ("kame.backend.tts.espeak", "kame.backend.tts.piper", "espeakng_loader", "piper"):
        monkeypatch.setitem(sys.modules, module, None)  # importing one now raises ImportError
    with pytest.raises(ConfigError, match=r"^cascade.tts: tts spec 'espeak:en-us;seed=x': seed must be a whole"):
        CascadeConfig.from_dict({"tts": "espeak:en-us;seed=x"})
    with pytest.raises(ConfigError, match=r"^cascade.tts_fallback: tts spec 'piper;speed=2': unknown option 'speed'"):
        CascadeConfig.from_dict({"tts": "piper", "tts_fallback": "piper;speed=2"})
    cfg = CascadeConfig.from_dict({"tts": "piper;seed=0,noise_scale=0.5", "tts_fallback": "espeak:en-us;rate=200"})
    assert cfg.tts == "piper;seed=0,noise_scale=0.5"


def test_an_option_also_given_as_a_keyword_is_refused_and_values_are_checked_as_keywords():
    pytest.importorskip("espeakng_loader")
    from kame.backend.tts.espeak import EspeakTTS

    with pytest.raises(ConfigError, match="tts spec 'espeak:en-us;seed=1': option 'seed' is also given as a keyword"):
        registry.create("tts", "espeak:en-us;seed=1", seed=0)
    with pytest.raises(ConfigError, match="espeak TTS: rate must be a whole number >= 80 and <= 450, got 900"):
        EspeakTTS(rate=900)


def test_the_bounds_are_kame_backend_options_number_s_max_included():
    from kame.backend.options import number

    assert number("x", "pitch", "100", min=0, max=100, cast=int) == 100
    with pytest.raises(ConfigError, match=r"^x: pitch must be a whole number >= 0 and <= 100, got 101$"):
        number("x", "pitch", 101, min=0, max=100, cast=int)
    with pytest.raises(ConfigError, match=r"^x: gain must be a number <= 2, got inf$"):
        number("x", "gain", float("inf"), max=2, allow_inf=True)


OPENAI_BAD = [  # an openai: TTS spec -> what the error says after "tts spec '<spec>': "
    ("openai:tts-1;bogus=1", "unknown option 'bogus'; .* NAME one of response_format, speed, pcm_rate"),
    ("openai:tts-1:nova;speed=fast", "speed must be a number > 0, got 'fast'"),
    ("openai:tts-1:nova;response_format=mp3", "response_format must be 'pcm' or 'wav', got 'mp3'"),
    ("openai:tts-1;pcm_rate=5", "pcm_rate must be a whole number >= 4000 and <= 768000, got '5'"),
    ("openai:tts-1;first_chunk_timeout=0", "first_chunk_timeout must be a number > 0, got '0'"),
]


@pytest.mark.parametrize("spec, says", OPENAI_BAD)
def test_an_openai_tts_option_is_checked_at_the_config_check_not_left_to_a_fallback(spec, says, monkeypatch):
    """(was: only the factory checked them, at start-up, and the cascade then spoke espeak instead,
    with one warning)"""
    from kame.cascade.agent import load_tts
    from kame.cascade.config import CascadeConfig

    monkeypatch.setitem(sys.modules, "kame.backend.tts.openai", None)  # the adapter is never imported
    with pytest.raises(ConfigError, match=rf"^cascade.tts: tts spec '{re.escape(spec)}': {says}"):
        CascadeConfig.from_dict({"tts": spec})
    with pytest.raises(ConfigError, match=rf"^tts spec '{re.escape(spec)}': {says}"):
        load_tts(spec, "espeak")  # a config error, not a TTS that failed to load: no fallback


def test_good_openai_tts_options_pass_the_config_check_and_reach_the_adapter(monkeypatch):
    from kame.cascade.config import CascadeConfig

    monkeypatch.setenv("OPENAI_TTS_BASE_URL", "http://127.0.0.1:9/v1")
    spec = "openai:tts-1:nova;speed=1.5,response_format=wav,pcm_rate=16000,chunk_timeout=3"
    assert CascadeConfig.from_dict({"tts": spec}).tts == spec
    tts = registry.create("tts", spec)
    assert (tts.voice, tts.speed, tts.response_format, tts.pcm_rate, tts.chunk_timeout) == ("nova", 1.5, "wav", 16000, 3)
