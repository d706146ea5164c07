"""kame.audio as a user meets it through `kame codec roundtrip` and the API: audio that cannot be
right (NaN samples, int16 values, [channels, T] arrays, sample rates that are not rates) is an
AudioFormatError naming the file, never a traceback or a silently wrong file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from kame.audio import read_wav, resample, write_wav
from kame.cli import main
from kame.errors import AudioFormatError

TONE = (0.3 * np.sin(2 * np.pi * 150 * np.arange(4800) / 24000)).astype(np.float32)


def test_read_refuses_nan_samples_naming_the_file(tmp_path, capsys):
    bad = TONE.copy()
    bad[100] = np.nan
    src = tmp_path / "nan.wav"
    sf.write(src, bad, 24000, subtype="FLOAT")
    with pytest.raises(AudioFormatError, match=r"nan\.wav: audio contains NaN or infinite samples"):
        read_wav(src)
    assert main(["codec", "roundtrip", str(src), "-o", str(tmp_path / "o.wav")]) == 1
    assert "nan.wav: audio contains NaN or infinite samples" in capsys.readouterr().err
    # int16 values saved as floats: the file is named (was: "encode: samples reach 9830.4", after the
    # codec loaded); a float file a little over full scale is audio and is read
    loud = tmp_path / "loud.wav"
    sf.write(loud, TONE * 32768, 24000, subtype="FLOAT")
    with pytest.raises(AudioFormatError, match=r"loud\.wav: samples reach 9830\.4, expected float audio in \[-1, 1\] \(int16 samples\? divide"):
        read_wav(loud)
    assert main(["codec", "roundtrip", str(loud), "-o", str(tmp_path / "o.wav")]) == 1
    assert "loud.wav: samples reach 9830.4" in capsys.readouterr().err
    sf.write(loud, TONE * 4, 24000, subtype="FLOAT")
    assert np.abs(read_wav(loud)[0]).max() == pytest.approx(1.2, rel=1e-3)


def test_sample_rates_must_be_rates(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, TONE, 24000)
    with pytest.raises(AudioFormatError, match="no audio file given"):
        read_wav("")  # was "'.' is a folder"
    for bad in (0, -1, 1.5, "24000", True):  # were ValueError / TypeError from scipy
        with pytest.raises(AudioFormatError, match=rf"sample rate must be a positive whole number of Hz, got {bad!r}"):
            read_wav(src, bad)
    pcm, rate = read_wav(src, 16000.0)  # a whole float (some libraries give rates as floats)
    assert rate == 16000 and type(rate) is int and len(pcm) == 3200
    assert resample(TONE, 24000.0, 12000).shape == (2400,)
    with pytest.raises(AudioFormatError, match="source sample rate"):
        resample(TONE, 0, 24000)
    odd = tmp_path / "1hz.wav"
    sf.write(odd, TONE[:100], 1)  # a damaged header: was "resampled" into 100 s of audio
    with pytest.raises(AudioFormatError, match=r"1hz\.wav says its sample rate is 1 Hz \(below 4000\)"):
        read_wav(odd)
    sf.write(odd, TONE, 8000)  # telephone audio is fine
    assert read_wav(odd)[1] == 24000


@pytest.mark.parametrize("pcm, message", [
    (np.stack([TONE, TONE]), r"got shape \(2, 4800\) \(channels first\? transpose it\)"),  # was "Format not recognised"
    (TONE[None], r"got shape \(1, 4800\)"),  # was written as a file of 4800 channels and 1 frame
    (np.full(100, np.nan, np.float32), "NaN or infinite"),  # was written as full-scale -1
    ((TONE * 32767).astype(np.int16), "got dtype int16 .*divide them by 32768"),  # was clipped to a square wave
    (TONE * 32767, "samples reach 9830"),
])
def test_write_refuses_audio_it_would_write_wrongly(tmp_path, pcm, message):
    out = tmp_path / "out.wav"
    with pytest.raises(AudioFormatError, match=message):
        write_wav(out, pcm, 24000)
    assert list(tmp_path.iterdir()) == []


def test_write_takes_stereo_and_a_whole_float_rate(tmp_path):
    out = tmp_path / "out.wav"
    write_wav(out, np.stack([TONE, TONE], 1), 24000.0)
    info = sf.info(out)
    assert (info.channels, info.frames, info.samplerate) == (2, 4800, 24000)
    with pytest.raises(AudioFormatError, match="sample rate must be a positive whole number"):
        write_wav(out, TONE, 0)  # was libsndfile's "SF_INFO struct incomplete"
