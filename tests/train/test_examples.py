"""kame.train.examples: the text stream's alignment rules, training_example's layout (the user's
frame f + 1 beside the agent's frame f, the oracle the stepper would feed), collate's padding, a
loss that trains through LMModel.forward, the codes cache, oracle ids of another tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kame.model.config import preset
from kame.model.lm import LMModel
from kame.model.stepper import Sampling, Stepper, oracle_ids, oracle_timeline
from kame.train.codes import write_codes
from kame.train.data import DataError, OracleEvent, Word, read_dialogue, write_dialogue
from kame.train.examples import (
    StreamIds, collate, retokenize_oracle, stream_ids, text_stream, text_stream_report, training_example,
)

from ._fakes import FakeCodec, codes_of, dialogue, levels

P, E = 3, 0  # Moshi's pad and end-of-padding ids (kame's tokenizer has them at the same ids)
IDS = StreamIds(pad=P, end_pad=E, text_card=4000)


def test_text_stream_puts_each_word_at_its_start_frame_with_end_of_padding_before_it(tok):
    enc = {w: tok.encode_words([w]) for w in ("Hello", "the", "capital", "Paris.")}
    assert enc == {"Hello": [123, 382, 53], "the": [5], "capital": [3451], "Paris.": [667, 203, 4, 6]}
    words = [Word("agent", "Hello", 0.0, 0.2),  # frame 0: no end-of-padding before the first frame
             Word("agent", "the", 0.1, 0.2),  # frame 1 is Hello's: shifted to frame 3, straight after (no end-pad)
             Word("agent", "capital", 0.5, 0.7),  # frame 6, end-pad at 5
             Word("agent", "日本", 0.7, 0.8),  # "▁" + <unk>: the <unk> (id 0 = end-pad) is left out
             Word("agent", "Paris.", 0.9, 1.0)]  # frame 11 of 13: its last two tokens fall past the end
    got = text_stream(words, 13, tok, IDS).tolist()
    assert got == [123, 382, 53, 5, P, E, 3451, E, 11, P, E, 667, 203]
    assert text_stream([{"word": "the", "start": 0.24, "end": 0.3}], 5, tok, IDS).tolist() == [P, P, E, 5, P]  # 0.24 s: frame 3
    assert text_stream([], 3, tok, IDS).tolist() == [P, P, P]
    assert text_stream(words, 0, tok, IDS).tolist() == []
    with pytest.raises(DataError, match=r"word 1 \('a'\) starts at 0.1 s, before the previous word \(0.5 s\)"):
        text_stream([Word("agent", "b", 0.5, 0.6), Word("agent", "a", 0.1, 0.2)], 10, tok, IDS)
    with pytest.raises(DataError, match=r"'capital' has token ids \[3451\] outside the text vocabulary \[0, 1000\)"):
        text_stream(words[2:3], 10, tok, StreamIds(P, E, 1000))
    assert stream_ids(preset("tiny")) == StreamIds(3, 0, 1000)


def test_text_stream_given_the_config_says_to_give_stream_ids(tok):
    """(was: AttributeError 'LMConfig' object has no attribute 'pad')"""
    words = [Word("agent", "the", 0.0, 0.1)]
    for call in (text_stream, text_stream_report):
        with pytest.raises(TypeError, match=r"^text_stream: ids must be a StreamIds, the front-end's special ids: "
                                            r"give stream_ids\(cfg\) of its config, not the LMConfig itself$"):
            call(words, 4, tok, preset("tiny"))


def _oracle(tok):
    a = tok.encode("Paris is the capital of France")
    b = tok.encode("It is Paris")
    return [OracleEvent(2, "reset", prediction=1, hint=1), OracleEvent(2, "append", a[:3], "Paris is the"),
            OracleEvent(7, "append", a[3:], " capital of France"),  # late: its first tokens' frames have passed
            OracleEvent(9, "reset", prediction=2, hint=3), OracleEvent(9, "append", b, "It is Paris"),
            OracleEvent(14, "append", tok.encode("and more"), " and more")]  # runs past the end


def _dialogue(tok, T=16, seed=0, **kw):
    words = [Word("user", "Where", 0.0, 0.2), Word("agent", "Hello", 0.0, 0.2), Word("agent", "capital", 0.5, 0.7)]
    return dialogue(T, seed, words=words, oracle=_oracle(tok), tokenizer_sha256=tok.sha256, **kw)


def test_training_example_layout(tok, cfg):
    d = _dialogue(tok)
    codec = FakeCodec(4)  # set to the codebooks the front-end needs, as the runtime does
    codes, oracle = training_example(d, codec, tok, cfg)
    T = 16
    assert codec.num_codebooks == 8 and codes.shape == (17, T) and codes.dtype == oracle.dtype == torch.long
    assert torch.equal(codes[0], text_stream(d.words_of("agent"), T, tok, stream_ids(cfg)))
    assert codes[0, :4].tolist() == [123, 382, 53, P] and codes[0, 5:7].tolist() == [E, 3451]
    agent, user = codes_of(levels(T, 100)), codes_of(levels(T, 0))
    assert torch.equal(codes[1:9], agent)  # the agent's frame f in column f
    assert torch.equal(codes[9:, : T - 1], user[:, 1:])  # the user's frame f + 1 beside it
    assert (codes[9:, T - 1] == -1).all()  # no user frame T
    assert torch.equal(oracle, oracle_timeline(d.timeline_events(), T, **oracle_ids(cfg)))
    assert oracle[:3].tolist() == [P, P, 4000]  # pad until the first prediction, then its start id


@torch.no_grad()
def test_the_oracle_is_what_the_stepper_feeds(tok, cfg):
    """Each step's oracle token, when the dialogue's events are made on a Stepper as the runtime
    makes them (before the step of their frame), is the example's oracle column."""
    d = _dialogue(tok)
    _, oracle = training_example(d, FakeCodec(), tok, cfg)
    st = Stepper(LMModel(cfg).eval(), 1, Sampling(greedy=True))
    fed = []
    for t in range(d.frames):
        for ev in d.oracle:
            if ev.frame == t:
                st.oracle.reset(0) if ev.event == "reset" else st.oracle.append(0, ev.ids)
        fed.append(int(st.step(torch.zeros(1, 8, dtype=torch.long)).oracle_in[0]))
    assert fed == oracle.tolist()
    assert st.oracle.stats(0).skipped > 0 and st.oracle.stats(0).superseded > 0  # the late and replaced tokens


def test_a_collated_batch_trains_through_the_forward(tok, cfg):
    torch.manual_seed(0)
    model = LMModel(cfg)
    long_, short = _dialogue(tok, T=16), _dialogue(tok, T=11, seed=5)
    short.oracle = [ev for ev in short.oracle if ev.frame < 11]  # (an event past the end is refused)
    ex = [training_example(x, FakeCodec(), tok, cfg) for x in (long_, short)]
    codes, oracle = collate(ex, cfg)
    assert codes.shape == (2, 17, 16) and oracle.shape == (2, 16)
    assert (codes[1, :, 11:] == -1).all() and (oracle[1, 11:] == P).all()  # right padding
    assert torch.equal(codes[1, :2, :11], ex[1][0][:2]) and (codes[1, 2:9, 10] == -1).all()  # delayed streams' last frame
    out = model(codes, oracle=oracle)
    assert out.text_mask[0].all() and out.text_mask[1, 0, :11].all() and not out.text_mask[1, 0, 11:].any()
    for k, dly in enumerate(cfg.delays[1: 1 + cfg.dep_q]):  # audio: masked where padded and past the delay
        assert out.mask[0, k, : 16 - dly].all() and not out.mask[0, k, 16 - dly:].any()
        assert out.mask[1, k, : 11 - dly].all() and not out.mask[1, k, 11 - dly:].any()
    with torch.no_grad():  # the padding changes nothing of the shorter dialogue's own frames
        alone = model(ex[1][0][None], oracle=ex[1][1][None])
    assert (alone.text_logits[0] - out.text_logits[1, :, :11]).abs().max() < 1e-5
    assert torch.equal(alone.mask[0], out.mask[1, :, :11]) and torch.equal(alone.text_mask[0], out.text_mask[1, :, :11])
    valid = alone.mask[0]
    assert (alone.logits[0][valid] - out.logits[1, :, :11][valid]).abs().max() < 1e-5
    text = F.cross_entropy(out.text_logits[out.text_mask], codes[:, :1][out.text_mask])
    audio = F.cross_entropy(out.logits[out.mask], codes[:, 1: 1 + cfg.dep_q][out.mask])
    assert torch.isfinite(text) and torch.isfinite(audio)
    (text + audio).backward()
    assert model.oracle_emb.weight.grad[4000].abs().sum() > 0  # the start id was read
    assert model.emb[cfg.dep_q].weight.grad.abs().sum() > 0  # the user's first codebook too
    with pytest.raises(DataError, match="no examples"):
        collate([], cfg)


def test_codes_come_from_the_cache_when_there_is_one(tok, cfg, tmp_path):
    d = read_dialogue(write_dialogue(tmp_path / "d", _dialogue(tok)))
    codec = FakeCodec()
    fresh = training_example(d, codec, tok, cfg)
    write_codes(d, codec, spec="fake")
    calls = codec.calls
    cached = training_example(d, codec, tok, cfg)
    assert codec.calls == calls  # not encoded again
    assert all(torch.equal(a, b) for a, b in zip(fresh, cached))
    other = FakeCodec()
    other.fingerprint = "cd" * 32
    with pytest.raises(DataError, match=r"codes.npz: cached with codec 'fake'"):
        training_example(d, other, tok, cfg)
    assert torch.equal(training_example(d, other, tok, cfg, use_cache=False)[0], fresh[0])


def test_oracle_ids_of_another_tokenizer_are_refused_until_re_encoded(tok, cfg):
    d = _dialogue(tok)
    d.tokenizer_sha256 = "ef" * 32
    with pytest.raises(DataError, match=r"made with tokenizer sha256 efef.*this tokenizer's is f58091f1.*retokenize_oracle"):
        training_example(d, FakeCodec(), tok, cfg)
    d2 = retokenize_oracle(d, tok)
    assert d2.tokenizer_sha256 == tok.sha256 and d.tokenizer_sha256 == "ef" * 32  # a copy
    # per prediction, the appends' ids are the whole prediction's encoding, each word once complete
    first = [i for ev in d2.oracle[1:3] for i in ev.ids]
    assert first == tok.encode("Paris is the capital of France")
    assert d2.oracle[1].ids == tok.encode("Paris is")  # "the" may go on in the next piece: held back
    assert d2.oracle[4].ids == tok.encode("It is")
    assert d2.oracle[5].ids == tok.encode("Paris and more")  # the flush goes to the prediction's last append
    assert [ev.ids for ev in d2.oracle] != [ev.ids for ev in d.oracle]
    d.oracle[5].text = None
    with pytest.raises(DataError, match=r"event 5 \(append at frame 14\) has no text"):
        retokenize_oracle(d, tok)
    assert training_example(d2, FakeCodec(), tok, cfg)[1].shape == (16,)
    small = preset("tiny")  # text_card 1000, below the tokenizer's 4000 pieces
    with pytest.raises(DataError, match=r"oracle ids \[.*\] outside the front-end's text vocabulary \[0, 1000\)"):
        training_example(_dialogue(tok), FakeCodec(), tok, small)


def test_with_the_embedded_codec(tok, cfg, tmp_path):
    """The real default codec: its codes fit the model, and its cache round-trips."""
    from kame import registry

    codec = registry.create("codec", "embedded")
    g = np.random.default_rng(0)
    d = _dialogue(tok, T=16)
    d.audio = (0.05 * g.standard_normal(d.audio.shape)).astype(np.float32)
    d = read_dialogue(write_dialogue(tmp_path / "d", d))
    codes, oracle = training_example(d, codec, tok, cfg, use_cache=False)
    assert codes.shape == (17, 16) and int(codes[1:].max()) < cfg.card and int(codes[1:, :15].min()) >= 0
    write_codes(d, codec, spec="embedded")
    assert torch.equal(training_example(d, codec, tok, cfg)[0], codes)
    with torch.no_grad():
        out = LMModel(cfg)(codes[None], oracle=oracle[None])
    assert torch.isfinite(out.text_logits[out.text_mask]).all()
