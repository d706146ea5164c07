"""Word-timed synthesis (TTS.synth_words): one timing per text.split() token, in order, inside
the audio, with speech in each word and the audio's pauses between the right words."""

import sys

import numpy as np
import pytest

from kame.backend.tts import words as W
from kame.backend.tts.base import TTS, TimedWord
from kame.errors import MissingPackageError, NotAvailableError

RATE = 24000


def _espeak():
    pytest.importorskip("espeakng_loader")
    from kame.backend.tts.espeak import EspeakTTS

    return EspeakTTS()


@pytest.fixture(scope="module")
def piper_tts():
    pytest.importorskip("piper")
    pytest.importorskip("onnx")
    from kame.backend.tts.piper import PiperTTS

    tts = PiperTTS(noise_scale=0.0)
    tts._cfg.noise_w_scale = 0.0  # no random durations either: the same audio every run
    return tts


@pytest.fixture(params=["espeak", "piper"])
def tts(request):
    return _espeak() if request.param == "espeak" else request.getfixturevalue("piper_tts")


def check_invariants(text, pcm, words, rate=RATE):
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert all(isinstance(w, TimedWord) for w in words)
    assert [w.word for w in words] == text.split()
    duration = len(pcm) / rate
    for w in words:
        assert 0.0 <= w.start <= w.end <= duration, w
    for a, b in zip(words, words[1:]):
        assert a.start <= b.start and a.end <= b.start, (a, b)


def frame_rms(pcm, rate=RATE, frame=0.01):
    hop = int(rate * frame)
    n = len(pcm) // hop
    return np.sqrt(np.mean(pcm[: n * hop].reshape(n, hop) ** 2, axis=1)), hop


def measured_pauses(pcm, rate=RATE, min_len=0.15):
    """Silences of at least min_len inside the audio (not at its ends), measured here with a
    threshold of our own (1 % of the loudest frame)."""
    rms, hop = frame_rms(pcm, rate)
    quiet = rms < 0.01 * rms.max()
    out, i = [], 0
    while i < len(quiet):
        j = i
        while j < len(quiet) and quiet[j]:
            j += 1
        if j > i and (j - i) * hop >= min_len * rate and i > 0 and j < len(quiet):
            out.append((i * hop / rate, j * hop / rate))
        i = max(j, i + 1)
    return out


def overlap(word, pause):
    return max(0.0, min(word.end, pause[1]) - max(word.start, pause[0]))


def test_tokens_bounds_and_numbers(tts):
    text = "  Hi,  I have 18 cats\nand 3.5 dogs: 1,234 birds — really?  "
    pcm, words = tts.synth_words(text)
    check_invariants(text, pcm, words)
    by = {w.word: w for w in words}
    # numbers said as several words still get one timing each, covering that speech
    for tok in ("18", "3.5", "1,234"):
        assert by[tok].end > by[tok].start
    assert by["1,234"].end - by["1,234"].start > 2 * (by["cats"].end - by["cats"].start)
    assert by["3.5"].end - by["3.5"].start > by["I"].end - by["I"].start


def test_pauses_fall_between_the_right_words(tts):
    # (the accents: espeak-ng reports positions in characters, not UTF-8 bytes)
    text = "One. Zoë and Chloë saw Renée's café by the house, and then we all went home."
    pcm, words = tts.synth_words(text)
    check_invariants(text, pcm, words)
    for p in measured_pauses(pcm, min_len=0.15):  # no long silence inside a word (some slack for thresholds)
        for w in words:
            assert overlap(w, p) <= 0.02, (w, p)
    pauses = measured_pauses(pcm, min_len=0.10)  # (piper's sentence ends are short pauses)
    # the sentence end after "One." and the comma after "house," leave pauses between those words
    names = [w.word for w in words]
    for i in (0, names.index("house,")):
        between = [p for p in pauses if words[i].end - 0.02 <= p[0] and p[1] <= words[i + 1].start + 0.02]
        assert between, (words[i], words[i + 1], pauses)


def test_each_word_holds_speech(tts):
    text = "Please bring the extraordinarily heavy box to the kitchen."
    pcm, words = tts.synth_words(text)
    check_invariants(text, pcm, words)
    rms, _ = frame_rms(pcm)
    loud = np.percentile(rms, 95)
    for w in words:
        seg = pcm[int(w.start * RATE) : int(w.end * RATE)]
        assert seg.size and np.sqrt(np.mean(seg**2)) > 0.05 * loud, w
    durations = {w.word: w.end - w.start for w in words}
    assert durations["extraordinarily"] > 2 * durations["the"]


def test_empty_text(tts):
    for text in ("", "   \n\t"):
        pcm, words = tts.synth_words(text)
        assert pcm.size == 0 and words == []


def test_base_class_says_which_tts_give_timings():
    class Silent(TTS):
        name = "silent"

        async def synthesize(self, text):
            yield np.zeros(0, np.float32)

    with pytest.raises(NotAvailableError) as err:
        Silent().synth_words("hello")
    msg = str(err.value)
    assert "silent" in msg and "espeak" in msg and "piper" in msg


def test_espeak_synth_unchanged_and_timings_on_the_output_clock():
    tts = _espeak()
    text = "Hello there, world. One more."
    pcm, words = tts.synth_words(text)
    # the same audio as synth (espeak-ng varies a few samples from run to run)
    assert abs(len(pcm) - len(tts.synth(text))) < 0.01 * len(pcm)
    from kame.backend.tts.espeak import EspeakTTS

    slow = EspeakTTS(sample_rate=16000)
    pcm16, words16 = slow.synth_words(text)
    check_invariants(text, pcm16, words16, rate=16000)
    for a, b in zip(words, words16):  # seconds are seconds at any output rate
        assert abs(a.start - b.start) <= 0.02 and abs(a.end - b.end) <= 0.02, (a, b)


def test_piper_loads_the_aligned_voice_only_for_synth_words(piper_tts, monkeypatch):
    from kame.backend.tts.piper import PiperTTS

    fresh = PiperTTS()
    assert fresh.synth("Hi.").size and fresh._aligned is None  # synth stays as it was
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    with pytest.raises(MissingPackageError) as err:
        fresh.synth_words("Hi.")
    assert "kame-tandem[tts]" in str(err.value) and "onnx" in str(err.value)


def test_label_units_maps_merged_and_multiword_tokens():
    # the tokens "two" "hundred" said merged as one spoken word, and "18" as one word
    units = list("tuːhʌndɹɪd") + list("eɪtiːn")
    groups = [0] * 10 + [1] * 6
    labels = W.label_units(units, [list("tuː"), list("hˈʌndɹɪd"), list("ˈeɪtiːn")], groups)
    assert labels == [0] * 3 + [1] * 7 + [2] * 6
    # a token said differently in context still gets the spoken word between its neighbours
    labels = W.label_units(list("abxyzcd"), [list("ab"), list("qqq"), list("cd")], [0, 0, 1, 1, 1, 2, 2])
    assert labels == [0, 0, 1, 1, 1, 2, 2]


def test_fill_starts_and_finish():
    # token 1 had no event: it shares the time from token 0's start to token 2's by length
    assert W.fill_starts([0.0, None, 3.0], [1, 2, 1], 4.0) == [0.0, 1.0, 3.0]
    assert W.fill_starts([None, 1.0], [1, 1], 2.0) == [0.0, 1.0]
    words = W.finish(["a", "b"], [(0.5, 1.2), (1.0, 9.0)], 2.0)
    assert words == [TimedWord("a", 0.5, 1.0), TimedWord("b", 1.0, 2.0)]
