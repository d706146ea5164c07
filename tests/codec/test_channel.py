"""Tests of the fit-time recording channels (kame.codec.embedded.channel)."""

from __future__ import annotations

import numpy as np

from kame.codec.embedded.channel import noise, random_channel, reverb

RATE = 24000


def _speechlike(seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * RATE)) / RATE
    env = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)  # bursts and pauses
    return (0.5 * env * np.sin(2 * np.pi * 150 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_random_channel_is_seeded_and_keeps_shape_and_range():
    x = _speechlike()
    a = random_channel(x, RATE, np.random.default_rng([0, 3]))
    b = random_channel(x, RATE, np.random.default_rng([0, 3]))
    c = random_channel(x, RATE, np.random.default_rng([0, 4]))
    assert a.dtype == np.float32 and a.shape == x.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    outs = [random_channel(x, RATE, np.random.default_rng(s)) for s in range(40)]
    assert all(np.isfinite(o).all() and np.abs(o).max() <= 0.99 + 1e-6 for o in outs)
    peaks_db = 20 * np.log10([np.abs(o).max() / np.abs(x).max() for o in outs])
    assert peaks_db.min() < -12 and peaks_db.max() > -6  # the level varies over the draws
    assert np.array_equal(random_channel(np.zeros(100, np.float32), RATE, np.random.default_rng(0)), np.zeros(100))


def test_noise_hits_the_drawn_snr_and_reverb_adds_a_tail():
    x = _speechlike()
    rng = np.random.default_rng(7)
    y = noise(x.astype(np.float64), rng)
    snr_drawn = np.random.default_rng(7)  # replay the draws: spectrum, exponent, then the SNR
    snr_drawn.standard_normal(len(x))
    snr_drawn.uniform(0.0, 2.0)
    snr = snr_drawn.uniform(5.0, 35.0)
    active = np.abs(x) > 0.01
    measured = 10 * np.log10(np.square(x[active]).mean() / np.square(y - x).mean())
    assert abs(measured - snr) < 0.5
    burst = np.zeros(RATE, np.float64)
    burst[:240] = 1.0
    wet = reverb(burst, RATE, np.random.default_rng(2))
    assert len(wet) == RATE and np.square(wet[2400:]).sum() > 0  # energy well after the burst ended
    assert np.allclose(wet[:1], burst[:1])  # the direct path comes first, unchanged


def test_fixed_channels_for_the_benchmark():
    import pytest

    from kame.codec.embedded.channel import CHANNELS, apply_channel
    from kame.errors import ConfigError

    x = _speechlike()
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    assert np.array_equal(apply_channel("clean", x, RATE, rng()), x)
    assert np.allclose(apply_channel("quiet", x, RATE, rng()), 0.1 * x, atol=1e-7)
    for name in CHANNELS:
        y = apply_channel(name, x, RATE, rng())
        assert y.shape == x.shape and y.dtype == np.float32 and np.abs(y).max() <= np.abs(x).max() + 1e-6, name
        assert np.array_equal(y, apply_channel(name, x, RATE, rng())), name  # seeded
    t = np.arange(RATE) / RATE
    low = (0.5 * np.sin(2 * np.pi * 100 * t)).astype(np.float32)
    assert np.abs(apply_channel("phone", low, RATE, rng())[RATE // 2:]).max() < 0.1  # 100 Hz is below the band
    with pytest.raises(ConfigError, match="unknown channel 'tunnel'"):
        apply_channel("tunnel", x, RATE, rng())
