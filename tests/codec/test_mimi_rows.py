"""Mimi's stream codes some rows only (encode_rows / decode_rows, rows_subset; was: the runtime
coded every row of the batch with Mimi, idle ones on silence): the rows coded get the codes (and,
to 1e-5, the audio) of coding the whole batch, the other rows' state is left exactly as it was,
sessions joining and leaving rows get what a stream of their own gives, and the runtime codes a
lone user's row alone with the tokens and audio of coding every row. Tiny config, random weights.

    .venv/bin/python -m pytest tests/codec/test_mimi_rows.py -q
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from kame.codec.base import take_rows
from kame.codec.mimi import build_random
from kame.errors import AudioFormatError, ConfigError

from .test_mimi import FS, speechlike, stream_decode, stream_encode


@pytest.fixture(scope="module")
def codec():
    torch.set_num_threads(1)
    return build_random("tiny", seed=1)


def leaves(state) -> list[torch.Tensor]:
    """Every tensor of a stream's state (a tree of dataclasses and lists), in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if dataclasses.is_dataclass(state):
        return [t for f in dataclasses.fields(state) for t in leaves(getattr(state, f.name))]
    if isinstance(state, list):
        return [t for s in state for t in leaves(s)]
    return []


def state_of(stream, rows: list[int]) -> list[torch.Tensor]:
    """A copy of rows ``rows`` of the stream's encoder and decoder state."""
    idx = torch.tensor(rows)
    return leaves(take_rows(stream.enc, idx)) + leaves(take_rows(stream.dec, idx))


def frames(pcm: torch.Tensor) -> torch.Tensor:
    """[B, F * FS] -> [F, B, FS]."""
    return pcm.view(pcm.shape[0], -1, FS).transpose(0, 1)


def test_some_rows_are_coded_as_the_whole_batch_codes_them_and_the_others_are_left_alone(codec):
    full, ref = codec.stream(4), codec.stream(4)
    assert full.rows_subset
    x = frames(speechlike(4, 15, seed=11))
    codes_in = torch.randint(0, codec.cardinality, (15, 4, 8), generator=torch.Generator().manual_seed(2))
    for f in range(3):  # every row coded first: the idle rows' state is not the initial one
        for s in (full, ref):
            s.encode_frame(x[f])
            s.decode_frame(codes_in[f])
    idle = state_of(full, [0, 2])
    live = torch.tensor([False, True, False, True])
    for f in range(3, 15):  # 24 transformer steps: past the tiny config's 8-step attention window
        codes = full.encode_rows(x[f, [1, 3]], [1, 3])
        want = ref.encode_frame(x[f])[[1, 3]]
        assert torch.equal(codes, want)
        audio = full.decode_rows(codes_in[f, [1, 3]], live)
        assert torch.allclose(audio, ref.decode_frame(codes_in[f])[[1, 3]], atol=1e-5)
    assert len(set(full.encode_rows(x[0, [1]], [1]).flatten().tolist())) > 3  # (codes that vary)
    now = state_of(full, [0, 2])
    assert len(now) == len(idle) > 20
    assert all(torch.equal(a, b) for a, b in zip(now, idle))  # the rows not coded: exactly as they were


def test_sessions_joining_and_leaving_rows_get_what_a_stream_of_their_own_gives(codec):
    """Session A in row 0 from frame 0, B joins row 2 at 3, A leaves at 7, C takes row 0 at 10."""
    n = 16
    x = {k: frames(speechlike(1, n, seed=20 + i))[:, 0] for i, k in enumerate("ABC")}  # [n, FS] each
    g = torch.Generator().manual_seed(4)
    c_in = {k: torch.randint(0, codec.cardinality, (n, 8), generator=g) for k in "ABC"}
    plan = {"A": (0, 0, 7), "B": (2, 3, n), "C": (0, 10, n)}  # session: (row, first frame, end)
    s = codec.stream(3)
    got = {k: ([], []) for k in plan}
    for f in range(n):
        on = {k: row for k, (row, a, b) in plan.items() if a <= f < b}
        s.reset([row for k, (row, a, b) in plan.items() if a == f])
        rows = sorted(on.values())
        who = sorted(on, key=on.get)
        if f == 8:
            parked = state_of(s, [0])  # row 0 between A and C
        codes = s.encode_rows(torch.stack([x[k][f - plan[k][1]] for k in who]), rows)
        audio = s.decode_rows(torch.stack([c_in[k][f - plan[k][1]] for k in who]), rows)
        for i, k in enumerate(who):
            got[k][0].append(codes[i])
            got[k][1].append(audio[i])
        if f == 9:
            assert all(torch.equal(a, b) for a, b in zip(state_of(s, [0]), parked))
    assert all(torch.equal(a, b) for a, b in zip(state_of(s, [1]), state_of(codec.stream(3), [1])))  # never coded
    for k, (row, a, b) in plan.items():
        alone = codec.stream(1)
        pcm = x[k][: b - a].reshape(1, -1)
        assert torch.equal(torch.stack(got[k][0], -1)[None], stream_encode(alone, pcm))
        want = stream_decode(alone, c_in[k][: b - a].T[None])
        assert torch.allclose(torch.cat(got[k][1])[None], want, atol=1e-5)


def test_bad_rows_are_refused_before_any_state_changes(codec):
    s = codec.stream(4)
    s.encode_frame(frames(speechlike(4, 1, seed=3))[0])
    before = state_of(s, [0, 1, 2, 3])
    x = torch.zeros(2, FS)
    with pytest.raises(ConfigError, match=r"coded rows must be distinct indices in ascending order, got \[3, 1\]"):
        s.encode_rows(x, [3, 1])
    with pytest.raises(ConfigError, match=r"coded rows \[1, 4\] out of range for batch size 4"):
        s.decode_rows(torch.zeros(2, 8, dtype=torch.long), [1, 4])
    with pytest.raises(AudioFormatError, match=r"encode_rows: expected pcm of shape \[3, 1920\]"):
        s.encode_rows(x, [0, 1, 2])
    with pytest.raises(AudioFormatError, match=r"decode_rows: expected 3 rows of codes"):
        s.decode_rows(torch.zeros(2, 8, dtype=torch.long), [0, 1, 2])
    assert all(torch.equal(a, b) for a, b in zip(state_of(s, [0, 1, 2, 3]), before))


# --- in the runtime: one user of four rows
def test_the_runtime_codes_a_lone_users_row_alone_with_the_output_of_coding_every_row():
    from kame.runtime.frontend import load_frame_models
    from tests.runtime.test_codec_rows import run, voiced
    from tests.runtime.test_frontend_real import real_cfg
    from tests.runtime.wrapped_codec import WrappedStream as EveryRow  # (no rows_subset: every row coded)

    torch.set_num_threads(1)
    factory = load_frame_models(real_cfg(**{"codec.spec": "mimi:random-tiny", "frontend.seed": 0,
                                            "frontend.temp": 0.8, "frontend.temp_text": 0.7}))[0]
    fm, old = factory(4), factory(4)
    old.stream = EveryRow(old.stream)
    model, seen = fm.codec.model, []
    enc, dec = model.encode, model.decode
    model.encode = lambda pcm, *a: (seen.append(("enc", pcm.shape[0])), enc(pcm, *a))[1]
    model.decode = lambda codes, *a: (seen.append(("dec", codes.shape[0])), dec(codes, *a))[1]
    try:
        x = voiced(1, 10)
        got = run(fm, {0: ([2], ())}, {2: x}, 10)
    finally:
        del model.encode, model.decode
    assert seen == [("enc", 1), ("dec", 1)] * 10  # the idle rows were not coded
    want = run(old, {0: ([2], ())}, {2: x}, 10)
    assert max(np.abs(p[2]).max() for p, _ in got) > 0
    for (p, t), (wp, wt) in zip(got, want):
        assert t.tolist() == wt.tolist()
        np.testing.assert_allclose(p, wp, rtol=0, atol=1e-5)
    idle = zip(state_of(fm.stream, [0, 1, 3]), state_of(fm.codec.stream(4), [0, 1, 3]))
    assert all(torch.equal(a, b) for a, b in idle)  # the idle rows' codec state never moved


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_a_reset_row_forgets_a_non_finite_attention_cache(codec, poison):
    """A NaN or inf in a row's transformer keys/values (was: kept by reset, and 0 * NaN of the masked
    slots made every later session of that row NaN) is gone after the row's reset: the row then codes
    as a fresh stream's, and the other row is left as it was."""
    x = speechlike(2, 6, seed=3)
    s, fresh = codec.stream(2), codec.stream(1)
    stream_encode(s, x[:, :3 * FS])
    stream_decode(s, codec.encode(x[:, :3 * FS]))
    for st in (s.enc, s.dec):
        for layer in st.transformer.layers:
            layer.k, layer.v = layer.k.clone(), layer.v.clone()  # (inference tensors: not written in place)
            layer.k[0], layer.v[0] = poison, poison
    one = torch.tensor([1])
    other = [t.clone() for t in leaves(take_rows(s.enc, one)) + leaves(take_rows(s.dec, one))]
    s.reset([0])
    assert all(torch.equal(a, b) for a, b in
               zip(other, leaves(take_rows(s.enc, one)) + leaves(take_rows(s.dec, one))))
    codes = stream_encode(s, x)[:1]
    assert torch.equal(codes, stream_encode(fresh, x[:1]))
    audio = stream_decode(s, torch.cat([codes, codes]))[:1]
    assert torch.isfinite(audio).all()
    assert torch.allclose(audio, stream_decode(codec.stream(1), codes), atol=1e-5)
