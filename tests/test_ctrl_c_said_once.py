"""A command that says its own Ctrl-C line (kame data synth, kame data oracle, kame data encode,
kame bench train: what was written, how to go on) exits 130 with that one line (was: it raised
the KeyboardInterrupt again for the exit status, and kame's main added "kame data synth:
interrupted" after it, "kame bench train: interrupted" twice word for word)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from kame.cli import main


def interrupted_lines(capsys) -> list[str]:
    io = capsys.readouterr()
    return [line for line in (io.out + io.err).splitlines() if "interrupted" in line]


def test_kame_data_synth(tmp_path, capsys, monkeypatch):
    from kame.train import synth

    pytest.importorskip("espeakng_loader")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"What is {n} and {n}?", "answer": f"It is {2 * n}."}) + "\n"
                          for n in range(4)))
    written = []

    def write_then_ctrl_c(folder, d, **kw):  # a real Ctrl-C once the first dialogue is written
        real_write(folder, d, **kw)
        written.append(folder)
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    real_write = synth.write_dialogue
    monkeypatch.setattr(synth, "write_dialogue", write_then_ctrl_c)
    out = tmp_path / "syn"
    assert main(["data", "synth", str(qa), "-o", str(out), "--llm", "random", "--user-voice", "espeak:en-us+f2",
                 "--agent-voice", "espeak:en-us+m3"]) == 130
    said = interrupted_lines(capsys)
    assert len(said) == 1 and said[0].startswith("interrupted: 1 dialogue in "), said


def test_kame_data_oracle(tmp_path, capsys, monkeypatch):
    from kame.train import reoracle
    from tests.train.test_reoracle import make_set

    make_set(tmp_path)

    def ctrl_c(d):
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(reoracle, "write_meta", ctrl_c)
    assert main(["data", "oracle", str(tmp_path), "--llm", "none"]) == 130
    said = interrupted_lines(capsys)
    assert len(said) == 1 and said[0].startswith("kame data oracle: interrupted; the manifest has "), said


def test_kame_data_encode(tmp_path, capsys, monkeypatch):
    from kame.train import encode
    from kame.train.data import write_dialogue
    from kame.train.manifest import write_manifest
    from tests.train._fakes import FakeCodec
    from tests.train.test_encode import dialogue

    def ctrl_c(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode, "make_codec", lambda *a, **kw: FakeCodec())
    monkeypatch.setattr(encode, "encode_set", ctrl_c)
    root = tmp_path / "set"
    write_manifest(root / "train.jsonl", [write_dialogue(root / "d0", dialogue(0))])
    assert main(["data", "encode", str(root), "--codec", "embedded", "--jobs", "1"]) == 130
    said = interrupted_lines(capsys)
    assert len(said) == 1 and said[0].startswith("interrupted: 0 of 1 dialogue encoded"), said


def test_kame_bench_train(capsys, monkeypatch):
    from kame.bench import train

    def ctrl_c(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_bench", ctrl_c)
    assert main(["bench", "train", "--frontend", "random:tiny", "--steps", "4"]) == 130
    assert interrupted_lines(capsys) == ["kame bench train: interrupted"]


def test_stop_lines_are_one_write_each(monkeypatch):
    """A command's own stop line: one write, line and newline (was print's two: torchrun's processes share
    stderr, and another's line could come between them)."""
    import sys

    from kame.bench import train
    from tests.test_cli_error_line import Writes

    def ctrl_c(args):
        raise KeyboardInterrupt

    err = Writes()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(train, "_bench", ctrl_c)
    assert main(["bench", "train", "--frontend", "random:tiny", "--steps", "4"]) == 130
    assert [w for w in err.writes if "interrupted" in w] == ["\nkame bench train: interrupted\n"], err.writes
