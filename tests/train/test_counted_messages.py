"""Counts in the training commands' messages read right for one: "1 dialogue", "1 window",
"1 process" (was: "(1 dialogues)" from kame data synth and oracle, "1 windows of <= 64 frames
each" and "1 process(es)" from kame train)."""

from __future__ import annotations

import json

import pytest

from kame.cliargs import counted


def test_counted():
    assert [counted(n, "dialogue") for n in (0, 1, 2)] == ["0 dialogues", "1 dialogue", "2 dialogues"]
    assert counted(1, "process", "processes") == "1 process" and counted(3, "process", "processes") == "3 processes"


def test_kame_train_says_one_dialogue_process_and_window(tmp_path):
    from kame.backend.tokenizer import default_tokenizer
    from kame.model.loaders import load_frontend
    from kame.train.finetune import TrainConfig, train
    from tests.train._fakes import FakeCodec
    from tests.train.test_finetune import _data

    lines: list[str] = []
    train(load_frontend("random:tiny", text_card=4000)[0], FakeCodec(), default_tokenizer(), _data(tmp_path / "d", n=1),
          tmp_path / "run", TrainConfig(steps=1, batch_size=1, window_frames=16, warmup_steps=1, save_every=0),
          tokenizer_spec="default", echo=lines.append)
    said = [ln for ln in lines if ln.startswith("training on")]
    assert said and said[0].startswith("training on 1 dialogue, 1 process, 1 window of <= 16 frames each"), lines


def test_kame_data_synth_and_oracle_say_one_dialogue(tmp_path, capsys):
    from kame.cli import main

    pytest.importorskip("espeakng_loader")
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Who wrote Hamlet?", "answer": "William Shakespeare wrote it."}) + "\n")
    out = tmp_path / "data"
    assert main(["data", "synth", str(qa), "-o", str(out), "--llm", "none", "--user-voice", "espeak:en-us+f2",
                 "--agent-voice", "espeak:en-us+m3"]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"1 item -> {out}/") and f"manifest: {out / 'train.jsonl'} (1 dialogue)\n" in said, said
    assert main(["data", "oracle", str(out), "--llm", "none"]) == 0
    said = capsys.readouterr().out
    assert f"new oracles (none) for 1 dialogue in {out / 'train.jsonl'}; the audio stays" in said, said
    assert f"manifest: {out / 'train.jsonl'} (1 dialogue)\n" in said, said


def test_an_interrupted_encode_of_one_dialogue_and_a_one_core_limit_read_right(tmp_path, capsys, monkeypatch):
    """(review l3 #11; was: "0 of 1 dialogues encoded", "this machine has 1 core" by hand)"""
    import argparse

    from kame import cliargs
    from kame.cli import main
    from kame.train import encode
    from kame.train.data import write_dialogue
    from kame.train.manifest import write_manifest
    from tests.train.test_encode import dialogue

    from ._fakes import FakeCodec

    def stopped(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode, "make_codec", lambda *a, **kw: FakeCodec())
    monkeypatch.setattr(encode, "encode_set", stopped)
    root = tmp_path / "set"
    write_manifest(root / "train.jsonl", [write_dialogue(root / "d0", dialogue(0))])
    try:
        main(["data", "encode", str(root), "--codec", "embedded", "--jobs", "1"])
    except KeyboardInterrupt:
        pass
    err = capsys.readouterr().err
    assert ": 0 of 1 dialogue encoded; run the same command again to go on" in err, err
    monkeypatch.setattr(cliargs, "usable_cores", lambda: 1)
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(this machine has 1 core\)$"):
        cliargs.thread_count("2")
