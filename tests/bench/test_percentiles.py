"""Every bench reports nearest-rank percentiles (kame.bench.machine.pct): a p50 / p90 / p99 is a
value that was measured, never one interpolated between two (was: np.percentile in kame bench
backend's STT table, latency, sessions and soak). Each bench keeps its own meaning of "none"."""

from __future__ import annotations

import argparse
import asyncio
import math

import pytest

from kame.backend.types import Transcript, Word
from kame.runtime.metrics import Metric, MetricsLog


def test_stt_latencies_are_measured_values_and_nan_without_any():
    from kame.bench.backend_stt import score

    words = [Word(w, 0.5 + 0.1 * k, 0.7 + 0.1 * k) for k, w in enumerate(["one", "two", "three", "four"])]
    trs = [Transcript(tuple(words), True, 1.1)]  # one final: word latencies 0.4, 0.3, 0.2, 0.1 s
    lat = sorted(1.1 - w.end for w in words)
    run = dict(trs=trs, spans=[(0.5, 1.0)], cpu=0.0, audio=2.0, final_lat=[0.6, 0.5])
    r = score([dict(text="one two three four", group="piper")], run)
    assert r["word_lat_p50"] == lat[1] and r["word_lat_p90"] == lat[3]  # (interpolated: 0.25, 0.37)
    assert r["final_lat_p50"] == 0.5  # (interpolated: 0.55)
    assert math.isnan(score([dict(text="one", group="piper")], dict(run, final_lat=[]))["final_lat_p50"])


def test_latency_percentiles_are_measured_values_and_never_stays_never():
    from kame.bench import latency as lb
    from kame.bench.latency_report import table

    ut = lb.UserTurn(0, 0, "What is the capital of France?", "piper", 0.5, 2.0, 8.0)
    rs = [lb.TurnResult("cascade", ut, first_response=x, content=None if x is None else x + 0.1)
          for x in (1.0, 2.0, 3.0, None)]
    rs[0].oracle_lag = [0.5, 0.7]
    s = lb.summary(rs)
    assert s["first_response_p50"] == 2.0 and s["first_response_p90"] == math.inf  # (interpolated: 2.5)
    assert s["content_p50"] == 2.1 and s["content_p90"] == math.inf  # a turn with none counts as +inf
    assert s["oracle_lag_p50"] == 0.5 and s["oracle_lag_p90"] == 0.7  # (interpolated: 0.6, 0.68)
    assert math.isnan(s["llm_ttft_p50"])  # no value: nan, "n/a" in the table
    row = table({"cascade": s}, {}).splitlines()[2]
    assert "| 2.00 / never (3 sounded" in row and "| 2.10 / never |" in row and "| n/a |" in row
    never = lb.summary([lb.TurnResult("cascade", ut, first_response=x) for x in (1.0, None, None)])
    assert never["first_response_p50"] == math.inf and never["first_response_n"] == 1


class _Clock:
    """A virtual clock: run_case's 80 ms frames without waiting for them."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, dt: float) -> None:
        self.t += max(0.0, dt)
        await asyncio.sleep(0)


class _Session:
    def __init__(self, agent) -> None:
        self.agent, self.closed = agent, asyncio.Event()

    async def push_audio(self, frame) -> None:  # one step per frame, its time from the script
        self.agent.metrics(Metric("step_time", self.agent.steps.pop(0), 0.0))

    async def outputs(self):
        await self.closed.wait()
        return
        yield

    async def close(self) -> None:
        self.closed.set()


class _Agent:
    """A TandemAgent stand-in whose step times are known: 0.05 s while warming up, then STEPS."""

    def __init__(self, cfg, clock, metrics) -> None:
        self.metrics, self.steps = metrics, [0.05] + list(STEPS)
        self.components = {"codec": "embedded", "frontend_params": 3.6e6}

    async def start(self) -> None:
        pass

    async def open_session(self, name: str) -> _Session:
        return _Session(self)

    async def stop(self) -> None:
        pass


STEPS = [0.01, 0.04, 0.02, 0.03]  # measured after the warm-up frame


async def test_sessions_step_times_are_measured_values(monkeypatch):
    from kame.bench import sessions
    from kame.runtime import clock, engine

    monkeypatch.setattr(engine, "TandemAgent", _Agent)
    monkeypatch.setattr(clock, "MonotonicClock", _Clock)
    # frames at 0, 80, ..., 320 ms: the first (warm-up 0 s: the measuring starts after it) is not counted
    r = await sessions.run_case("random:tiny", "auto", 1, True, 0.35, 0.0, 1)
    assert r["frames"] == 4
    assert r["step_p50"] == 0.02 and r["step_p99"] == 0.04  # (interpolated: 0.025, 0.0397)
    assert "20.0 / 40.0" in sessions.table([r])


def _soak_args(*argv: str) -> argparse.Namespace:
    from kame.bench import soak

    p = argparse.ArgumentParser()
    soak.add_arguments(p)
    return p.parse_args(["--parts", "sessions", "--sessions", "1", "--seconds", "0.1", *argv])


@pytest.mark.parametrize("finals,final_p50", [([0.6, 0.5], 0.5), ([], None)])
async def test_soak_step_times_are_measured_values(monkeypatch, finals, final_p50):
    from kame.bench import soak

    def metrics() -> MetricsLog:  # the agent's metrics as a run would leave them
        log = MetricsLog()
        for v in (0.01, 0.04, 0.02, 0.03):
            log(Metric("step_time", v, 0.0))
        for v in finals:
            log(Metric("stt_final_latency", v, 0.0))
        return log

    async def no_clients(url, n, seconds, http=None, subprocess_clients=False, speech=False):
        return {}

    monkeypatch.setattr(soak, "MetricsLog", metrics)
    monkeypatch.setattr(soak, "run_sessions", no_clients)
    s = (await soak.soak(_soak_args()))["sessions"]
    assert s["steps"] == 4 and s["step_p50_ms"] == 1e3 * 0.02 and s["step_p99_ms"] == 1e3 * 0.04
    assert s["stt_final_p50_s"] == final_p50  # None without a final, as before


async def test_soak_loop_lag_percentiles_are_measured_values_and_zero_without_any():
    from kame.bench.soak import LoopLag

    lag = LoopLag()
    try:
        lag.lags, lag.busy = [0.004, 0.001, 0.003, 0.002], [0.002, 0.001]
        r = lag.stop()  # (its timer task has not run yet: the lists are these)
        assert (r["p50"], r["p99"], r["max"]) == (0.002, 0.004, 0.004)  # (interpolated: 0.0025, 0.00397)
        assert (r["busy_p99"], r["busy_max"]) == (0.002, 0.002)
        lag.lags, lag.busy = [], []
        assert lag.stop() == {"p50": 0.0, "p99": 0.0, "max": 0.0, "busy_p99": 0.0, "busy_max": 0.0}
    finally:
        lag._task.cancel()
        await asyncio.gather(lag._task, return_exceptions=True)
