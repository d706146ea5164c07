"""Ctrl-C in `kame bench step`, `kame bench sessions` (before its first case) and `kame codec fit`
says one line and exits 130 (was: exit 130, nothing said); bench step keeps the cases measured so
far as a table, as bench sessions does."""

from __future__ import annotations

import argparse

import pytest

from kame.bench import step
from kame.cli import main


def _args(add_arguments, *argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def stopped(command_main, args) -> int:
    """``command_main(args)``, a KeyboardInterrupt let out a test failure (was: kame.cli's exit 130,
    nothing said), not the end of the test run."""
    try:
        return command_main(args)
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt went out of the command: nothing said")


def test_ctrl_c_in_bench_step_before_a_case_says_so(monkeypatch, capsys):
    def loading(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(step, "bench_pair", loading)
    args = _args(step.add_arguments, "--frontend", "random:tiny", "--frames", "1", "--warmup", "0")
    assert stopped(step.main, args) == 130
    out = capsys.readouterr().out
    assert "interrupted: Ctrl-C before the first case was measured; no table" in out, out
    assert "| frontend |" not in out


def test_ctrl_c_in_bench_step_keeps_the_cases_measured(monkeypatch, capsys):
    times = dict(p50=0.01, p99=0.02, mean=0.01)
    calls = []

    def pair(plain, with_oracle, batch, frames, warmup):
        calls.append(batch)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return times, times

    monkeypatch.setattr(step, "bench_pair", pair)
    args = _args(step.add_arguments, "--frontend", "random:tiny", "--batch", "1", "--batch", "4")
    assert stopped(step.main, args) == 130
    out = capsys.readouterr().out
    assert "interrupted: the table holds the 1 case(s) measured before Ctrl-C" in out, out
    assert "| `random:tiny` | 3.6 | 0.06 | 1 |" in out and "| 4 |" not in out, out


def test_ctrl_c_in_bench_sessions_before_a_case_says_so(monkeypatch, capsys):
    from kame.bench import sessions

    async def case(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sessions, "run_case", case)
    assert main(["bench", "sessions", "--frontend", "random:tiny", "--mode", "batched"]) == 130
    assert "interrupted: Ctrl-C before the first case was measured; no table" in capsys.readouterr().out


def test_ctrl_c_in_codec_fit_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    from kame.codec.embedded import fit

    def fitting(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit, "fit", fitting)
    out = tmp_path / "fit.safetensors"
    assert stopped(fit.main, _args(fit.add_arguments, "-o", str(out), "--sentences", "2")) == 130
    err = capsys.readouterr().err
    assert err.strip() == f"kame codec fit: interrupted (Ctrl-C) before the fit ended; {out} not written", err
    assert not out.exists()
