"""An interrupted `kame bench latency` stops the back-end children its agents shared (the embedded
LLM's, pocketsphinx's: kame.backend.childproc.release_children) before it analyses the modes it
kept, which takes minutes of whisper (was: the cut mode's children left running meanwhile, a
prompt read still taking the CPU). A stand-in shared child records when it is stopped."""

from __future__ import annotations

import numpy as np

from kame.backend import childproc
from kame.cli import main

from . import test_ctrl_c_keeps_rows
from .test_ctrl_c_keeps_rows import LATENCY_KEPT

latency = test_ctrl_c_keeps_rows.latency  # (a fixture, used by name)


def test_an_interrupted_run_stops_the_shared_children_before_the_analysis(latency, tmp_path, monkeypatch, capsys):
    events, ran = [], []

    async def run_mode(cfg, dialogues):
        ran.append(cfg.mode)
        events.append(f"run {cfg.mode}")
        if len(ran) == 2:  # (Ctrl-C during the cascade: its children, e.g. the embedded LLM's, still up)
            raise KeyboardInterrupt
        return [({"wall_s": 1.0, "duration_s": 1.0, "components": {"stt": "x"}}, np.zeros(24000, np.float32))]

    def stop() -> bool:
        events.append("children stopped")
        return True

    def whisper():
        events.append("analysis")

    monkeypatch.setattr(childproc, "_shared_stops", [stop])  # (the process's own shared children: none here)
    monkeypatch.setattr(latency, "run_mode", run_mode)
    monkeypatch.setattr(latency, "whisper_asr", whisper)
    monkeypatch.setattr(latency, "analyse", lambda mode, runs, dialogues, asr, thr: [])
    monkeypatch.setattr(latency, "plot", lambda path, results, title: path.write_text(""))
    assert main(["bench", "latency", "--turns", "1", "-o", str(tmp_path / "lat")]) == 130
    assert LATENCY_KEPT in capsys.readouterr().out
    assert events[:4] == ["run tandem", "run cascade", "children stopped", "analysis"], events
