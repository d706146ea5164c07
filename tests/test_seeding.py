"""kame.seeding.seed_generator: every seed in [0, 2**64 - 1] its own torch stream (was: torch's CPU
generator took the low 32 bits, so frontend.seed 5 and 4294967301 gave identical sessions), and a
seed below 2**32 exactly manual_seed's stream (seeded runs keep their output)."""

import numpy as np
import pytest
import torch

from kame.seeding import _cpu_state, manual_seed, seed_generator


def draws(seed, n=8):
    return torch.randn(n, generator=seed_generator(torch.Generator(), seed))


@pytest.mark.parametrize("seed", [0, 5, 2**31, 2**32 - 1])
def test_a_seed_below_2_32_is_manual_seeds_stream(seed):
    g = seed_generator(torch.Generator(), seed)
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(seed).get_state())


def test_seeds_that_share_their_low_32_bits_get_their_own_streams():
    seeds = [5, 2**32 + 5, 2**33 + 5, 2**63 + 5, 2**64 - 1, 2**32 - 1, 2**63 - 1, 2**32]
    got = [draws(s) for s in seeds]
    assert all(not torch.equal(got[i], got[j]) for i in range(len(seeds)) for j in range(i))
    assert torch.equal(draws(2**40 + 3), draws(2**40 + 3))  # (and each is repeatable)
    assert seed_generator(torch.Generator(), 2**64 - 1).initial_seed() == 2**64 - 1


def test_reseeding_a_used_generator_starts_its_stream_anew():
    g = seed_generator(torch.Generator(), 2**50 + 1)
    first = torch.randn(4, generator=g)
    torch.randn(100, generator=g)
    assert torch.equal(torch.randn(4, generator=seed_generator(g, 2**50 + 1)), first)


def test_the_global_generator_too():
    saved = torch.random.get_rng_state()
    try:
        seed_generator(torch.default_generator, 2**32 + 7)
        assert torch.equal(torch.randn(5), draws(2**32 + 7, 5))
        assert not torch.equal(draws(2**32 + 7, 5), draws(7, 5))
    finally:
        torch.random.set_rng_state(saved)


def test_a_state_not_laid_out_as_expected_is_refused():
    """(a torch whose CPU state differs would otherwise get a wrong state written in)"""
    g = torch.Generator().manual_seed(2**32 + 1)
    torch.randn(3, generator=g)  # (a used state: not what manual_seed writes)
    with pytest.raises(RuntimeError, match="seed 4294967297: torch .*CPU generator state is not laid out"):
        _cpu_state(g.get_state(), 2**32 + 1)


def test_random_front_end_weights_count_every_bit_of_the_seed():
    """load_frontend's random weights (random:tiny;seed=N): seed 2**32 + 5 is not seed 5's model."""
    from kame.model.loaders import load_frontend

    def first_weight(seed: int) -> torch.Tensor:
        return next(load_frontend("random:tiny", seed=seed)[0].parameters())

    assert torch.equal(first_weight(5), first_weight(5))
    assert not torch.equal(first_weight(5), first_weight(2**32 + 5))


def test_a_negative_seed_is_torchs_seed_plus_2_64():
    """torch.manual_seed(-1) seeds 2**64 - 1 (its initial_seed()); build_random('tiny', seed=-1) and
    fit_rvq(seed=-1), which take torch's seeds, used to work and raised a RuntimeError blaming torch's
    generator layout."""
    from kame.codec.mimi import build_random

    for seed in (-1, -5, -2**63):
        g = seed_generator(torch.Generator(), seed)
        assert g.initial_seed() == seed + 2**64 == torch.Generator().manual_seed(seed).initial_seed()
        assert torch.equal(g.get_state(), seed_generator(torch.Generator(), seed + 2**64).get_state())
    saved = torch.random.get_rng_state()
    try:
        manual_seed(-1)
        assert torch.equal(torch.randn(5), draws(2**64 - 1, 5))
    finally:
        torch.random.set_rng_state(saved)
    first = [next(build_random("tiny", seed=s).model.parameters()) for s in (-1, 2**64 - 1)]
    assert torch.equal(*first)


def test_a_numpy_integer_seed_is_its_int():
    """(torch.manual_seed took np.int64: build_random(seed=np.int64(3)) loaded before kame.seeding)"""
    assert torch.equal(seed_generator(torch.Generator(), np.int64(3)).get_state(),
                       torch.Generator().manual_seed(3).get_state())
    assert seed_generator(torch.Generator(), np.uint64(2**64 - 1)).initial_seed() == 2**64 - 1


@pytest.mark.parametrize("seed", [2**64, -2**63 - 1, 10**30, 1.5, True, "3", None])
def test_a_seed_outside_torchs_range_is_a_value_error_naming_it(seed):
    """(was: "Overflow when unpacking long long" from torch for 2**64, a RuntimeError or TypeError for the others)"""
    for seed_it in (lambda: seed_generator(torch.Generator(), seed), lambda: manual_seed(seed)):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[-2\*\*63, 2\*\*64 - 1\] .*got "):
            seed_it()
