"""The training pipeline end to end, as a user chains it: `kame data synth` (real espeak voices,
the shipped embedded codec) -> `kame train` (random:tiny) -> `kame run` on the checkpoint it wrote.
Each command only reads what the one before wrote, so the interfaces between them are what is tested
here (each command's own behaviour has its own tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from kame.cli import main
from kame.model.loaders import load_frontend


def test_synth_then_train_then_run_the_checkpoint(tmp_path, monkeypatch, capsys):
    pytest.importorskip("espeakng_loader")
    monkeypatch.chdir(tmp_path)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in (
        {"question": "What is the capital of France?", "answer": "Paris is the capital of France."},
        {"question": "How many legs does a spider have?", "answer": "A spider has 8 legs."})))
    assert main(["data", "synth", str(qa), "-o", "data", "--llm", "none", "--user-voice", "espeak:en-us+f2",
                 "--agent-voice", "espeak:en-us+m3"]) == 0
    assert main(["train", "data", "-o", "run", "--frontend", "random:tiny", "--steps", "3", "--batch-size", "2",
                 "--window", "32", "--warmup", "1", "--save-every", "0"]) == 0
    assert len(list((tmp_path / "data").glob("*/codes.npz"))) == 2  # the codes cached beside each dialogue
    model, info = load_frontend(tmp_path / "run" / "latest")
    assert info.kame["codec"] == "embedded" and info.kame["train"]["step"] == 3
    capsys.readouterr()
    sf.write("q.wav", np.zeros(9600, np.float32), 24000)
    rc = main(["run", "q.wav", "-o", "x.wav", "--set", "frontend.spec=run/latest", "--fast", "--no-png",
               "--tail", "0.2", "--set", "backend.stt=none", "--set", "backend.llm=none",
               "--set", "runtime.vad=energy"])
    assert rc == 0, capsys.readouterr()
    comps = json.loads((tmp_path / "x.json").read_text())["components"]
    assert comps["codec"] == "embedded" and comps["frontend_random"] is False
