"""The embedded codec's stream codes some rows only (encode_rows / decode_rows, rows_subset: what
the runtime uses for the rows in use), exactly as a stream of those rows, the other rows' state
untouched; and its RVQ computes each codebook's squared norms once, not every frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kame.codec.base import CodecStream
from kame.codec.embedded import load
from kame.codec.embedded.rvq import RVQ, _beam_encode
from kame.errors import AudioFormatError, ConfigError

F = 1920


@pytest.fixture(scope="module")
def codec():
    torch.set_num_threads(1)
    return load()


def voiced(seed: int, rows: int, n: int) -> torch.Tensor:
    """[n, rows, F]: a buzzy voice per row (F0 gliding around 90..190 Hz), a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n * F) / 24000
    out = []
    for r in range(rows):
        ph = 2 * np.pi * np.cumsum(140 + 50 * np.sin(2 * np.pi * (0.5 + 0.3 * r) * t)) / 24000
        x = sum(np.sin(k * ph) / k for k in range(1, 30)) * 0.1 + 0.01 * rng.standard_normal(n * F)
        out.append(x.reshape(n, F))
    return torch.from_numpy(np.stack(out, 1).astype(np.float32))


def test_some_rows_are_coded_as_a_stream_of_those_rows_and_the_others_are_left_alone(codec):
    full, pair = codec.stream(4), codec.stream(2)
    x = voiced(0, 2, 6)
    assert full.rows_subset and not CodecStream.rows_subset
    before = (full.history.clone(), full.voc.phase.clone(), full.level.db.clone(), full.dec_ref.clone())
    for f in range(6):
        codes = full.encode_rows(x[f], [1, 3])
        want = pair.encode_frame(x[f])
        assert torch.equal(codes, want)
        assert torch.equal(full.decode_rows(codes, torch.tensor([False, True, False, True])), pair.decode_frame(want))
    assert torch.equal(full.history[[1, 3]], pair.history) and torch.equal(full.voc.amp[[1, 3]], pair.voc.amp)
    assert torch.equal(full.level.heard[[1, 3]], pair.level.heard) and full.level.heard[[1, 3]].min() > 0
    for now, then in zip((full.history, full.voc.phase, full.level.db, full.dec_ref), before):
        assert torch.equal(now[[0, 2]], then[[0, 2]])  # the rows not coded kept their state
    assert not full.voc.started[[0, 2]].any()


def test_bad_rows_are_refused_before_any_state_changes(codec):
    s = codec.stream(4)
    x = torch.zeros(2, F)
    for rows, msg in (([3, 1], "coded rows must be distinct indices in ascending order, got [3, 1]"),
                      ([1, 1], "coded rows must be distinct indices in ascending order, got [1, 1]"),
                      ([1, 4], "coded rows [1, 4] out of range for batch size 4"),
                      ([0.5], "coded rows must be integers, got [0.5]")):
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            s.encode_rows(x, rows)
    with pytest.raises(AudioFormatError, match=r"encode_rows: expected pcm of shape \[3, 1920\]"):
        s.encode_rows(x, [0, 1, 2])
    with pytest.raises(AudioFormatError, match=r"decode_rows: expected 3 rows of codes"):
        s.decode_rows(torch.zeros(2, 8, dtype=torch.long), [0, 1, 2])
    assert not s.history.any() and not s.level.heard.any() and not s.voc.started.any()
    with pytest.raises(NotImplementedError, match="codes whole batches only"):
        CodecStream.encode_rows(s, x, [0, 1])


def fresh_norms(books: torch.Tensor) -> list[torch.Tensor]:  # |c|^2 per entry, computed now
    return [cb.square().sum(1) for cb in books]


def test_codebook_norms_are_computed_once_bit_identical_and_follow_a_new_codebook(codec):
    r = codec.rvq
    q = RVQ(mean=r.mean, scale=r.scale, proj=r.proj, codebooks=r.codebooks.clone())
    x = torch.randn(40, r.proj.shape[0], generator=torch.Generator().manual_seed(0)) * r.scale.reciprocal()
    z = q.project(x)
    assert q.norms() is q.norms()  # cached: not recomputed per call (per frame)
    assert all(torch.equal(n, c2) for n, c2 in zip(q.norms(), fresh_norms(q.codebooks)))
    assert torch.equal(q.encode(x, beam=16), _beam_encode(z, q.codebooks, 16, fresh_norms(q.codebooks)))
    q.codebooks[0, 5] += 1.0  # changed in place
    assert torch.equal(q.norms()[0], fresh_norms(q.codebooks)[0])
    q.codebooks = q.codebooks[:, torch.randperm(q.codebooks.shape[1], generator=torch.Generator().manual_seed(1))]
    assert torch.equal(q.norms()[3], fresh_norms(q.codebooks)[3])  # replaced
    assert torch.equal(q.encode(x, 4, beam=16), _beam_encode(z, q.codebooks[:4], 16, fresh_norms(q.codebooks[:4])))
