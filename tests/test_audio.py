"""kame.audio.ChunkResampler: a stream resampled chunk by chunk equals the whole signal resampled."""

import numpy as np
import pytest
from scipy.signal import resample_poly

from kame.audio import ChunkResampler, resample
from kame.errors import AudioFormatError


def _chunked(rs, x, sizes):
    """rs over x cut at ``sizes`` (the last piece flushes): the outputs, one per call."""
    cuts = np.cumsum(sizes)
    pieces = np.split(x, cuts[cuts < len(x)])
    return [rs(p, last=k == len(pieces) - 1) for k, p in enumerate(pieces)]


def test_chunk_resampler_equals_resampling_the_whole_signal():
    rng = np.random.default_rng(0)
    for src in (16000, 22050, 24000, 48000):
        x = (0.3 * rng.standard_normal(src // 2)).astype(np.float32)
        for size in (1, 333, 4000):
            rs = ChunkResampler(src, 24000)
            starts = range(0, len(x), size)
            got = np.concatenate([rs(x[i:i + size], last=i == starts[-1]) for i in starts])
            np.testing.assert_allclose(got, resample(x, src, 24000), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_chunk_resampler_24k_to_16k_random_chunks_equals_resample_poly(seed):
    """The VAD's/STT's conversion: any cut of the stream (empty and 1-sample pieces included)
    gives scipy.signal.resample_poly of the whole signal, sample for sample."""
    rng = np.random.default_rng(seed)
    x = (0.3 * rng.standard_normal(24000 + int(rng.integers(0, 3)))).astype(np.float32)
    sizes = rng.choice([0, 1, 2, 3, 17, 500, 1920, 4001], size=len(x))
    outs = _chunked(ChunkResampler(24000, 16000), x, sizes)
    want = resample_poly(x.astype(np.float64), 2, 3)
    got = np.concatenate(outs)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_chunk_resampler_lag_times_each_output_and_bounds_the_latency():
    """``t - lag / src`` (read before a call) is the time of that call's first output sample;
    the output is never held back by more than ``pad`` input samples (+ one output step)."""
    rng = np.random.default_rng(1)
    rs = ChunkResampler(24000, 16000)
    assert rs.pad == 16 and rs.lag == 0
    n_in = n_out = 0
    for size in rng.integers(0, 3000, size=60):
        t = n_in / 24000
        t_first = t - rs.lag / 24000
        out = rs(np.zeros(size, np.float32))
        assert t_first == pytest.approx(n_out / 16000, abs=1e-12)
        n_in, n_out = n_in + size, n_out + len(out)
        assert n_in - rs.pad - 1.5 < n_out * 1.5 <= n_in - rs.pad or n_in < rs.pad
        assert rs.pad <= rs.lag < rs.pad + 1.5 or n_in < rs.pad
    assert len(rs(np.zeros(0, np.float32), last=True)) == -(-n_in * 2 // 3) - n_out  # the flush: the rest


def test_chunk_resampler_same_rate_passes_through_and_bad_rates_are_named():
    rs = ChunkResampler(24000, 24000)
    x = np.arange(5, dtype=np.float32)
    assert rs(x) is x and rs.lag == 0
    with pytest.raises(AudioFormatError, match="target sample rate must be a positive whole number of Hz, got 0"):
        ChunkResampler(24000, 0)


def test_channels_that_cancel_in_the_mono_mix_are_warned_of(tmp_path, caplog):
    """A stereo file whose channels are out of phase mixes to silence: said (was: silent output,
    no word), the mix still returned; ordinary stereo says nothing."""
    import logging

    import soundfile as sf

    from kame.audio import read_wav

    a = (0.3 * np.sin(np.arange(24000) / 24000 * 2 * np.pi * 220)).astype(np.float32)
    sf.write(tmp_path / "inv.wav", np.stack([a, -a], axis=1), 24000)
    sf.write(tmp_path / "ok.wav", np.stack([a, 0.5 * a], axis=1), 24000)
    with caplog.at_level(logging.WARNING, "kame.audio"):
        pcm, _ = read_wav(tmp_path / "ok.wav")
        assert not caplog.records
        pcm, _ = read_wav(tmp_path / "inv.wav")
    assert np.abs(pcm).max() < 1e-4  # (16-bit rounding)
    (r,) = caplog.records
    assert "its 2 channels cancel out when mixed to mono" in r.getMessage() and "give one channel" in r.getMessage()


def test_kame_run_warns_of_channels_that_cancel_too(tmp_path, caplog):
    """kame run's input is mixed by the same function (it mixed with its own mean: no warning)."""
    import logging

    import soundfile as sf

    from kame.runtime.filemode import read_input

    a = (0.3 * np.sin(np.arange(24000) / 24000 * 2 * np.pi * 220)).astype(np.float32)
    sf.write(tmp_path / "inv.wav", np.stack([a, -a], axis=1), 24000)
    with caplog.at_level(logging.WARNING, "kame.audio"):
        pcm, note = read_input(str(tmp_path / "inv.wav"))
    assert note == "mixed 2 channels to mono" and np.abs(pcm).max() < 1e-4
    assert ["cancel out when mixed to mono" in r.getMessage() for r in caplog.records] == [True]


def _wav_claiming(tmp_path, rate: int):
    """A 0.1 s 24 kHz wav whose header's sample rate field says ``rate`` (a damaged or hand-made header)."""
    import struct

    import soundfile as sf

    path = tmp_path / f"rate_{rate}.wav"
    sf.write(path, (0.1 * np.sin(np.arange(2400) / 10)).astype(np.float32), 24000, subtype="PCM_16")
    b = bytearray(path.read_bytes())
    b[24:28] = struct.pack("<I", rate)
    path.write_bytes(bytes(b))
    return path


def test_a_header_claiming_a_huge_sample_rate_is_refused(tmp_path):
    """(was: a MemoryError traceback from resample's 298 GiB filter at 1999999973 Hz, gigabytes at
    10 MHz, a 1-sample "audio" at 2 GHz) Refused as a rate below MIN_FILE_RATE is; 768 kHz (and
    the studio rates below it) still read."""
    from kame.audio import MAX_FILE_RATE, read_wav

    for rate in (1999999973, 2000000000, MAX_FILE_RATE + 1):
        path = _wav_claiming(tmp_path, rate)
        with pytest.raises(AudioFormatError, match=rf"rate_{rate}.wav says its sample rate is {rate} Hz "
                                                   rf"\(above {MAX_FILE_RATE}\): a damaged header, or not audio"):
            read_wav(path, None)
    for rate in (384000, MAX_FILE_RATE):
        pcm, got = read_wav(_wav_claiming(tmp_path, rate), None)
        assert got == rate and pcm.shape == (2400,)


def test_resampling_an_awkward_rate_builds_a_bounded_filter(monkeypatch):
    """383999 Hz and 24 kHz are coprime: scipy's filter would have 20 * 383999 taps (1000003 Hz:
    9 s and 1.25 GB). The ratio is approximated to factors of at most MAX_RESAMPLE_FACTOR (1/16
    here: a tone keeps its pitch); ChunkResampler uses the same (its filter too)."""
    import scipy.signal

    from kame.audio import MAX_RESAMPLE_FACTOR

    real, seen = scipy.signal.resample_poly, []

    def spy(x, up, down, **kw):
        seen.append((up, down))
        assert max(up, down) <= MAX_RESAMPLE_FACTOR, f"a filter of {20 * max(up, down) + 1} taps"
        return real(x, up, down, **kw)

    monkeypatch.setattr(scipy.signal, "resample_poly", spy)
    src = 383999
    x = np.sin(2 * np.pi * 1000 * np.arange(src // 4) / src).astype(np.float32)  # 1 kHz, 0.25 s
    y = resample(x, src, 24000)
    assert seen == [(1, 16)] and len(y) == -(-len(x) // 16)
    spectrum = np.abs(np.fft.rfft(y[:6000]))
    assert np.argmax(spectrum) * 24000 / 6000 == 1000  # the tone, at its pitch
    rs = ChunkResampler(src, 24000)
    assert len(rs.taps) <= 20 * MAX_RESAMPLE_FACTOR + 1
    got = np.concatenate([rs(x[i:i + 5000], last=i + 5000 >= len(x)) for i in range(0, len(x), 5000)])
    np.testing.assert_allclose(got, y, atol=1e-6)


def test_common_rates_resample_exactly_as_before_and_absurd_ratios_are_refused():
    """Every common rate keeps its exact ratio (the output is scipy's, bit for bit); a ratio that
    no bounded filter approximates (24 kHz from 1 Hz) is an AudioFormatError naming both rates."""
    from scipy.signal import resample_poly

    x = (0.3 * np.random.default_rng(2).standard_normal(4000)).astype(np.float32)
    for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000, 352800, 384000):
        for dst in (24000, 16000):
            g = np.gcd(rate, dst)
            want = resample_poly(x.astype(np.float64), dst // g, rate // g).astype(np.float32)
            assert np.array_equal(resample(x, rate, dst), want), (rate, dst)
    for src, dst in ((24000, 5), (1, 24000)):
        with pytest.raises(AudioFormatError, match=rf"cannot resample {src} Hz to {dst} Hz: a ratio of more than"):
            resample(x[:10], src, dst)
        with pytest.raises(AudioFormatError, match=rf"cannot resample {src} Hz to {dst} Hz"):
            ChunkResampler(src, dst)
