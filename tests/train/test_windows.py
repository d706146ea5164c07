"""kame.train.examples.windows / crop: windows are plain slices (copies) of an example, the last
shorter window is kept or dropped by min_length, windows collate and train through the forward,
bad arguments raise saying what is wrong."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kame.backend.tokenizer import default_tokenizer
from kame.model.loaders import load_frontend
from kame.train.data import OracleEvent, Word
from kame.train.examples import collate, crop, training_example, windows

from ._fakes import FakeCodec, dialogue


def _example(K: int = 17, T: int = 23):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 2048, (K, T), generator=g), torch.randint(0, 4000, (T,), generator=g)


def _spans(ws, codes, oracle):
    """Each window's [start, end), found by matching it against the example's slices."""
    out = []
    for c, o in ws:
        n = c.shape[1]
        starts = [s for s in range(codes.shape[1] - n + 1) if torch.equal(codes[:, s: s + n], c)]
        assert len(starts) == 1 and torch.equal(oracle[starts[0]: starts[0] + n], o)
        out.append((starts[0], starts[0] + n))
    return out


def test_windows_are_the_slices_and_the_tail_is_kept_by_min_length():
    codes, oracle = _example(T=23)
    # length 8, no overlap: [0, 8), [8, 16), tail [16, 23) of 7 >= 8 // 2: kept
    assert _spans(windows(codes, oracle, 8), codes, oracle) == [(0, 8), (8, 16), (16, 23)]
    assert _spans(windows(codes, oracle, 8, min_length=8), codes, oracle) == [(0, 8), (8, 16)]  # 7 < 8: dropped
    assert _spans(windows(codes, oracle, 10), codes, oracle) == [(0, 10), (10, 20)]  # tail of 3 < 5: dropped
    assert _spans(windows(codes, oracle, 10, min_length=3), codes, oracle) == [(0, 10), (10, 20), (20, 23)]
    # overlapping: the last full window reaches the end, so no tail (its frames are covered)
    assert _spans(windows(codes, oracle, 8, 5), codes, oracle) == [(0, 8), (5, 13), (10, 18), (15, 23)]
    assert _spans(windows(codes, oracle, 8, 6), codes, oracle) == [(0, 8), (6, 14), (12, 20), (18, 23)]
    assert _spans(windows(codes, oracle, 5, 9, min_length=4), codes, oracle) == [(0, 5), (9, 14), (18, 23)]
    # an example no longer than length is one window, itself, however short
    for n in (2, 3, 8):
        assert _spans(windows(codes[:, :n], oracle[:n], 8), codes, oracle) == [(0, n)]
    assert _spans(windows(codes, oracle, 23), codes, oracle) == [(0, 23)]
    # copies: changing a window (e.g. a dropout) leaves the example as it was
    c, o = windows(codes, oracle, 8)[1]
    c.fill_(-1), o.fill_(-1)
    assert (codes[:, 8:16] != -1).all() and (oracle[8:16] != -1).all()
    # crop is one window; oracle None stays None (a config without an oracle stream)
    c, o = crop(codes, oracle, 3, 7)
    assert torch.equal(c, codes[:, 3:10]) and torch.equal(o, oracle[3:10])
    assert all(o is None for _, o in windows(codes, None, 8))
    assert crop(codes, None, 0, 2)[1] is None


@pytest.mark.parametrize("call, match", [
    (lambda c, o: windows(c, o, 1), r"length must be >= 2 frames, got 1"),
    (lambda c, o: windows(c, o, 8.0), r"length must be an int \(frames\), got 8.0"),
    (lambda c, o: windows(c, o, True), r"length must be an int"),
    (lambda c, o: windows(c, o, 8, 0), r"stride must be >= 1 frame, got 0"),
    (lambda c, o: windows(c, o, 8, min_length=1), r"min_length must be in \[2, length = 8\], got 1"),
    (lambda c, o: windows(c, o, 8, min_length=9), r"min_length must be in \[2, length = 8\], got 9"),
    (lambda c, o: windows(c[:, :1], o[:1], 8), r"the example has 1 frame\(s\), a window needs at least 2"),
    (lambda c, o: windows(c[None], o[None], 8), r"codes must be one example \[K, T\].*got shape \(1, 17, 23\)"),
    (lambda c, o: windows(c, o[:-1], 8), r"oracle must be \[T\] = \[23\].*got \(22,\)"),
    (lambda c, o: crop(c, o, 20, 4), r"frames \[20, 24\) are not inside the example's \[0, 23\)"),
    (lambda c, o: crop(c, o, -1, 4), r"frames \[-1, 3\) are not inside"),
    (lambda c, o: crop(c, o, 0, 1), r"crop: length must be >= 2 frames, got 1"),
])
def test_bad_arguments_raise_saying_what_is_wrong(call, match):
    codes, oracle = _example()
    with pytest.raises(ValueError, match=match):
        call(codes, oracle)


def test_windows_of_a_training_example_collate_and_train_through_the_forward():
    torch.manual_seed(0)
    tok = default_tokenizer()
    model, _ = load_frontend("random:tiny", text_card=4000)  # as docs/data.md
    cfg = model.cfg
    a = tok.encode("Paris is the capital of France")
    oracle_events = [OracleEvent(3, "reset", prediction=1, hint=1), OracleEvent(3, "append", a, "Paris is the capital "
                                                                                               "of France"),
                     OracleEvent(19, "reset", prediction=2, hint=2), OracleEvent(19, "append", a[:2], "Paris is")]
    words = [Word("user", "Where", 0.0, 0.2), Word("agent", "Hello", 0.3, 0.5), Word("agent", "capital", 1.5, 1.7)]
    d = dialogue(30, 0, words=words, oracle=oracle_events, tokenizer_sha256=tok.sha256)
    ex = training_example(d, FakeCodec(), tok, cfg)
    ws = windows(*ex, 12)  # [0, 12), [12, 24), tail [24, 30) of 6 >= 6: kept
    assert [c.shape[1] for c, _ in ws] == [12, 12, 6]
    assert _spans(ws, *ex) == [(0, 12), (12, 24), (24, 30)]
    codes, oracle = collate(ws, cfg)
    assert codes.shape == (3, cfg.num_codebooks, 12) and oracle.shape == (3, 12)
    assert (codes[2, :, 6:] == -1).all()  # the tail, right-padded
    assert (oracle == cfg.text_card).any()  # the second window holds the second prediction's start id
    out = model(codes, oracle=oracle)
    assert out.text_mask[:2].all() and out.text_mask[2, 0, :6].all() and not out.text_mask[2, 0, 6:].any()
    for k, dly in enumerate(cfg.delays[1: 1 + cfg.dep_q]):  # each window's own delayed frames have no target
        assert out.mask[:2, k, : 12 - dly].all() and not out.mask[:, k, 12 - dly:].any()
    text = F.cross_entropy(out.text_logits[out.text_mask], codes[:, :1][out.text_mask])
    audio = F.cross_entropy(out.logits[out.mask], codes[:, 1: 1 + cfg.dep_q][out.mask])
    assert torch.isfinite(text) and torch.isfinite(audio)
    (text + audio).backward()
    assert model.oracle_emb.weight.grad[cfg.text_card].abs().sum() > 0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    # a window is its own session: its forward alone equals its row of the batch
    with torch.no_grad():
        alone = model(ws[1][0][None], oracle=ws[1][1][None])
        batch = model(codes, oracle=oracle)
    assert (alone.text_logits[0] - batch.text_logits[1]).abs().max() < 1e-5


def test_window_spans_from_an_offset_keep_a_long_enough_head():
    from kame.train.examples import window_spans

    assert window_spans(40, 16) == [(0, 16), (16, 16), (32, 8)]
    assert window_spans(40, 16, offset=10) == [(0, 10), (10, 16), (26, 14)]  # the head kept as the tail is
    assert window_spans(40, 16, offset=5) == [(5, 16), (21, 16)]  # a head (and a tail) under 8 frames dropped
    assert window_spans(12, 16, offset=5) == [(0, 12)]  # one window: itself, whatever the offset


def test_long_dialogues_are_cut_elsewhere_each_epoch_and_the_cuts_are_seeded(tmp_path):
    """tcfg.window_offsets: a dialogue longer than a window is cut from a frame drawn per epoch and
    dialogue (so a cut is not always on the same frame), the same for a seed; off: the same cuts
    every epoch, from frame 0."""
    from kame.train import batching
    from kame.train.batching import batches
    from kame.train.finetune import TrainConfig

    ex = [batching.Example("d", torch.arange(17 * 200).view(17, 200) % 2048, torch.full((200,), 3), [])]
    cfg = load_frontend("random:tiny", text_card=4000)[0].cfg

    def starts(tcfg, steps):  # the window starts of each epoch (batch_size 1: one window a step)
        feed = batches(ex, cfg, tcfg)
        return [int(next(feed)[0][0, 1, 0]) - 200 for _ in range(steps)]  # (codes row 1, frame f: 200 + f)

    on = TrainConfig(batch_size=1, window_frames=64, seed=3)
    first = starts(on, 40)
    assert first == starts(on, 40)  # seeded
    assert len({s % 64 for s in first}) > 3  # the cuts move between epochs (~13 epochs here)
    off = starts(TrainConfig(batch_size=1, window_frames=64, seed=3, window_offsets=False), 12)
    assert sorted(set(off)) == [0, 64, 128]  # off: from frame 0 every 64 frames, every epoch
