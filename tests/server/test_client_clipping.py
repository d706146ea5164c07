"""kame client warns of a float input louder than full scale, as kame run does (was: clipped
silently as it was sent, 16-bit PCM or Opus, while kame run's summary warned of the same file)."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from kame.server.client import main

DEAD = "http://127.0.0.1:1"  # nothing listens on port 1: connecting fails at once (after the input is read)


def test_an_input_beyond_full_scale_is_warned_of_before_it_is_sent(tmp_path, capsys):
    t = np.arange(24000) / 24000
    loud, fine = tmp_path / "loud.wav", tmp_path / "fine.wav"
    sf.write(str(loud), (2.0 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 24000, subtype="FLOAT")
    sf.write(str(fine), (0.9 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 24000, subtype="FLOAT")
    assert main([DEAD, str(loud)]) == 1
    err = capsys.readouterr().err
    share = 100 * np.mean(np.abs(sf.read(str(loud))[0]) > 1.0)  # (about 2/3 of a sine peaking at 2)
    assert f"warning: {share:.2f} % of the input's samples exceeded full scale and are clipped as they are sent " \
           f"(the agent hears them clipped; kame run's agent hears them unclipped): scale {loud} down" in err, err
    assert main([DEAD, str(fine)]) == 1
    assert "full scale" not in capsys.readouterr().err
