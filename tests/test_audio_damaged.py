"""read_wav on damaged or foreign files: a WAV whose header was never finished (a recording not
closed: its data chunk declares fewer bytes than follow, and those are no RIFF chunk and at least
0.1 s of audio) is read as libsndfile reads it but warned of, naming both lengths (was: read as its
first 10 ms, silently; then also warned of for an ID3v1 tag, padding or a cut chunk after whole
audio); a cut FLAC or Ogg says it may be truncated or damaged, and a format or an encoding
libsndfile does not read (an .m4a voice memo, a text file, a WAV of another codec) says which
formats kame reads and how to convert (was: libsndfile's words alone; then "damaged" for every
code above 4). A pipe (/dev/stdin, <(...)) is read as the file it carries (was: a piped FLAC
"damaged", a piped Ogg numpy's "array is too big"). Every command's input --help lists the formats
read_wav reads (READ_FORMATS; was: its own list, without AIFF)."""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import struct
import threading

import numpy as np
import pytest
import soundfile as sf

from kame.audio import READ_FORMATS, read_wav
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


@pytest.mark.parametrize("after", [
    b"TAG" + b"Some title".ljust(30, b"\0") + b"Artist".ljust(30, b"\0") + bytes(65),  # an ID3v1 tag (128 bytes)
    bytes(500),  # zero padding
    struct.pack("<4sI", b"LIST", 4000) + b"INFO" + bytes(100),  # a LIST chunk cut short
], ids=["id3v1", "zeros", "cut-LIST"])
def test_a_few_bytes_after_whole_audio_are_no_recording_never_closed(tmp_path, caplog, after):
    f = wav(tmp_path / "tagged.wav", len(PCM), after=after)
    with caplog.at_level(logging.WARNING, logger="kame.audio"):
        pcm, _ = read_wav(f)
    assert len(pcm) == RATE and warnings(caplog) == []


def piped(tmp_path, data: bytes) -> str:
    """A named pipe that ``data`` is written into once it is opened for reading (as <(...) is)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed():
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as f:  # (a reader may stop early)
            f.write(data)
    threading.Thread(target=feed, daemon=True).start()
    return str(fifo)


@pytest.mark.parametrize("fmt,subtype", [("FLAC", None), ("OGG", "VORBIS"), ("OGG", "OPUS"), ("WAV", None),
                                         ("MP3", None)], ids=["flac", "ogg", "opus", "wav", "mp3"])
def test_a_pipe_reads_as_the_file_it_carries(tmp_path, fmt, subtype):
    buf = io.BytesIO()
    sf.write(buf, np.frombuffer(PCM, "<i2") / 32768, RATE, format=fmt, subtype=subtype)
    whole = tmp_path / "whole"
    whole.write_bytes(buf.getvalue())
    pcm, rate = read_wav(piped(tmp_path, buf.getvalue()))
    assert rate == RATE and np.array_equal(pcm, read_wav(whole)[0])


def test_an_empty_pipe_is_empty(tmp_path):
    with pytest.raises(AudioFormatError, match=r"^audio file .*pipe is empty \(0 bytes\)$"):
        read_wav(piped(tmp_path, b""))


def riff(path, fmt_body: bytes) -> str:
    """A WAV with this fmt chunk and 4000 bytes of (silent) data."""
    body = b"WAVE" + struct.pack("<4sI", b"fmt ", len(fmt_body)) + fmt_body + struct.pack("<4sI", b"data", 4000)
    path.write_bytes(struct.pack("<4sI", b"RIFF", len(body) + 4000) + body + bytes(4000))
    return str(path)


@pytest.mark.parametrize("fmt_body,says", [
    (struct.pack("<HHIIHH", 1, 1, RATE, 2 * RATE, 2, 0), "File contains data in an unimplemented format"),  # 18
    (struct.pack("<HHIIHHH", 0x161, 1, RATE, 4000, 1, 0, 0), "Malformed 'fmt ' chunk"),  # 64: a WMA codec
], ids=["unimplemented", "wma"])
def test_an_encoding_libsndfile_does_not_read_is_not_called_damaged(tmp_path, fmt_body, says):
    f = riff(tmp_path / "other.wav", fmt_body)
    with pytest.raises(AudioFormatError) as exc:
        read_wav(f)
    text = str(exc.value)
    assert says in text and "may be truncated or damaged" not in text, text
    assert text.endswith(f"(an encoding kame does not read, or a damaged file: it reads {READ_FORMATS}; convert it "
                         f"first, e.g. ffmpeg -i {f} {tmp_path / 'other-converted.wav'})"), text


def test_an_error_of_another_kind_gets_libsndfiles_words_alone(tmp_path):
    f = riff(tmp_path / "rate0.wav", struct.pack("<HHIIHH", 1, 1, 0, 0, 2, 16))  # 24: "SF_INFO struct incomplete"
    with pytest.raises(AudioFormatError, match=r"^cannot read audio file .*SF_INFO struct incomplete\.$"):
        read_wav(f)


def test_every_input_help_lists_the_formats_read_wav_reads():
    from kame.codec import roundtrip
    from kame.runtime import filemode
    from kame.server import client

    for module in (roundtrip, filemode, client):
        p = argparse.ArgumentParser()
        module.add_arguments(p)
        [action] = [a for a in p._actions if a.dest == "input"]
        assert READ_FORMATS in action.help, (module.__name__, action.help)


def test_a_pipe_that_cannot_be_read_is_named_and_told_a_conversion_it_can_run(tmp_path):
    """A foreign format through a pipe: the error names the path, never soundfile's in-memory
    buffer (was "Error opening <_io.BytesIO object at 0x...>"), and the conversion reads stdin
    (was: ffmpeg -i /dev/fd/3 /dev/fd/3.wav, a pipe read twice and a file that cannot be made)."""
    with pytest.raises(AudioFormatError) as exc:
        read_wav(piped(tmp_path, b"this is no audio at all, just some text\n" * 20))
    text = str(exc.value)
    assert text.startswith(f"cannot read audio file {tmp_path / 'pipe'}: Format not recognised.") and "BytesIO" not in text
    assert "ffmpeg -i - converted.wav, then give converted.wav" in text and f"ffmpeg -i {tmp_path / 'pipe'}" not in text, text


def test_a_cut_wav_through_a_pipe_is_refused_as_the_file_is(tmp_path):
    """A WAV cut short is refused from disk; through a pipe it read as what was left, silently
    (check_wav_length skipped what is no regular file: it checks the piped bytes now)."""
    cut = (tmp_path / "cut.wav")
    cut.write_bytes(open(wav(tmp_path / "whole.wav", len(PCM)), "rb").read()[:30000])
    with pytest.raises(AudioFormatError, match="is truncated: its header announces 48000 bytes"):
        read_wav(cut)
    with pytest.raises(AudioFormatError, match="is truncated: its header announces 48000 bytes"):
        read_wav(piped(tmp_path, cut.read_bytes()))


def test_the_error_codes_kame_sorts_are_the_ones_this_libsndfile_means():
    """FOREIGN_CODES and DAMAGED_CODES are positions in libsndfile's own list (only 0-4 are its
    public codes): another libsndfile that moved them would word the hints wrong, silently."""
    from soundfile import _ffi, _snd

    from kame.audio import DAMAGED_CODES, FOREIGN_CODES

    def said(code: int) -> str:
        return _ffi.string(_snd.sf_error_number(code)).decode()
    expected = {1: "Format not recognised", 3: "file is malformed", 4: "unsupported encoding",
                7: "not a regular file", 18: "unimplemented format", 32: "Channel count is zero",
                39: "psf_fseek() failed", 64: "Malformed 'fmt ' chunk", 71: "No 'data' chunk",
                155: "bad flac header", 158: "flac decoder lost sync", 160: "flac channel changed",
                161: "unknown error in flac decoder"}
    assert set(expected) == set(FOREIGN_CODES) | DAMAGED_CODES
    for code, words in expected.items():
        assert words in said(code), (code, said(code))


def test_a_recording_never_closed_through_a_pipe_is_told_a_fix_that_reads_stdin(tmp_path, caplog):
    """(sox --ignore-length PIPE fixed.wav named a pipe read once already: kame.audio.command_input)"""
    whole = tmp_path / "rec.wav"
    with caplog.at_level(logging.WARNING, logger="kame.audio"):
        read_wav(piped(tmp_path, open(wav(whole, 480), "rb").read()))
    [w] = warnings(caplog)
    assert "never closed" in w and w.endswith("... | sox --ignore-length -t wav - fixed.wav"), w
