"""kame.runtime.filerun.FileAgent (kame eval mtbench): one agent built and started once plays
conversation after conversation, each a new session whose record is the one a fresh agent (kame
run's run_conversation) makes of the same input; a run that leaves the agent unsound (a failed
front-end step, a frame loop that ended) costs that agent, and the next run gets a new one."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kame.config import load_config
from kame.errors import KameError
from kame.runtime import engine
from kame.runtime.engine import TandemAgent
from kame.runtime.filemode import run_conversation
from kame.runtime.filerun import FileAgent
from kame.runtime.interrupt import close_runner

from .fakes import FakeFrameModel, speech

F = 1920


@pytest.fixture
def built(monkeypatch):
    """build_agent -> a deterministic tandem (FakeFrameModel, no back-end); the agents built, and
    ``fail``: (agent number, step numbers) whose step raises (all steps: None)."""
    seen = {"agents": [], "fail": {}}

    def build(cfg, *, clock=None, metrics=None):
        i = len(seen["agents"])
        steps = [0]

        def hook():
            steps[0] += 1
            bad = seen["fail"].get(i, ())
            if bad is None or steps[0] in bad:
                raise RuntimeError(f"step {steps[0]} of agent {i} broke")

        agent = TandemAgent(cfg, clock=clock, metrics=metrics, backend=lambda s: None, token_text=lambda t: f"<{t}>",
                            frame_models=lambda b: FakeFrameModel(b, hook=hook))
        seen["agents"].append(agent)
        return agent

    monkeypatch.setattr(engine, "build_agent", build)
    return seen


def cfg():
    return load_config(None, {"runtime.vad": "energy", "runtime.stats_interval_s": 0.0})


def same(rec: dict) -> dict:
    """What must be the same for the same input, whatever the agent played before (times rounded:
    a later session's times are differences of larger clock readings)."""
    r = lambda x: round(x, 6)  # noqa: E731
    return {"audio": [(r(t), pcm.tobytes()) for t, pcm in rec["agent_audio"]],
            "text": [(r(a["t"]), a["text"]) for a in rec["agent_text"]],
            "vad": [{k: r(v) if isinstance(v, float) else v for k, v in d.items()} for d in rec["vad"]],
            "metrics": [(m["name"], r(m["value"]), r(m["t"])) for m in rec["metrics"]],
            "errors": rec["errors"], "oracle": rec["oracle"], "frames": rec["frames"], "steps": len(rec["step_times"]),
            "feed": rec["frontend_feed"], "failed_steps": rec["failed_steps"], "interrupted": rec["interrupted"],
            "components": rec["components"]}


def test_one_agent_plays_every_conversation_as_a_fresh_agent_would(built):
    a = np.concatenate([speech(1, 30), np.zeros(12 * F, np.float32)])
    b = np.concatenate([speech(2, 20), np.zeros(10 * F, np.float32)])
    runner = asyncio.Runner()
    player = FileAgent(cfg(), runner)
    try:
        recs = [player.play(x, fast=True) for x in (a, b, a)]
        assert len(built["agents"]) == 1 and player.builds == 1 and player.agent.frames == 42 + 30 + 42
        # the agent's MetricsLog holds the last conversation's metrics alone (a long eval does not grow it)
        assert len([m for m in player.metrics.events if m.name == "step_time"]) == 42
    finally:
        player.close()
        close_runner(runner)
    assert not built["agents"][0].health()["started"]  # (stopped by close)
    fresh = [asyncio.run(run_conversation(cfg(), x, fast=True)) for x in (a, b)]
    assert len(built["agents"]) == 3
    assert same(recs[0]) == same(fresh[0]) and same(recs[1]) == same(fresh[1]) and same(recs[2]) == same(fresh[0])
    # each record has its own steps' times, its own metrics
    assert [len(r["step_times"]) for r in recs] == [42, 30, 42] and recs[1]["frames"] == 30
    # (times count from the session's input sample 0, not from the clock's start: 3 silent frames)
    assert recs[1]["vad"][0]["t"] == pytest.approx(fresh[1]["vad"][0]["t"]) == pytest.approx(0.24, abs=0.09)
    assert [m["name"] for m in recs[1]["metrics"]] == [m["name"] for m in fresh[1]["metrics"]] != []
    assert recs[1]["agent_audio"][0][0] == pytest.approx(fresh[1]["agent_audio"][0][0])


def test_a_run_that_breaks_the_agent_gives_it_up_and_the_next_gets_a_new_one(built, capsys):
    a = np.concatenate([speech(3, 15), np.zeros(5 * F, np.float32)])
    built["fail"] = {0: None, 1: {4}}  # agent 0: every step fails; agent 1: its 4th step
    runner = asyncio.Runner()
    player = FileAgent(cfg(), runner)
    try:
        with pytest.raises(KameError, match="the agent produced no audio"):
            player.play(a, fast=True)
        assert player.agent is None and not built["agents"][0].health()["started"]  # (stopped at once)
        err = capsys.readouterr().err
        assert "the agent is stopped and a new one is built for the next run: a run failed: KameError" in err
        rec = player.play(a, fast=True)  # agent 1: one step failed: the record is kept, the agent is not
        assert rec["failed_steps"] == 1 and rec["frames"] == 20 and player.agent is None
        assert "its front-end's step failed on 1 frame(s)" in capsys.readouterr().err
        rec = player.play(a, fast=True)  # agent 2: sound, kept
        out = capsys.readouterr().out
        assert "agent     built again: the one before was given up (its front-end's step failed" in out
        assert rec["failed_steps"] == 0 and rec["errors"] == [] and player.agent is built["agents"][2]
        # its frame loop ends between two runs: found before the next run, which gets a new agent
        ticker = player.agent._ticker
        runner.run(_cancel(ticker))
        rec = player.play(a, fast=True)
        assert len(built["agents"]) == 4 and player.agent is built["agents"][3] and rec["failed_steps"] == 0
        assert "it is not running: the frame loop was cancelled" in capsys.readouterr().err
    finally:
        player.close()
        close_runner(runner)
    assert not any(ag.health()["started"] for ag in built["agents"])


async def _cancel(task) -> None:
    task.cancel()
    await asyncio.wait({task})


def test_an_agent_that_fails_to_start_is_said_by_its_error_alone(built, monkeypatch, capsys):
    """(was: 'a new one is built for the next run' on stderr, then the command ended on that error)"""
    a = np.concatenate([speech(4, 10), np.zeros(5 * F, np.float32)])
    real = TandemAgent.start
    calls = []

    async def start(self):
        calls.append(self)
        if len(calls) == 1:
            raise KameError("front-end checkpoint missing")
        return await real(self)

    monkeypatch.setattr(TandemAgent, "start", start)
    runner = asyncio.Runner()
    player = FileAgent(cfg(), runner)
    try:
        with pytest.raises(KameError, match="checkpoint missing"):
            player.play(a, fast=True)
        assert "new one is built" not in capsys.readouterr().err and player.agent is None
        rec = player.play(a, fast=True)  # (a caller that goes on: the next run builds one, and says why)
        assert rec["frames"] == 15 and len(built["agents"]) == 2
        assert "agent     built again: the one before was given up (its start failed: KameError: front-end" \
            in capsys.readouterr().out
    finally:
        player.close()
        close_runner(runner)
