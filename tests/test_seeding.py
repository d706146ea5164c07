"""kame.seeding.seed_generator: every seed in [0, 2**64 - 1] its own torch stream (was: torch's CPU
generator took the low 32 bits, so frontend.seed 5 and 4294967301 gave identical sessions), and a
seed below 2**32 exactly manual_seed's stream (seeded runs keep their output)."""

import pytest
import torch

from kame.seeding import _cpu_state, seed_generator


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
