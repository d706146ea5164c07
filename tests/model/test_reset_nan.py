"""A row whose session's activations overflowed (NaN or inf in its KV cache, as float16 makes them)
starts clean when a new session takes it: TransformerState.reset zeros the row's keys and values
(was: only its positions, and attention's masked NaN slots, 0 * NaN, made every later session in
that row NaN for good)."""

import pytest
import torch

from ._ref import make_checkpoint
from kame.model.loaders import load_frontend
from kame.model.stepper import Sampling, Stepper

B, STEPS = 3, 20  # (more steps than the cache's 12 slots: the ring buffer wraps)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kame_ckpt")
    make_checkpoint(folder, "moshi", seed=4)
    return load_frontend(folder)[0]


def _user(t: int) -> torch.Tensor:
    return torch.randint(0, 100, (B, 8), generator=torch.Generator().manual_seed(100 + t))


def _cache_rows(st: Stepper, rows) -> list[torch.Tensor]:
    lm = st.state.lm
    return [t[rows].clone() for c in lm.caches for t in (c.k, c.v)] + [lm.pos[rows].clone(), lm.slot_pos[rows].clone()]


@torch.no_grad()
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_reset_row_with_nan_in_its_cache_steps_as_a_fresh_row_and_the_others_are_untouched(model, bad):
    poisoned, control = Stepper(model, B, Sampling(greedy=True)), Stepper(model, B, Sampling(greedy=True))
    for t in range(5):
        poisoned.step(_user(t))
        control.step(_user(t))
    for c in poisoned.state.lm.caches:  # row 0's session overflowed
        c.k[0, :, :3] = bad
        c.v[0, :, 1:4] = bad
    others = _cache_rows(poisoned, [1, 2])
    poisoned.reset([0])  # a new session takes row 0
    poisoned._apply_ops()
    assert all(torch.equal(a, b) for a, b in zip(_cache_rows(poisoned, [1, 2]), others))
    fresh = Stepper(model, B, Sampling(greedy=True))  # a row that never held a session
    for t in range(5, 5 + STEPS):
        p, f, c = poisoned.step(_user(t)), fresh.step(_user(t)), control.step(_user(t))
        assert torch.isfinite(p.text_logits).all() and torch.isfinite(p.audio_logits).all(), f"step {t}"
        assert torch.equal(p.text_logits[0], f.text_logits[0]) and torch.equal(p.audio_logits[0], f.audio_logits[0])
        assert torch.equal(p.text_logits[1:], c.text_logits[1:]) and torch.equal(p.audio_logits[1:], c.audio_logits[1:])
        assert torch.equal(p.text[1:], c.text[1:]) and torch.equal(p.audio[1:], c.audio[1:])
