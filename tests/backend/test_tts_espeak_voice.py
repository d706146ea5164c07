"""An espeak voice espeak-ng does not have fails when the TTS is made (a ConfigError naming the
closest voices), so a cascade falls back to cascade.tts_fallback instead of failing every reply."""

import pytest

from kame import registry
from kame.errors import ConfigError

pytest.importorskip("espeakng_loader")


def test_unknown_voice_fails_at_creation_naming_close_voices():
    with pytest.raises(ConfigError, match="tts spec 'espeak:en-uss': espeak-ng has no such voice") as e:
        registry.create("tts", "espeak:en-uss")
    assert "close: en-us" in str(e.value)
    with pytest.raises(ConfigError, match="'espeak:nosuchvoice': espeak-ng has no such voice; e.g. en-us"):
        registry.create("tts", "espeak:nosuchvoice")


def test_known_voices_and_variants_still_load():
    from kame.backend.tts.espeak import voice_names

    assert {"en-us", "en-gb", "fr-fr"} <= set(voice_names())
    assert registry.create("tts", "espeak:en-us+f2").synth("Hi.").size > 0


def test_cascade_falls_back_from_an_unknown_voice(caplog):
    from kame.cascade.agent import load_tts

    tts, name = load_tts("espeak:en-uss", "espeak")
    assert tts.voice == "en-us" and name.startswith("espeak (cascade.tts 'espeak:en-uss' failed to load")
    assert "falling back to 'espeak'" in caplog.text
