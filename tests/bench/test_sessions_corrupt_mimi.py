"""`kame bench sessions --codec mimi:FILE` reads the file's safetensors header up front, before
the header lines and any case (not its weights: that is each case's agent's): a truncated or
corrupt Mimi file is said at once, naming --codec (was: found when the first case built its
agent, after the header was out, as "codec.spec = 'mimi:FILE': ..."). A whole file still runs."""

from __future__ import annotations

import pytest

from kame.cli import main


@pytest.fixture
def mimi_files(tmp_path):
    from kame.codec.mimi import build_random, save_mimi

    whole = save_mimi(build_random("tiny"), tmp_path / "mimi.safetensors")
    data = whole.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])  # (an incomplete download)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)  # (no safetensors header)
    misnamed = tmp_path / "mimi.bin"
    misnamed.write_bytes(data)  # (a whole file, but not named as the loader takes it)
    return whole, cut, junk, misnamed


def test_a_corrupt_mimi_file_is_said_before_any_case(mimi_files, monkeypatch, capsys):
    from kame.bench import sessions

    ran = []

    async def case(frontend, codec, n, batched, *a, **k):
        ran.append(codec)
        return {"frontend": frontend, "codec": codec, "batched": batched, "sessions": n, "step_p50": 0.01,
                "missed_ratio": 0.0}

    monkeypatch.setattr(sessions, "run_case", case)
    monkeypatch.setattr(sessions, "table", lambda rows: "")  # (the stand-in case's row: not all the table's figures)
    whole, cut, junk, misnamed = mimi_files
    for bad, said in ((cut, f"{cut} is truncated: it has"), (junk, f"cannot read {junk}: not a readable safetensors"),
                      (misnamed, f"{misnamed}: expected a .safetensors file (Mimi checkpoint")):  # (was: at case 1)
        capsys.readouterr()
        assert main(["bench", "sessions", "--frontend", "random:tiny", "--codec", f"mimi:{bad}"]) == 1
        captured = capsys.readouterr()
        assert captured.err.startswith(f"kame: error: --codec: {said}"), captured.err
        assert "machine:" not in captured.out and not ran, captured.out
    assert main(["bench", "sessions", "--frontend", "random:tiny", "--sessions", "1", "--mode", "batched",
                 "--codec", f"mimi:{whole}"]) == 0
    assert ran == [f"mimi:{whole}"]
