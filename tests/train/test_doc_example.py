"""docs/data.md's first example runs as written (on a small manifest in a temporary folder),
so the doc cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kame.train.data import Dialogue, Word, write_dialogue
from kame.train.manifest import write_manifest

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def test_the_docs_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert "read_manifest(\"data/train.jsonl\")" in code and "model(codes, oracle=oracle)" in code
    g = np.random.default_rng(0)
    folders = []
    for i, T in enumerate((12, 9)):
        audio = (0.05 * g.standard_normal((T * 1920, 2))).astype(np.float32)
        words = [Word("user", "Where", 0.0, 0.2), Word("agent", "Hello", 0.3, 0.5), Word("agent", "there.", 0.5, 0.7)]
        folders.append(write_dialogue(tmp_path / "data" / f"d{i}", Dialogue(audio, words)))
    write_manifest(tmp_path / "data" / "train.jsonl", folders)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)
    assert tuple(scope["codes"].shape[::2]) == (2, 12) and scope["out"].text_logits.shape[0] == 2
