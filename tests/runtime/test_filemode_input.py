"""kame run's and kame client's input reader (kame.runtime.filemode.read_input)."""

import os
import threading

import numpy as np
import pytest
import soundfile as sf

from kame.runtime.filemode import read_input


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_pipe_is_read_like_a_file(tmp_path):
    """`kame client URL <(sox ...)` (was: a traceback: the file was opened twice, and a pipe
    gives its bytes once)."""
    src = tmp_path / "s.wav"
    sf.write(src, (0.1 * np.random.default_rng(0).standard_normal((44100, 2))).astype(np.float32), 44100)
    want = read_input(str(src))
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(src.read_bytes()))
    writer.start()
    got = read_input(str(fifo))
    writer.join()
    assert got[1] == want[1] == "resampled 44100 Hz -> 24 kHz; mixed 2 channels to mono"
    np.testing.assert_array_equal(got[0], want[0])
