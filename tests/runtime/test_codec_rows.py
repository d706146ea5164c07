"""A codec stream that can code some rows only (the embedded codec's, ``rows_subset``) codes the
rows in use alone (was: every row of the batch, idle ones too: ~12 ms a frame of 3 idle rows at
the default 4): a session's tokens and audio are what today's every-row path gives it (to the
documented 1-LSB batch rounding) and, alone in the batch, bit for bit what a 1-row runtime gives;
a row that a session takes again starts from clean codec state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kame.runtime.frontend import load_frame_models

from .test_frontend_real import real_cfg
from .wrapped_codec import WrappedStream as EveryRow  # (no rows_subset: the runtime's every-row path)

F = 1920


@pytest.fixture(scope="module")
def factory():
    torch.set_num_threads(1)
    return load_frame_models(real_cfg(**{"codec.spec": "embedded", "frontend.seed": 0,
                                         "frontend.temp": 0.8, "frontend.temp_text": 0.7}))[0]


def voiced(seed: int, n: int) -> np.ndarray:
    """n frames of a buzzy voice (F0 gliding around 90..190 Hz) with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n * F) / 24000
    f0 = 140 + 50 * np.sin(2 * np.pi * (0.7 + 0.2 * seed) * t)
    ph = 2 * np.pi * np.cumsum(f0) / 24000
    x = sum(np.sin(k * ph) / k for k in range(1, 30)) * 0.1 + 0.01 * rng.standard_normal(n * F)
    return x.astype(np.float32).reshape(n, F)


class Seen:
    """The batch sizes the embedded codec's encoder and vocoder run on."""

    def __init__(self, codec) -> None:
        self.codec, self.enc, self.dec = codec, [], []

    def __enter__(self):
        c, enc, render = self.codec, self.codec._encode_windows, self.codec.vocoder.render
        c._encode_windows = lambda win, *a: (self.enc.append(win.shape[0]), enc(win, *a))[1]
        c.vocoder.render = lambda st, feats: (self.dec.append(feats.shape[0]), render(st, feats))[1]
        return self

    def __exit__(self, *exc):
        del self.codec._encode_windows, self.codec.vocoder.render


def run(fm, schedule, inputs, frames):
    """Step ``frames`` frames; schedule {frame: (rows joining, rows leaving)}; inputs {row: frames}
    -> [(pcm [B, F], text [B])] per frame."""
    active, outs = np.zeros(fm.batch_size, bool), []
    for i in range(frames):
        join, leave = schedule.get(i, ((), ()))
        active[list(leave)] = False
        if join:
            fm.reset(list(join))
            active[list(join)] = True
        x = np.zeros((fm.batch_size, F), np.float32)
        for r in np.flatnonzero(active):
            x[r] = inputs[r][i % len(inputs[r])]
        fo = fm.step(x, active.copy())
        outs.append((fo.pcm.copy(), fo.text.copy()))
    return outs


def test_one_live_row_of_four_is_coded_alone_with_the_output_of_every_row_coding(factory):
    fm, old, one = factory(4), factory(4), factory(1)
    old.stream = EveryRow(old.stream)  # today's path
    x = voiced(1, 10)
    with Seen(fm.codec) as seen:
        got = run(fm, {0: ([2], ())}, {2: x}, 10)
    assert seen.enc == [1] * 10 and seen.dec == [1] * 10  # the idle rows were not coded
    want = run(old, {0: ([2], ())}, {2: x}, 10)
    alone = run(one, {0: ([0], ())}, {0: x}, 10)
    assert sum((t[2] >= 0).sum() for _, t in got) > 0 and max(np.abs(p[2]).max() for p, _ in got) > 0.01
    for (p, t), (wp, wt), (ap, at) in zip(got, want, alone):
        assert t.tolist() == wt.tolist() and t[2] == at[0]
        np.testing.assert_allclose(p, wp, rtol=0, atol=1e-6)  # (the vocoder's batch rounding: 1 LSB)
        np.testing.assert_array_equal(p[2], ap[0])  # alone in the batch: bit for bit a 1-row runtime's
        assert not p[[0, 1, 3]].any() and (t[[0, 1, 3]] == -1).all()
    s = fm.stream  # the idle rows' codec state was never moved
    assert not s.history[[0, 1, 3]].any() and not s.voc.started[[0, 1, 3]].any()


def test_join_leave_rejoin_gives_what_every_row_coding_gives_and_a_rejoin_starts_clean(factory):
    """Row 0 from frame 0, row 1 joins at 5, row 0 leaves at 9 and a new session takes it at 11."""
    fm, old, one = factory(4), factory(4), factory(1)
    old.stream = EveryRow(old.stream)
    inputs = {0: voiced(2, 16), 1: voiced(3, 16)}
    plan = {0: ([0], ()), 5: ([1], ()), 9: ((), [0]), 11: ([0], ())}
    with Seen(fm.codec) as seen:
        got = run(fm, plan, inputs, 16)
    live = [1] * 5 + [2] * 4 + [1] * 2 + [2] * 5
    assert seen.enc == live and seen.dec == live
    want = run(old, plan, inputs, 16)
    for (p, t), (wp, wt) in zip(got, want):
        assert t.tolist() == wt.tolist()
        np.testing.assert_allclose(p, wp, rtol=0, atol=1e-6)
    # the new session in row 0 gets what a fresh 1-row runtime gives for the same input
    fresh = run(one, {0: ([0], ())}, {0: inputs[0][11:]}, 5)
    for (p, t), (ap, at) in zip(got[11:], fresh):
        assert t[0] == at[0]
        np.testing.assert_allclose(p[0], ap[0], rtol=0, atol=1e-6)
    assert max(np.abs(p[0]).max() for p, _ in got[11:]) > 0.01  # (its model audio has started)


def test_broken_output_of_the_rows_in_use_is_replaced_and_named(factory):
    """A rows_subset stream's broken decode_rows output: the session hears silence and is told once."""
    from kame.runtime.frontend import CodecInterfaceError

    fm = factory(4)
    inner = fm.stream

    class NanRows(EveryRow):
        rows_subset = True

        def encode_rows(self, pcm, rows):
            return self.inner.encode_rows(pcm, rows)

        def decode_rows(self, codes, rows):
            return self.inner.decode_rows(codes, rows) * float("nan")

    fm.stream = NanRows(inner)
    fm.reset([1])
    active = np.array([False, True, False, False])
    x = np.zeros((4, F), np.float32)
    x[1] = voiced(4, 1)[0]
    with pytest.raises(CodecInterfaceError, match=r"decode_rows returned: audio contains NaN"):
        fm.step(x, active)
    for _ in range(4):
        assert not fm.step(x, active).pcm.any()  # (told once; silence instead)
    assert fm.codec_faults == 5
