"""Recording channels: a room, noise, a microphone's frequency response and level, applied to
clean speech. Used to fit the embedded codec on more than clean speech (`kame codec fit
--augment`) and to measure what each costs it (`kame bench codec-quality --channel NAME`).

kame fits the embedded codec on speech it synthesizes: clean, at one level, with the full
24 kHz band. A microphone adds a room (reverberation), background noise, a frequency response
and an arbitrary level, and a codebook fitted only on clean speech codes such input badly
(BENCHMARKS.md, "Real recordings and recording channels"). ``random_channel`` passes a clip through
a random such channel so the codebooks also cover it; ``CHANNELS`` are fixed ones for the
benchmark. Every random draw comes from the numpy Generator given, so a fit stays repeatable
for its seed.

    rng = np.random.default_rng(0)
    y = random_channel(pcm, 24000, rng)              # float32 [T] -> float32 [T], peak <= 0.99
    y = apply_channel("room", pcm, 24000, rng)       # one of CHANNELS
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

# probability of each effect on a clip that is augmented (independent draws)
P_TILT, P_BAND, P_REVERB, P_NOISE = 0.7, 0.4, 0.5, 0.5


def tilt(x: np.ndarray, rng: np.random.Generator, a: float | None = None, bright: bool | None = None) -> np.ndarray:
    """First-order tilt: pre-emphasis by a (brighter) or a one-pole low-pass at a (darker);
    a in 0..0.9 and the direction drawn when not given."""
    a = rng.uniform(0.0, 0.9) if a is None else a
    bright = rng.random() < 0.5 if bright is None else bright
    if bright:
        return lfilter([1.0, -a], [1.0], x)
    return lfilter([1.0 - a], [1.0, -a], x)


def band(x: np.ndarray, rate: int, rng: np.random.Generator | None = None,
         highpass: float | None = None, lowpass: float | None = None) -> np.ndarray:
    """A microphone/telephone pass band: high-pass at ``highpass`` Hz and/or low-pass at
    ``lowpass`` Hz. With ``rng``, each is drawn instead (high-pass 50-300 Hz with p 0.5,
    low-pass 3.4-11 kHz with p 0.7)."""
    if rng is not None:
        highpass = rng.uniform(50.0, 300.0) if rng.random() < 0.5 else None
        lowpass = rng.uniform(3400.0, min(11000.0, 0.46 * rate)) if rng.random() < 0.7 else None
    if highpass:
        x = sosfilt(butter(2, highpass, "highpass", fs=rate, output="sos"), x)
    if lowpass:
        x = sosfilt(butter(6, lowpass, "lowpass", fs=rate, output="sos"), x)
    return x


def reverb(x: np.ndarray, rate: int, rng: np.random.Generator, rt60: float | None = None,
           drr_db: float | None = None) -> np.ndarray:
    """A synthetic room: direct path + exponentially decaying noise tail, darker as it decays,
    after a 2-20 ms pre-delay. RT60 (0.1-0.8 s) and direct-to-reverberant ratio (-3..+12 dB)
    drawn when not given; the tail is always drawn from rng."""
    rt60 = rng.uniform(0.1, 0.8) if rt60 is None else rt60
    n = int(rt60 * rate)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # [n]
    tail = lfilter([0.5], [1.0, -0.5], tail)  # air/wall absorption: a softer top
    tail[: int(rng.uniform(0.002, 0.02) * rate)] = 0.0  # pre-delay before the first reflections
    drr_db = rng.uniform(-3.0, 12.0) if drr_db is None else drr_db
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(float(np.square(tail).sum()), 1e-12))
    h = np.concatenate([[1.0], tail[1:]])
    return fftconvolve(x, h)[: len(x)]


def noise(x: np.ndarray, rng: np.random.Generator, snr_db: float | None = None,
          slope: float | None = None) -> np.ndarray:
    """Stationary coloured noise (power spectrum ~ f^-slope: 0 white, 1 pink, 2 brown; drawn in
    0..2 when not given) at an SNR (5-35 dB when not given) against the speech (samples above
    -40 dBFS)."""
    n = len(x)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.arange(len(spec)), 1.0)
    slope = rng.uniform(0.0, 2.0) if slope is None else slope
    w = np.fft.irfft(spec * f ** (-slope / 2), n)
    active = np.abs(x) > 0.01
    p_speech = float(np.square(x[active]).mean()) if active.any() else float(np.square(x).mean())
    snr_db = rng.uniform(5.0, 35.0) if snr_db is None else snr_db
    return x + w * np.sqrt(p_speech / 10 ** (snr_db / 10) / max(float(np.square(w).mean()), 1e-20))


def _level(x: np.ndarray, ref_peak: float, gain_db: float) -> np.ndarray:
    """x scaled so its peak is gain_db relative to ref_peak, and at most 0.99."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 0:
        x = x * (10 ** (gain_db / 20) * ref_peak / peak)
        x *= min(1.0, 0.99 / max(float(np.abs(x).max()), 1e-12))
    return x


def random_channel(pcm: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """pcm float [T] -> float32 [T] through a random channel: each of tilt, pass band, room and
    noise with its own probability, then a level change of -24..+3 dB (peak kept <= 0.99)."""
    x = pcm.astype(np.float64)
    if rng.random() < P_TILT:
        x = tilt(x, rng)
    if rng.random() < P_BAND:
        x = band(x, rate, rng)
    if rng.random() < P_REVERB:
        x = reverb(x, rate, rng)
    if rng.random() < P_NOISE:
        x = noise(x, rng)
    if x.size and np.abs(x).max() > 0:
        x = _level(x, float(np.abs(pcm).max()), rng.uniform(-24.0, 3.0))
    return x.astype(np.float32)


# fixed channels for `kame bench codec-quality --channel NAME`: (x float64, rate, rng) -> x
CHANNELS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "clean": lambda x, rate, rng: x,
    "room": lambda x, rate, rng: reverb(x, rate, rng, rt60=0.4, drr_db=6.0),  # a living room, 1-2 m away
    "noise": lambda x, rate, rng: noise(x, rng, snr_db=20.0, slope=1.0),  # pink noise, 20 dB SNR
    "bright": lambda x, rate, rng: tilt(x, rng, a=0.9, bright=True),  # +6 dB/octave above ~1 kHz
    "dark": lambda x, rate, rng: tilt(x, rng, a=0.7, bright=False),  # a muffled microphone
    "phone": lambda x, rate, rng: band(x, rate, highpass=300.0, lowpass=3400.0),  # telephone band
    "quiet": lambda x, rate, rng: x * 10 ** (-20 / 20),  # 20 dB below the synthesized level
}


def apply_channel(name: str, pcm: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """pcm float [T] -> float32 [T] through CHANNELS[name]; a louder result is scaled back to the
    input's peak (at most 0.99), a quieter one is left quiet."""
    from ...errors import ConfigError

    if name not in CHANNELS:
        raise ConfigError(f"unknown channel {name!r}; known: {', '.join(CHANNELS)}")
    y = CHANNELS[name](pcm.astype(np.float64), rate, rng)
    ref = float(np.abs(pcm).max()) if pcm.size else 0.0
    if y.size and np.abs(y).max() > ref > 0:
        y = _level(y, ref, 0.0)
    return y.astype(np.float32)
