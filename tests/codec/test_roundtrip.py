"""`kame codec roundtrip`: any input rate/channels in, codec-rate wav out, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from kame.cli import main


def test_roundtrip_resamples_and_writes(tmp_path, capsys):
    rate = 16000
    t = np.arange(int(1.3 * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    src = tmp_path / "in.wav"
    sf.write(src, np.stack([tone, tone], 1), rate)  # stereo at 16 kHz
    out = tmp_path / "out.wav"
    assert main(["codec", "roundtrip", str(src), "-o", str(out), "--codec", "embedded", "--streaming"]) == 0
    y, r = sf.read(out)
    assert r == 24000 and y.ndim == 1
    assert len(y) == 31200  # 1.3 s at 24 kHz: as long as the input (was: 17 whole frames, 32640)
    assert 0.01 < np.abs(y).max() < 1.0
    assert "kbps" in capsys.readouterr().out
    out3 = tmp_path / "out3.wav"
    assert main(["codec", "roundtrip", str(src), "-o", str(out3), "--codebooks", "3"]) == 0
    assert sf.info(out3).frames == 31200


def test_roundtrip_errors(tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert main(["codec", "roundtrip", str(tmp_path / "missing.wav"), "-o", str(out)]) == 1
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    assert main(["codec", "roundtrip", str(bad), "-o", str(out)]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["codec", "roundtrip", str(bad), "-o", str(out), "--codec", "nosuchcodec"]) == 1
    assert "unknown codec spec" in capsys.readouterr().err
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 24000)
    assert main(["codec", "roundtrip", str(empty), "-o", str(out)]) == 1
    assert "holds no samples" in capsys.readouterr().err
    assert not out.exists()


def test_roundtrip_output_types_and_output_errors(tmp_path, capsys):
    src = tmp_path / "in.wav"
    sf.write(src, 0.3 * np.sin(2 * np.pi * 150 * np.arange(24000) / 24000), 24000)
    before = src.read_bytes()
    assert main(["codec", "roundtrip", str(src), "-o", str(src)]) == 1  # would overwrite the input
    assert "is the input file" in capsys.readouterr().err and src.read_bytes() == before
    for name in ("out.flac", "out.ogg", "out.mp3"):  # the type follows the extension
        assert main(["codec", "roundtrip", str(src), "-o", str(tmp_path / name)]) == 0
        info = sf.info(tmp_path / name)
        assert info.samplerate == 24000 and info.format == name.split(".")[1].upper()
    capsys.readouterr()
    assert main(["codec", "roundtrip", str(src), "-o", str(tmp_path / "new" / "out.xyz")]) == 1
    assert "unknown file type '.xyz'" in capsys.readouterr().err and not (tmp_path / "new").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["codec", "roundtrip", str(src), "-o", str(blocker / "out.wav")]) == 1  # its folder is a file
    assert "cannot create its folder" in capsys.readouterr().err
    (tmp_path / "d.wav").mkdir()
    for folder in (tmp_path, tmp_path / "d.wav"):  # refused before the round trip, as kame run does
        assert main(["codec", "roundtrip", str(src), "-o", str(folder)]) == 1
        assert "is a folder, cannot write a file there" in capsys.readouterr().err
    assert main(["codec", "roundtrip", str(src), "-o", str(tmp_path / "o.wav"), "--codebooks", "9"]) == 1
    assert "--codebooks 9: num_codebooks must be an int in [1, 8]" in capsys.readouterr().err


def test_a_failed_write_leaves_an_existing_file_alone(tmp_path):
    from kame.audio import write_wav
    from kame.errors import KameError

    out = tmp_path / "out.opus"
    write_wav(out, np.zeros(2400, np.float32), 24000)
    before = out.read_bytes()
    with pytest.raises(KameError, match="cannot write audio file"):
        write_wav(out, np.zeros(4410, np.float32), 44100)  # Opus has no 44.1 kHz
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.opus"]


def test_roundtrip_codebooks_up_to_what_the_codec_takes(tmp_path, capsys):
    """--codebooks is bounded by the codec (set_num_codebooks), not by its current count: Mimi
    codes with up to its quantizer's codebooks, more than the 8 it starts with."""
    src = tmp_path / "in.wav"
    sf.write(src, 0.3 * np.sin(2 * np.pi * 150 * np.arange(24000) / 24000), 24000)
    out = tmp_path / "o.wav"
    assert main(["codec", "roundtrip", str(src), "-o", str(out), "--codec", "mimi:random-tiny", "--codebooks", "12"]) == 0
    assert "x 12 codebooks" in capsys.readouterr().out and sf.info(out).frames == 24000


def test_roundtrip_codes_with_the_codebooks_the_codec_is_set_to(tmp_path, capsys):
    """roundtrip() takes the codec as set (set_num_codebooks, once: by the command); a
    --codebooks below 1 is refused as the options are parsed, one above what the codec takes
    once it is loaded."""
    from kame import registry
    from kame.codec.roundtrip import roundtrip

    codec = registry.create("codec", "embedded")
    codec.set_num_codebooks(3)
    pcm = 0.3 * np.sin(2 * np.pi * 150 * np.arange(24000) / 24000)
    for streaming in (False, True):
        out, codes = roundtrip(codec, pcm, streaming=streaming)
        assert codes.shape == (1, 3, 13) and out.shape == (24000,)
    src = tmp_path / "in.wav"
    sf.write(src, pcm, 24000)
    assert main(["codec", "roundtrip", str(src), "-o", str(tmp_path / "o.wav"), "--codebooks", "3", "--streaming"]) == 0
    assert "x 3 codebooks" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["codec", "roundtrip", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o.wav"), "--codebooks", "0"])
    assert "argument --codebooks: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["codec", "roundtrip", str(src), "-o", str(tmp_path / "o.wav"), "--codebooks", "9"]) == 1
    assert "--codebooks 9: num_codebooks must be an int in [1, 8], got 9" in capsys.readouterr().err


def test_the_input_is_read_before_the_codec_loads(tmp_path, capsys, monkeypatch):
    # the codec was loaded first: `--codec mimi` downloaded 385 MB before "audio file not found"
    from kame import registry

    monkeypatch.setattr(registry, "create", lambda *a, **k: pytest.fail("the codec was loaded first"))
    for name, content, message in (("missing.wav", None, "audio file not found"),
                                   ("text.wav", b"not audio", "cannot read audio file")):
        if content is not None:
            (tmp_path / name).write_bytes(content)
        assert main(["codec", "roundtrip", str(tmp_path / name), "-o", str(tmp_path / "o.wav"), "--codec", "mimi"]) == 1
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("streaming", [False, True])
def test_roundtrip_output_is_aligned_with_the_input(streaming):
    """The codec's delay is taken off (was: the embedded codec's output came 480 samples late), and
    the input's last samples are decoded too: a tone that starts at 0.5 s starts there in the
    output."""
    from kame import registry
    from kame.codec.roundtrip import roundtrip

    codec = registry.create("codec", "embedded")
    t = np.arange(36000) / 24000
    x = np.where(t >= 0.5, 0.3 * sum(np.sin(2 * np.pi * k * 140 * t) / k for k in range(1, 6)), 0).astype(np.float32)
    y, _ = roundtrip(codec, x, streaming=streaming)
    onset = int(np.argmax(np.abs(y) > 0.1 * np.abs(y).max()))
    assert len(y) == len(x) and abs(onset - 12000) < 240, onset
    assert np.abs(y[-2400:]).max() > 0.05  # the tone goes on to the end


def test_roundtrip_says_one_frame_and_sets_its_threads(tmp_path, capsys):
    # (was: "1 frames"; and it ran on all of torch's threads)
    import os

    import torch

    src = tmp_path / "short.wav"
    sf.write(src, 0.1 * np.sin(np.arange(1200) / 3), 24000)  # 50 ms: one frame
    before = torch.get_num_threads()
    try:
        two = min(2, os.cpu_count() or 1)
        assert main(["codec", "roundtrip", str(src), "-o", str(tmp_path / "o.wav"), "--threads", str(two)]) == 0
        assert torch.get_num_threads() == two
        assert main(["codec", "roundtrip", str(src), "-o", str(tmp_path / "o.wav")]) == 0
        assert torch.get_num_threads() == 1  # the default
    finally:
        torch.set_num_threads(before)
    assert "-> 1 frame x 8 codebooks" in capsys.readouterr().out


def test_the_temporary_a_killed_run_left_beside_its_output_is_removed(tmp_path, capsys):
    """A run killed outright (SIGKILL) as it wrote -o leaves .NAME.RANDOM.tmp beside it: the next
    run writing it removes that one when an hour old, and says so on stderr; a fresh one, a user's
    look-alikes and another file's temporary are left (was: never removed)."""
    from tests.train._stale import check_swept, plant

    src, out = tmp_path / "in.wav", tmp_path / "music" / "out.wav"
    sf.write(src, np.zeros(2400, np.float32), 24000)
    stale, kept = plant(out.parent, out.name)
    assert main(["codec", "roundtrip", str(src), "-o", str(out)]) == 0 and out.is_file()
    check_swept("kame codec roundtrip", stale, kept, capsys.readouterr().err)
