"""kame client warns of an input louder than full scale, as kame run does (was: clipped silently
as it was sent, 16-bit PCM or Opus, while kame run's summary warned of the same file). The share
is of the samples as sent (mono, 24 kHz: a 16-bit file at full scale whose resampling overshoots
clips too), and the fix it gives scales in float by the figure it names (was: sox ... gain -n -1,
which clips a float file as it reads it: the "fixed" file was still clipped)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from kame.audio import clipped_share
from kame.runtime.filemode import read_input
from kame.server.client import main

DEAD = "http://127.0.0.1:1"  # nothing listens on port 1: connecting fails at once (after the input is read)


@pytest.mark.parametrize("rate,subtype,wave", [
    (24000, "FLOAT", lambda t: 2.0 * np.sin(2 * np.pi * 440 * t)),  # a float file beyond full scale
    (44100, "PCM_16", lambda t: np.sign(np.sin(2 * np.pi * 300 * t)) * 0.99997),  # at full scale, resampled
], ids=["float-loud", "16bit-hot-44k"])
def test_an_input_beyond_full_scale_is_warned_of_with_a_float_scaling_that_fixes_it(tmp_path, capsys, rate, subtype,
                                                                                     wave):
    loud = tmp_path / "loud.wav"
    sf.write(str(loud), wave(np.arange(rate) / rate).astype(np.float32), rate, subtype=subtype)
    assert main([DEAD, str(loud)]) == 1
    err = capsys.readouterr().err
    pcm, _ = read_input(str(loud))  # (as sent: mono, 24 kHz)
    over = 20 * np.log10(np.abs(pcm).max())
    assert f"warning: {100 * clipped_share(pcm):.2f} % of the input's samples (mono, at 24 kHz, as sent) exceed " \
           f"full scale, by up to {over:.3g} dB, and are clipped as they are sent (the agent hears them clipped; " \
           f"kame run's agent hears them unclipped): scale {loud} down in float" in err, err
    assert "gain -n" not in err, err
    [db] = re.findall(rf"e\.g\. ffmpeg -i {re.escape(str(loud))} -af volume=-(\d+\.\d)dB quieter\.wav$", err, re.M)
    # what ffmpeg's volume filter does (in float): scaled by that figure, nothing is clipped as sent
    data, _ = sf.read(str(loud), dtype="float64")
    quieter = tmp_path / "quieter.wav"
    sf.write(str(quieter), data * 10 ** (-float(db) / 20), rate, subtype="FLOAT")
    assert clipped_share(read_input(str(quieter))[0]) == 0.0


def test_an_input_within_full_scale_is_not_warned_of(tmp_path, capsys):
    fine = tmp_path / "fine.wav"
    sf.write(str(fine), (0.9 * np.sin(2 * np.pi * 440 * np.arange(24000) / 24000)).astype(np.float32), 24000,
             subtype="FLOAT")
    assert main([DEAD, str(fine)]) == 1
    assert "full scale" not in capsys.readouterr().err


def test_a_piped_input_is_told_a_conversion_that_reads_stdin(tmp_path, capsys):
    """The advice named the pipe's path (ffmpeg -i /dev/fd/63 ...), read once already: a pipe gets
    '... | ffmpeg -i -' (kame.audio.command_input, as read_wav's and check_wav_length's hints)."""
    import os
    import threading

    buf = tmp_path / "loud.wav"
    sf.write(buf, np.full(2400, 1.5, np.float32), 24000, subtype="FLOAT")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    threading.Thread(target=lambda: fifo.write_bytes(buf.read_bytes()), daemon=True).start()
    main(["http://127.0.0.1:1/", str(fifo), "-o", str(tmp_path / "out.wav")])  # (no server: the warning comes first)
    err = capsys.readouterr().err
    assert "e.g. ... | ffmpeg -i - -af volume=" in err and f"ffmpeg -i {fifo}" not in err, err


def test_an_overshoot_under_a_hundredth_of_a_db_is_not_said_to_be_zero(tmp_path, capsys):
    """(review r9: a float file peaking at 1.0003, 0.0026 dB over: "by up to 0.0 dB", then "0.00 dB")"""
    f = tmp_path / "hot.wav"
    sf.write(f, np.full(2400, 1.0003, np.float32), 24000, subtype="FLOAT")
    main(["http://127.0.0.1:1/", str(f), "-o", str(tmp_path / "out.wav")])  # (no server: the warning comes first)
    err = capsys.readouterr().err
    assert "by up to 0.00261 dB" in err, err
