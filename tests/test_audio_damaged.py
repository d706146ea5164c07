"""read_wav on damaged or foreign files: a WAV whose header was never finished (a recording not
closed: its data chunk declares fewer bytes than follow, and those are no RIFF chunk) is read as
libsndfile reads it but warned of, naming both lengths (was: read as its first 10 ms, silently);
a cut FLAC or Ogg says it may be truncated or damaged, and a format libsndfile does not know (an
.m4a voice memo, a text file) says which formats kame reads and how to convert (was: libsndfile's
words alone)."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pytest
import soundfile as sf

from kame.audio import read_wav
from kame.errors import AudioFormatError

RATE = 24000
PCM = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE) * 32767).astype("<i2").tobytes()  # 1 s, 48000 bytes
FMT = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, RATE, 2 * RATE, 2, 16)


def wav(path, declared: int, audio: bytes = PCM, after: bytes = b"", riff: int | None = None) -> str:
    """A 16-bit mono WAV whose data chunk declares ``declared`` bytes, holding ``audio`` then ``after``."""
    body = b"WAVE" + FMT + struct.pack("<4sI", b"data", declared) + audio + after
    path.write_bytes(struct.pack("<4sI", b"RIFF", len(body) if riff is None else riff) + body)
    return str(path)


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "kame.audio"]


def test_a_recording_never_closed_is_warned_of_with_both_lengths(tmp_path, caplog):
    f = wav(tmp_path / "rec.wav", 480)  # (Python's wave, killed before close(): the first chunk's size)
    with caplog.at_level(logging.WARNING, logger="kame.audio"):
        pcm, _ = read_wav(f)
    assert len(pcm) == 240  # (read as libsndfile reads it: the declared part)
    [w] = warnings(caplog)
    assert f"audio file {f}: its header declares 480 bytes of audio (0.01 s), yet the file holds 48000 after " \
           f"the header (1.00 s)" in w and "never closed" in w and "sox --ignore-length" in w, w


@pytest.mark.parametrize("after", [
    struct.pack("<4sI", b"LIST", 10) + b"INFOISFT\0\0",  # a LIST after the data: normal
    struct.pack("<4sI", b"id3 ", 3) + b"abc\0",  # an odd-sized chunk, padded
    b"\0",  # a pad byte
])
def test_a_chunk_after_the_data_is_normal(tmp_path, caplog, after):
    f = wav(tmp_path / "ok.wav", len(PCM), after=after)
    with caplog.at_level(logging.WARNING, logger="kame.audio"):
        pcm, _ = read_wav(f)
    assert len(pcm) == RATE and warnings(caplog) == []


def test_a_size_0_is_a_placeholder_only_as_libsndfile_takes_it(tmp_path, caplog):
    """libsndfile reads its own piped output (RIFF size 8, data size 0) to the end; a data size of
    0 under a true RIFF size it reads as no samples: warned of, then refused as empty."""
    with caplog.at_level(logging.WARNING, logger="kame.audio"):
        pcm, _ = read_wav(wav(tmp_path / "piped.wav", 0, riff=8))
    assert len(pcm) == RATE and warnings(caplog) == []
    f = wav(tmp_path / "zero.wav", 0)
    with caplog.at_level(logging.WARNING, logger="kame.audio"), pytest.raises(AudioFormatError, match="holds no samples"):
        read_wav(f)
    [w] = warnings(caplog)
    assert "declares 0 bytes of audio (0.00 s), yet the file holds 48000 after the header (1.00 s)" in w, w


@pytest.mark.parametrize("fmt,ext", [("FLAC", "flac"), ("OGG", "ogg")])
def test_a_cut_flac_or_ogg_may_be_truncated_or_damaged(tmp_path, fmt, ext):
    whole = tmp_path / f"whole.{ext}"
    sf.write(str(whole), np.frombuffer(PCM, "<i2") / 32768, RATE, format=fmt)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(AudioFormatError, match=rf"^cannot read audio file {cut}: .+ \({cut} may be truncated or "
                                               rf"damaged\)$"):
        read_wav(cut)


@pytest.mark.parametrize("name,data,out", [
    ("memo.m4a", b"\0\0\0\x1cftypM4A \0\0\0\0M4A isom" + bytes(64), "memo.wav"),
    ("notes.wav", b"this is text, not audio\n" * 4, "notes-converted.wav"),  # (not the file itself)
], ids=["m4a", "text"])
def test_a_format_kame_does_not_read_says_which_it_reads_and_how_to_convert(tmp_path, name, data, out):
    f = tmp_path / name
    f.write_bytes(data)
    with pytest.raises(AudioFormatError) as exc:
        read_wav(f)
    text = str(exc.value)
    assert text.startswith(f"cannot read audio file {f}: ") and "Format not recognised" in text, text
    assert "it reads WAV, FLAC, Ogg (Vorbis or Opus), MP3, AIFF" in text, text
    assert text.endswith(f"convert it first, e.g. ffmpeg -i {f} {tmp_path / out})"), text
