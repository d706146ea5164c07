"""kame.train.examples: what training_example checks and says about a dialogue (validation of an
in-memory dialogue, the text stream's drift, dropped tokens and unknown characters, errors that
name the dialogue and the fix)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from kame.errors import ConfigError
from kame.model.config import preset
from kame.train.data import DataError, Dialogue, OracleEvent, Word
from kame.train.examples import StreamIds, text_stream, text_stream_report, training_example

from ._fakes import FakeCodec, dialogue

IDS = StreamIds(pad=3, end_pad=0, text_card=4000)
# one sentence of long words at 2.75 words a second (espeak's 165 wpm): more tokens than frames
SENTENCE = ("The hydroxychloroquine pharmacokinetics in 1,234,567 immunocompromised Staphylococcus aureus "
            "bacteraemia patients were characterised by electroencephalography, spectrophotometry and "
            "deoxyribonucleic-acid quantification at 98.6 degrees Fahrenheit.").split()


def _fast(T: int):
    return [Word("agent", w, i / 2.75, min((i + 1) / 2.75, T * 0.08)) for i, w in enumerate(SENTENCE)
            if i / 2.75 < T * 0.08]


def test_an_in_memory_dialogue_is_validated(tok, cfg):
    """A dialogue never read nor written is checked as read_dialogue would: not an oracle event
    past the end silently dropped, not the codec's unrelated error on mono audio."""
    d = dialogue(16)
    d.oracle = [OracleEvent(40, "reset")]
    with pytest.raises(DataError, match=r"^dialogue: oracle event 0: frame 40 outside the dialogue's frames \[0, 16\)"):
        training_example(d, FakeCodec(), tok, cfg)
    mono = Dialogue(np.zeros(1920 * 4, np.float32))
    with pytest.raises(DataError, match=r"^dialogue: audio must be stereo samples \[N, 2\].*mono"):
        training_example(mono, FakeCodec(), tok, cfg)
    d = dialogue(16, words=[Word("agent", "b", 0.5, 0.6), Word("agent", "a", 0.1, 0.2)])
    d.folder = Path("data/d0007")
    with pytest.raises(DataError, match=r"^dialogue data/d0007: word 1 \('a'\): starts at 0.1 s, before"):
        training_example(d, FakeCodec(), tok, cfg)


def test_the_text_stream_reports_its_drift_and_what_it_drops(tok):
    T = 60  # 4.8 s: the sentence's words start up to 4.7 s, its tokens need more frames
    rep = text_stream_report(_fast(T), T, tok, IDS)
    assert rep.ids.tolist() == text_stream(_fast(T), T, tok, IDS).tolist()
    assert rep.max_drift > 6 and rep.drift_word in SENTENCE and rep.dropped > 0 and rep.dropped_words
    assert rep.lost == []
    slow = [Word("agent", "Hello", 0.0, 0.2), Word("agent", "the", 0.1, 0.2), Word("agent", "capital", 0.5, 0.7)]
    rep = text_stream_report(slow, 10, tok, IDS)
    assert (rep.max_drift, rep.drift_word, rep.dropped) == (2, "the", 0)  # "the" shifted 2 frames, to after Hello
    rep = text_stream_report(slow, 7, tok, IDS)  # ends with capital's only token
    assert rep.dropped == 0
    rep = text_stream_report([Word("agent", "日本語", 0.0, 0.2), Word("agent", "Hello", 0.3, 0.5)], 10, tok, IDS)
    assert rep.lost == ["日本語"] and rep.ids.tolist()[:1] == [11]  # a bare "▁": its characters lost


def test_training_example_warns_of_drift_dropped_tokens_and_unknown_characters(tok, cfg):
    T = 60
    d = dialogue(T, words=_fast(T))
    d.folder = Path("data/fast")
    with pytest.warns(UserWarning) as got:
        training_example(d, FakeCodec(), tok, cfg)
    said = [str(w.message) for w in got]
    assert any(m.startswith("dialogue data/fast: the agent's text stream lags its words by up to ") and " s; word '"
               in m for m in said), said
    assert any(m.startswith("dialogue data/fast: the agent's text has ") and " tokens past its end (frame 60), left out"
               in m for m in said), said
    with warnings.catch_warnings():  # a threshold above the drift: only the dropped tokens said
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match=r"tokens past its end"):
            training_example(d, FakeCodec(), tok, cfg, drift_warning_s=100)
    words = [Word("agent", w, 0.3 * i, 0.3 * i + 0.2) for i, w in enumerate(["日本語", "is", "Ωmega", "fine"])]
    with pytest.warns(UserWarning, match=r"^dialogue: 2 agent words with characters the tokenizer does not know, "
                                         r"left out of the text stream: e.g. \['日本語', 'Ωmega'\]"):
        training_example(dialogue(16, words=words), FakeCodec(), tok, cfg)
    with warnings.catch_warnings():  # a dialogue the stream holds: nothing said
        warnings.simplefilter("error")
        training_example(dialogue(16, words=[Word("agent", "Hello", 0.0, 0.3), Word("agent", "there", 0.4, 0.6)]),
                         FakeCodec(), tok, cfg)


def test_a_front_end_too_small_for_the_tokenizer_is_named_with_the_fix(tok, tmp_path):
    small = preset("tiny")  # text_card 1000, below the default tokenizer's 4000 pieces
    d = dialogue(16, words=[Word("agent", "capital", 0.1, 0.3)])
    d.folder = tmp_path / "d"
    fix = r"use a front-end whose text_card >= the tokenizer's vocab_size \(e.g. load_frontend\('random:tiny', text_card=4000\)"
    with pytest.raises(DataError, match=rf"^dialogue {tmp_path}/d: word 'capital' has token ids \[3451\] outside the "
                                        rf"text vocabulary \[0, 1000\).*: {fix}"):
        training_example(d, FakeCodec(), tok, small)
    d = dialogue(16, oracle=[OracleEvent(2, "reset"), OracleEvent(2, "append", [3451])],
                 tokenizer_sha256=tok.sha256)
    with pytest.raises(DataError, match=rf"^dialogue: oracle ids \[3451\] outside the front-end's text vocabulary "
                                        rf"\[0, 1000\): its text_card is below the tokenizer's 4000 pieces: {fix}"):
        training_example(d, FakeCodec(), tok, small)


def test_a_codec_that_does_not_fit_the_config_gets_a_training_fix(tok):
    cfg = preset("tiny").replace(text_card=4000, card=1024)
    with pytest.raises(ConfigError, match=r"expects 1024 \(its config's card\): pass the codec whose codes the "
                                          r"front-end's config was made for"):
        training_example(dialogue(16), FakeCodec(), tok, cfg)
