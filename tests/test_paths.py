"""kame.paths and read_wav: checks made before the work, without side effects."""

import os

import numpy as np
import pytest
import soundfile as sf

from kame.audio import read_wav
from kame.errors import ConfigError
from kame.paths import check_output_file, check_output_folder


def test_output_check_leaves_nothing_behind(tmp_path):
    out = tmp_path / "new" / "out.wav"
    assert check_output_file(out) == out and sorted(os.listdir(out.parent)) == []  # folder made, no file
    link = tmp_path / "link.wav"
    link.symlink_to(tmp_path / "gone" / "real.wav")  # a dangling link stays as it was
    check_output_file(link)
    assert link.is_symlink() and not (tmp_path / "gone").exists()
    ro = tmp_path / "ro.wav"
    ro.write_bytes(b"x")
    ro.chmod(0o444)  # replaced by the writers' rename, so not refused
    check_output_file(ro)
    assert ro.read_bytes() == b"x"
    if os.path.isdir("/proc/self"):  # root may pass os.access there, yet nothing can be made
        with pytest.raises(ConfigError, match="cannot"):
            check_output_file("/proc/self/kame-out.wav")


def test_a_file_where_a_folder_must_be_is_named(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for path in (afile / "x.wav", afile / "deeper" / "x.wav"):
        with pytest.raises(ConfigError, match=f"cannot create its folder: {afile} is a file, not a folder"):
            check_output_file(path)
    with pytest.raises(ConfigError, match=f"--out {afile}: cannot create the folder: {afile} is a file"):
        check_output_folder(afile)


def test_wav_with_a_placeholder_length_reads(tmp_path):
    """A writer that could not seek back (arecord, sox to a pipe) leaves a placeholder data size;
    such a file is whole, not truncated."""
    wav = tmp_path / "stream.wav"
    sf.write(wav, np.zeros(2400, np.float32), 24000, subtype="PCM_16")
    raw = bytearray(wav.read_bytes())
    i = raw.index(b"data")
    raw[i + 4 : i + 8] = (0x7FFFFFFF).to_bytes(4, "little")
    wav.write_bytes(bytes(raw))
    assert read_wav(wav)[0].shape == (2400,)


def test_output_folder_check_makes_a_file_there(tmp_path):
    from kame.paths import check_output_folder

    assert check_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert os.listdir(tmp_path / "a" / "b") == []
    if os.path.isdir("/proc/self"):  # the same check as for a file: root passes os.access there
        with pytest.raises(ConfigError, match="cannot write into"):
            check_output_folder("/proc/self")


def test_an_empty_output_path_says_so():
    """(was: "-o  is a folder, cannot write a file there")"""
    with pytest.raises(ConfigError, match=r"^-o is empty; give the file to write, e.g. -o answer.wav$"):
        check_output_file("", suffix=".wav")
    with pytest.raises(ConfigError, match=r"^--json is empty; give the file to write, e.g. --json answer.json$"):
        check_output_file("", flag="--json")
    with pytest.raises(ConfigError, match=r"^--out is empty; give the file to write$"):
        check_output_file("", flag="--out")
    with pytest.raises(ConfigError, match=r"^--out is empty"):
        check_output_folder(" ")


def test_an_empty_audio_file_says_so(tmp_path):
    """(was: "cannot read audio file ...: Format not recognised")"""
    from kame.errors import AudioFormatError

    empty = tmp_path / "q.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioFormatError, match=r"q\.wav is empty \(0 bytes\)"):
        read_wav(empty)


def test_a_folder_given_as_the_output_file_is_called_a_folder(tmp_path):
    """(was: "-o DIR: the output must be a .wav file", kame run's -o an existing folder)"""
    with pytest.raises(ConfigError, match=rf"^-o {tmp_path} is a folder, cannot write a file there; give a file name "
                                          rf"such as {tmp_path / 'answer.wav'}"):
        check_output_file(tmp_path, suffix=".wav")
    new = f"{tmp_path}/new/"  # a folder name that does not exist yet (was: "unknown file type '(no extension)'")
    with pytest.raises(ConfigError, match=r"new/ is a folder, cannot write a file there"):
        check_output_file(new, file_type=lambda p: pytest.fail("asked for the type of a folder"))
    assert not (tmp_path / "new").exists()
