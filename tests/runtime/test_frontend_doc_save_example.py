"""docs/frontend.md's example saving kame's own front-end runs as written, and `kame run` runs the
checkpoint it writes, as the doc says (was: written with random:small's 2000-word text vocabulary,
then refused by kame run: "tokenizer ... has 4000 pieces, more than its text vocabulary")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from kame.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "frontend.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    code = [b for b in blocks if 'codec="embedded", tokenizer="default"' in b]
    assert len(code) == 1, "docs/frontend.md: the example saving kame's own front-end is gone"
    return code[0]


def test_the_docs_save_example_runs_and_kame_run_runs_what_it_wrote(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_example(), str(DOC), "exec"), {})
    assert json.loads(Path("out/config.json").read_text())["kame"]["codec"] == "embedded"
    sf.write("q.wav", np.zeros(4800, np.float32), 24000)
    assert "kame run q.wav -o x.wav --set frontend.spec=./out" in " ".join(DOC.read_text().split())
    rc = main(["run", "q.wav", "-o", "x.wav", "--set", "frontend.spec=./out", "--fast", "--no-png", "--tail", "0.2",
               "--set", "backend.stt=none", "--set", "backend.llm=none", "--set", "runtime.vad=energy"])
    assert rc == 0, capsys.readouterr()
    comps = json.loads(Path("x.json").read_text())["components"]
    assert comps["codec"] == "embedded" and comps["frontend_random"] is False
