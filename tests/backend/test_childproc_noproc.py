"""children_cpu_seconds (kame.backend.childproc) where there is no /proc (macOS, Windows): NaN as
documented, not 0.0 (was: every child's missing /proc/PID/stat taken for "it just ended", so a
bench silently left the back-end's CPU out); a child whose entry vanished still counts as ended."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from types import SimpleNamespace

from kame.backend import childproc


def _proc(tmp_path, pids: dict[int, tuple[int, int]]):
    """A fake /proc: self, and PID/stat with (utime, stime) clock ticks for each of ``pids``."""
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "stat").write_text("1 (python) R\n")
    for pid, (utime, stime) in pids.items():
        (tmp_path / "proc" / str(pid)).mkdir()
        rest = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", str(utime), str(stime), "0", "0"]
        (tmp_path / "proc" / str(pid) / "stat").write_text(f"{pid} (kame child) " + " ".join(rest) + "\n")
    return str(tmp_path / "proc")


def test_no_proc_at_all_is_nan(tmp_path, monkeypatch):
    monkeypatch.setattr(mp, "active_children", lambda: [SimpleNamespace(pid=4242)])
    monkeypatch.setattr(childproc, "PROC", str(tmp_path / "no-proc-here"), raising=False)
    assert math.isnan(childproc.children_cpu_seconds())


def test_a_child_gone_from_proc_is_one_that_ended(tmp_path, monkeypatch):
    tick = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(childproc, "PROC", _proc(tmp_path, {4242: (2 * tick, tick)}))
    monkeypatch.setattr(mp, "active_children", lambda: [SimpleNamespace(pid=4242), SimpleNamespace(pid=4243)])
    assert childproc.children_cpu_seconds() == 3.0  # 4243's entry vanished: it just ended
    monkeypatch.setattr(mp, "active_children", lambda: [])
    assert childproc.children_cpu_seconds() == 0.0  # (no child: none used any, on any system)
