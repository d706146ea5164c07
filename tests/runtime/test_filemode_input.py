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


def test_first_ctrl_c_sets_the_event_a_second_quits_at_once_even_when_the_loop_is_busy():
    """(was: loop.add_signal_handler: both presses queued behind busy synchronous code, so the
    second never quit; and it replaced an ignored SIGINT, restoring Python's default after)"""
    import asyncio
    import signal
    import time

    from kame.runtime.filemode import first_ctrl_c

    async def run():
        async with first_ctrl_c("testing") as stop:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.05)
            assert stop.is_set()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 5:  # busy: the loop runs no callback meanwhile
                    pass
        return signal.getsignal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    assert asyncio.run(run()) is not None and signal.getsignal(signal.SIGINT) is before
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # `cmd &` in a script: left alone
    try:
        async def ignored():
            async with first_ctrl_c("testing"):
                return signal.getsignal(signal.SIGINT)
        assert asyncio.run(ignored()) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
