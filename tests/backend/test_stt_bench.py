"""Scoring of `kame bench backend`'s STT table (kame.bench.backend_stt.score) and the shared
WER text normalisation (kame.bench.textmetrics), on hand-made transcripts."""

import numpy as np
import pytest

from kame.backend.types import Transcript, Word
from kame.bench.backend_stt import score
from kame.bench.textmetrics import edit_distance, normalize, say_number


def test_normalize_spells_numbers_and_drops_punctuation():
    assert normalize("It's 25% of 1,250 - well-known!") == \
        ["its", "twenty", "five", "percent", "of", "one", "thousand", "two", "hundred", "fifty", "well", "known"]
    assert say_number(0) == "zero" and say_number(907) == "nine hundred seven"
    assert say_number(40_000) == "forty thousand" and say_number(2_000_000) == "2000000"


@pytest.mark.parametrize("ref,hyp,dist", [
    ("a b c", "a b c", 0), ("a b c", "a x c", 1), ("a b c", "a c", 1), ("a b", "a b c d", 2), ("", "a", 1),
    ("a b c", "", 3),
])
def test_edit_distance(ref, hyp, dist):
    assert edit_distance(ref.split(), hyp.split()) == dist


def _w(text, start):
    return Word(text, start, start + 0.2)


def test_score_wer_by_group_and_word_latency():
    corpus = [dict(text="What is the capital of France?", group="piper"),
              dict(text="I would like a table for two tonight.", group="espeak")]
    first = [_w(w, 1.0 + 0.25 * k) for k, w in enumerate("what is the capitol of france".split())]
    second = [_w(w, 5.0 + 0.25 * k) for k, w in enumerate("I would like a table for 2 tonight".split())]
    trs = [
        Transcript(tuple(first[:2]), False, 1.8),  # partial: "what is" 0.6 / 0.35 s after they ended
        Transcript(tuple(first), True, 3.0),
        Transcript(tuple(second), True, 7.5),  # no partial: every word's latency is the final's
    ]
    run = dict(trs=trs, spans=[(1.0, 2.6), (5.0, 7.0)], cpu=3.0, audio=10.0, final_lat=[0.5, 0.6])
    r = score(corpus, run)
    assert r["wer"] == pytest.approx(1 / 14)  # "capitol"; "2" == "two" after normalisation
    assert r["wer_piper"] == pytest.approx(1 / 6) and r["wer_espeak"] == 0.0
    lat = [1.8 - w.end for w in first[:2]] + [3.0 - w.end for w in first[2:]] + [7.5 - w.end for w in second]
    s = sorted(lat)  # nearest rank, a measured value: of 14 words the 7th and the 13th
    assert r["word_lat_p50"] == pytest.approx(s[6]) and r["word_lat_p90"] == pytest.approx(s[12])
    assert r["final_lat_p50"] == 0.5
    assert (r["partials"], r["finals"], r["cpu"]) == (1, 2, pytest.approx(0.3))


def test_score_counts_missed_sentences_as_deletions():
    corpus = [dict(text="one two three", group="piper"), dict(text="four five", group="espeak")]
    trs = [Transcript((_w("one", 1.0), _w("two", 1.3), _w("three", 1.6)), True, 2.5)]
    r = score(corpus, dict(trs=trs, spans=[(1.0, 2.0), (4.0, 5.0)], cpu=0.0, audio=6.0, final_lat=[]))
    assert r["wer"] == pytest.approx(2 / 5) and r["wer_piper"] == 0.0 and r["wer_espeak"] == 1.0
    assert np.isnan(r["final_lat_p50"])


def test_stt_spec_options_reach_the_constructor(monkeypatch):
    """backend.stt = 'embedded;whisper_interval=1.0' (and whisper's, openai's) sets constructor
    options, as a text the constructor checks; an unknown, repeated or doubly given one is a
    ConfigError before anything loads (the bench builds its STTs through the same factories)."""
    from kame import registry
    from kame.backend.stt import embedded, whisper
    from kame.errors import ConfigError

    made = []
    monkeypatch.setattr(embedded, "EmbeddedSTT", lambda model, **kw: made.append((model, kw)))
    monkeypatch.setattr(whisper, "WhisperSTT", lambda model, **kw: made.append((model, kw)))
    embedded.create(registry.parse_spec("embedded;whisper_interval=1.0,final_beam=2")[1])
    whisper.create(registry.parse_spec("whisper:/m;max_lag=0.5")[1])
    assert made == [(None, {"whisper_interval": "1.0", "final_beam": "2"}), ("/m", {"max_lag": "0.5"})]
    for spec, why in (("embedded;foo=1", "unknown option 'foo'.*whisper_interval"),
                      ("whisper;max_ps_lag=1", "unknown option 'max_ps_lag'"),
                      ("embedded;final_beam=2,final_beam=3", "given twice"),
                      ("embedded;whisper_interval", "NAME=VALUE")):
        with pytest.raises(ConfigError, match=f"stt spec '{spec.split(';')[0]}.*{why}"):
            registry.create("stt", spec)
    with pytest.raises(ConfigError, match="'final_beam' is also given as a keyword"):
        embedded.create(";final_beam=2", final_beam=3)
    assert len(made) == 2


def test_numeric_options_from_a_spec_reach_whisper_as_numbers():
    """'whisper;cpu_threads=2' (text from the spec) loads (was: a TypeError from CTranslate2)."""
    from kame import registry

    stt = registry.create("stt", "whisper;cpu_threads=1,final_beam=2.0")
    assert stt.final_beam == 2 and isinstance(stt.final_beam, int)
