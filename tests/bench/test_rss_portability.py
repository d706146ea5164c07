"""The benches' resident-memory reading off Linux (kame.bench.machine.rss_mb, which `kame bench
soak` and `kame bench train` share): without /proc (macOS) the peak from ``resource`` in MB (its
ru_maxrss is bytes on macOS, KiB on Linux); without ``resource`` either (Windows) nan, shown as
"n/a" (was: soak imported ``resource`` first thing, so even `kame bench soak --help` failed on
Windows, and both benches read /proc unguarded: FileNotFoundError on macOS)."""

from __future__ import annotations

import importlib
import math
import resource
import sys
from types import SimpleNamespace

import pytest

import kame.bench
from kame.bench import machine
from kame.bench import train as bench_train
from kame.cli import main

PEAK_MB = 300


@pytest.fixture
def no_proc(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "PROC_STATUS", str(tmp_path / "no-proc" / "self" / "status"))


@pytest.fixture
def no_resource(monkeypatch):
    """Windows: no ``resource`` module (kame.bench.soak imported afresh; put back after)."""
    monkeypatch.setitem(sys.modules, "resource", None)
    monkeypatch.delitem(sys.modules, "kame.bench.soak", raising=False)
    monkeypatch.setattr(kame.bench, "soak", getattr(kame.bench, "soak", None), raising=False)


@pytest.mark.parametrize("platform, maxrss", [("darwin", PEAK_MB * 2**20), ("linux", PEAK_MB * 1024)])
def test_without_proc_the_peak_is_resources_in_mb(no_proc, monkeypatch, platform, maxrss):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=maxrss))
    now, peak = machine.rss_mb()
    assert math.isnan(now) and peak == PEAK_MB
    from kame.bench import soak

    assert soak.rss_mb() == PEAK_MB  # (the soak's cycles: the peak, which a leak raises too)


def test_linux_reads_proc():
    now, peak = machine.rss_mb()
    assert 0 < now <= peak


def test_without_proc_nor_resource_soak_helps_and_says_n_a(no_proc, no_resource, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "soak", "--help"])
    assert e.value.code == 0 and "--parts" in capsys.readouterr().out
    soak = importlib.import_module("kame.bench.soak")
    assert all(math.isnan(x) for x in machine.rss_mb()) and math.isnan(soak.rss_mb())
    cycles = {"cycles": 10, "wall_s": 1.0, "connections_left": 0, "agent_sessions_left": 0, "rows": None,
              "tasks_before": 3, "tasks_after": 3, "rss_before_mb": soak.rss_mb(), "rss_after_mb": soak.rss_mb(),
              "rss_trace_mb": [round(soak.rss_mb(), 1)] * 2, "capacity_retries": 0}
    table = soak.tables({"cycles": cycles, "health": "ok"})
    assert "| 3 → 3 | n/a → n/a | n/a → n/a |" in table and "nan" not in table, table


def test_bench_train_measures_without_proc_and_says_n_a(no_proc, no_resource, monkeypatch, capsys):
    assert all(math.isnan(x) for x in bench_train._rss_mb())  # (was: FileNotFoundError)
    nan = float("nan")
    ranks = [{"params_mb": 1.0, "grads_mb": 1.0, "optim_mb": 2.0, "rss_mb": nan, "peak_rss_mb": nan,
              "load_peak_mb": nan, "save_peak_mb": nan, "step_s": 0.5}] * 2
    monkeypatch.setattr(bench_train, "make_data", lambda folder: folder / "train.jsonl")
    monkeypatch.setattr(bench_train, "run_layout", lambda *a: ranks)
    assert main(["bench", "train", "--frontend", "random:tiny", "--steps", "4", "--layout", "ddp"]) == 0
    out = capsys.readouterr().out
    assert "| ddp | 2 | 1 | 1 | 2 | 4 | n/a | n/a | n/a / n/a | n/a / n/a |" in out and "nan" not in out, out
