"""kame eval mtbench and SIGTERM, found by a QA sweep: one that comes while the judge rates (not
while a question is played) ends the evaluation as Ctrl-C does, what was opened closed, exit 143;
one while a question is played exits 143 too, not Ctrl-C's 130 (scripted judge, fake agent)."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from kame import registry

from . import test_mtbench
from .test_mtbench import JUDGE, QUESTIONS, Judges, eval_, signal_while_playing, write

judges = test_mtbench.judges  # (test_mtbench's scripted judges and agent counter: fixtures, used by name)
agent_runs = test_mtbench.agent_runs


class Killed(Exception):
    """What SIGTERM raises here when kame installs no handler of its own (pytest must not die)."""


@pytest.fixture
def sigterm_guard():
    def guard(signum, frame):
        raise Killed("SIGTERM reached the test's handler: kame did not take it")

    previous = signal.signal(signal.SIGTERM, guard)
    yield
    signal.signal(signal.SIGTERM, previous)


class TermJudge(Judges):
    """Rates as Judges, but SIGTERM comes (once) while it is asked to rate."""

    closed = []

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        if not test_mtbench.probe(messages) and not JUDGE.get("termed"):
            JUDGE["termed"] = True
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.05)
        async for x in super().stream_chat(messages, max_tokens=max_tokens, temperature=temperature):
            yield x

    async def aclose(self):
        TermJudge.closed.append(True)


def test_sigterm_while_the_judge_rates_ends_the_evaluation_with_143(tmp_path, capsys, fake_components, judges,
                                                                     agent_runs, sigterm_guard):
    registry.register("llm", "test_term_judge", lambda arg=None, **kw: TermJudge())
    try:
        qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
        out = tmp_path / "out"
        TermJudge.closed.clear()
        assert eval_(qf, out, judge="test_term_judge") == 143  # (was: killed at once; here the guard's error: 1)
        err = " ".join(capsys.readouterr().err.split())
        assert "terminated (SIGTERM): the evaluation ends here" in err
        assert TermJudge.closed and not (out / "results.jsonl").exists()  # (the judge closed, nothing rated)
        assert (out / "runs" / "131.rec.json").exists() and agent_runs["stops"] == 1  # (the agent stopped)
        assert signal.getsignal(signal.SIGTERM).__name__ == "guard"  # (the handler before given back)
        assert eval_(qf, out, judge="test_term_judge") == 0  # a rerun rates the saved run, the agent not run
        assert agent_runs["main"] == 1
        (r,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        assert r["question_id"] == "131" and r["rating"] == 7.0
    finally:
        registry._ENTRIES.get("llm", {}).pop("test_term_judge", None)


def test_sigterm_while_a_question_is_played_exits_143(tmp_path, capsys, fake_components, judges, agent_runs,
                                                      monkeypatch, sigterm_guard):
    signal_while_playing(monkeypatch, agent_runs, signal.SIGTERM, after=1)  # (after the warm-up: into the question)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    assert eval_(qf, out) == 143  # (was: 130, as for Ctrl-C)
    err = capsys.readouterr().err
    assert "terminated (SIGTERM): ending the conversation here" in err
    assert json.loads((out / "runs" / "131.json").read_text())["summary"]["interrupted_by"] == "SIGTERM"
    assert not (out / "runs" / "131.rec.json").exists() and judges["n"] == 0
