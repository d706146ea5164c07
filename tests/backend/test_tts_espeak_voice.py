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


_VARIANT_SCRIPT = """
import sys
from kame.backend.tts.espeak import EspeakTTS, ipa
from kame.errors import ConfigError, NotAvailableError
for v in sys.argv[1:]:
    try:
        tts = EspeakTTS(v)
    except ConfigError as exc:
        print("refused", v, "|", exc, flush=True)
        continue
    print("synth", v, tts.synth("Hello there.").size > 0, flush=True)
try:
    ipa("Hello.", voice="m3")
except NotAvailableError as exc:
    print("ipa refused |", exc, flush=True)
"""


def test_a_bare_variant_is_refused_not_a_crash():
    # espeak-ng takes "f3" (a variant) as a voice with no language, and its next synthesis
    # segfaults: run in a child process so a regression cannot take pytest down
    import subprocess
    import sys

    good = ["en-us", "en", "en+f3", "en-us+m3", "EN-US", "gmw/en-US", "en-gb-scotland", "English (America)"]
    out = subprocess.run([sys.executable, "-c", _VARIANT_SCRIPT, "f3", "Alex", "klatt", *good],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr[-2000:])
    lines = out.stdout.splitlines()
    for v in ("f3", "Alex", "klatt"):
        assert f"refused {v} | tts spec 'espeak:{v}': '{v}' is a voice variant, not a voice" in out.stdout
        assert any(line.startswith(f"refused {v} |") and f"e.g. en-us+{v}" in line for line in lines)
    for v in good:
        assert f"synth {v} True" in lines, out.stdout
    assert "ipa refused | espeak-ng cannot use voice 'm3': 'm3' is a voice variant" in out.stdout
    # refused before espeak-ng loads the variant (was: its own "Unknown phoneme table: ''" and "Cannot
    # set stressAmp" on stderr above kame's error)
    assert "phoneme table" not in out.stderr and "stressAmp" not in out.stderr, out.stderr


def test_making_an_espeak_tts_looks_its_voice_up_once(monkeypatch):
    """check_voice gives the name the voice loads by (was: looked up again to keep it)."""
    from kame.backend.tts import espeak

    calls = []
    real = espeak._loadable
    monkeypatch.setattr(espeak, "_loadable", lambda lib, voice: calls.append(voice) or real(lib, voice))
    tts = espeak.EspeakTTS("en-gb+f3")
    assert calls == ["en-gb+f3"] and tts._name == "gmw/en+f3"
