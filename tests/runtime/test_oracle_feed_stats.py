"""The session's stats say how many oracle tokens the back-end sent, how many were fed and how many
came after their frame (the stepper's feed skips those: never fed): the fed and late counts are
the stepper's own (FrameOut.oracle_counts), so a step that failed (its outputs lost, the events
it applied kept) does not skew them; kame run's summary prints them and warns."""

from __future__ import annotations

import random

import pytest

from kame.backend.types import OracleAppend, OracleReset
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.runtime.metrics import MetricsLog
from kame.runtime.runsummary import print_summary

from .fakes import Recorder, speech, step
from .test_frontend_real import real_cfg

F = 1920


async def _agent(fails: dict[int, str] | None = None):
    """The real frame model (tiny random front-end, 3 rows); ``fails``: stepper call -> "before" (the
    step raises before the stepper applies its queued events) or "after" (it raises once the stepper
    has stepped: the events applied, the tokens fed, the outputs lost)."""
    clock = FakeClock()
    agent = TandemAgent(real_cfg(), clock=clock, metrics=MetricsLog())
    await agent.start()
    st = agent.worker.models[0].stepper
    run, calls = st.step, [0]

    def step_or_fail(codes):
        how = (fails or {}).get(calls[0])
        calls[0] += 1
        if how == "before":
            raise RuntimeError("boom (before)")
        out = run(codes)
        if how == "after":
            raise RuntimeError("boom (after)")
        return out

    st.step = step_or_fail
    return agent, clock, st, calls


async def test_stats_count_sent_fed_and_late_oracle_tokens():
    agent, clock, _, _ = await _agent()
    s = await agent.open_session()
    rec = Recorder(s)
    s.on_oracle(OracleReset(1, clock.now()))  # before step 0: start id at 0, its tokens at 1, 2, ...
    await step(agent, clock)
    s.on_oracle(OracleAppend(1, (5, 6), "a b", clock.now()))  # before step 1: frames 1, 2: in time
    await step(agent, clock, 5)
    s.on_oracle(OracleAppend(1, (7, 8, 9), "c", clock.now()))  # before step 6: frames 3..5 passed: late
    await step(agent, clock)
    st = s.stats
    assert (st.oracle_tokens_sent, st.oracle_tokens_fed, st.oracle_tokens_late) == (5, 2, 3)
    await s.close()
    await rec.task
    final = rec.meta("stats")[-1]
    assert (final["oracle_tokens_sent"], final["oracle_tokens_fed"], final["oracle_tokens_late"]) == (5, 2, 3)
    await agent.stop()


@pytest.mark.parametrize("how", ["before", "after"])
async def test_a_failed_step_does_not_skew_the_counts(how):
    """A new prediction whose step fails, then its tokens in time: none late (was: the session's
    replay of the events missed the reset, so they counted as late against the old prediction:
    "4 of 4 tokens fed, 2 came after their frame")."""
    fails: dict[int, str] = {}
    agent, clock, _, calls = await _agent(fails)
    s = await agent.open_session()
    rec = Recorder(s)
    await step(agent, clock)
    s.on_oracle(OracleReset(1, clock.now()))
    s.on_oracle(OracleAppend(1, (5, 6), "a", clock.now()))
    await step(agent, clock, 9)
    s.on_oracle(OracleReset(2, clock.now()))
    fails[calls[0]] = how
    await step(agent, clock, 1, failed=lambda: agent.failed_steps)
    s.on_oracle(OracleAppend(2, (7, 8), "b", clock.now()))
    await step(agent, clock, 4, failed=lambda: agent.failed_steps)
    assert agent.failed_steps == 1
    assert (s.stats.oracle_tokens_sent, s.stats.oracle_tokens_fed, s.stats.oracle_tokens_late) == (4, 4, 0)
    await s.close()
    await rec.task
    await agent.stop()


@pytest.mark.parametrize("seed", range(3))
async def test_batched_sessions_with_failed_steps_count_what_the_stepper_fed(seed):
    """3 sessions (2 join mid-batch), random resets, bare resets and appends, ~10% of the steps
    failing before or after the stepper stepped: each session's counts are its row's feed's."""
    rng = random.Random(seed)
    fails: dict[int, str] = {}
    agent, clock, st, calls = await _agent(fails)
    sessions, recs, pid = [], [], [0] * 3
    for k in range(45):
        if k in (0, 12, 25):
            sessions.append(await agent.open_session())
            recs.append(Recorder(sessions[-1]))
        for i, s in enumerate(sessions):
            await s.push_audio(speech(seed * 10 + i, 1))
            x = rng.random()
            if x < 0.12:
                pid[i] += 1
                s.on_oracle(OracleReset(pid[i], clock.now(), bare=rng.random() < 0.3))
            elif x < 0.55 and pid[i]:
                ids = tuple(rng.randrange(4, 200) for _ in range(rng.randint(1, 3)))
                s.on_oracle(OracleAppend(pid[i], ids, "x", clock.now()))
        if k < 44 and rng.random() < 0.1:  # (the last step works: its counts are the last told)
            fails[calls[0]] = rng.choice(["before", "after"])
        await step(agent, clock, 1, failed=lambda: agent.failed_steps)
    assert agent.failed_steps > 0
    for s in sessions:
        want = st.oracle.stats(s.row)
        assert (s.stats.oracle_tokens_fed, s.stats.oracle_tokens_late) == (want.fed - want.starts, want.skipped)
        assert s.stats.oracle_tokens_fed + s.stats.oracle_tokens_late <= s.stats.oracle_tokens_sent
    assert sum(s.stats.oracle_tokens_late for s in sessions) > 0
    for s in sessions:
        await s.close()
    for r in recs:
        await r.task
    await agent.stop()


def _summary(**kw) -> dict:
    s = {"mode": "tandem", "frontend": "random:tiny", "frontend_random": True, "codec": "c", "stt": "fake",
         "llm": "slow:5", "heard": "", "oracle_text": " Paris is the capital", "agent_text": "",
         "first_response_latency_s": [], "oracle_lag_s": [], "step_time_p50_s": None, "step_time_p99_s": None,
         "missed_deadlines": 0, "frames": 100, "wall_s": 1.0, "load_s": 0.0, "slowdown": 1.0, "errors": 0,
         "oracle_tokens_sent": 40, "oracle_tokens_fed": 12, "oracle_tokens_late": 28,
         "llm_tokens_per_s": 4.5}
    return {**s, **kw}


def test_summary_labels_sent_text_and_warns_when_most_came_late(tmp_path, capsys):
    print_summary(_summary(), tmp_path / "o.wav", True)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("oracle "))
    assert "sent" in line and "12 of 40 tokens fed" in line and "28 came after their frame" in line
    warn = next(x for x in out.splitlines() if "came too late" in x)
    assert "slow:5" in warn and "4.5 tokens/s" in warn and "--slow-prob" in warn and "faster LLM" in warn
    print_summary(_summary(oracle_tokens_fed=30, oracle_tokens_late=10), tmp_path / "o.wav", True)
    assert "came too late" not in capsys.readouterr().out  # (a few late: no warning)


def test_summary_counts_come_from_the_session_stats_and_skip_predictions_that_sent_nothing():
    """summary.oracle_tokens_* are the session's last stats; oracle_text leaves out the predictions
    that sent no token (a bare reset's, reset_on_first_token=false; was: " |  |  | Paris")."""
    from kame.runtime.runsummary import summarize

    rec = {"transcripts": [], "components": {"frontend": "random:tiny", "mode": "tandem"}, "agent_text": [],
           "oracle": [{"event": "reset", "prediction_id": 1, "t": 0.1, "bare": True},
                      {"event": "reset", "prediction_id": 2, "t": 0.5, "bare": True},
                      {"event": "reset", "prediction_id": 2, "t": 1.5},
                      {"event": "append", "prediction_id": 2, "text": " Paris", "token_ids": [7], "t": 1.5}],
           "metrics": [{"name": "llm_tokens_per_s", "value": 4.0}, {"name": "llm_tokens_per_s", "value": 6.0}],
           "stats": [{"oracle_tokens_sent": 1, "oracle_tokens_fed": 0, "oracle_tokens_late": 0},
                     {"oracle_tokens_sent": 9, "oracle_tokens_fed": 2, "oracle_tokens_late": 7}],
           "frames": 10, "late_frames": 0, "wall_s": 1.0, "slowdown": 1.0, "load_s": 0.0, "errors": [], "other": []}
    s = summarize(rec)
    assert s["oracle_text"] == " Paris"
    assert (s["oracle_tokens_sent"], s["oracle_tokens_fed"], s["oracle_tokens_late"], s["llm_tokens_per_s"]) == \
        (9, 2, 7, 5.0)


async def test_a_frame_model_that_does_not_count_late_tokens_is_not_said_to_have_none():
    """A frame model whose FrameOut has no oracle_counts (a plugin's): its fed tokens are counted as
    seen, its late ones are not known: None in the stats, and kame run's oracle line leaves them out
    (was: late 0, "0 came after their frame", as if none came late)."""
    import dataclasses

    agent, clock, _, _ = await _agent()
    fm = agent.worker.models[0]
    run = fm.step
    fm.step = lambda pcm, active: dataclasses.replace(run(pcm, active), oracle_counts=None)
    s = await agent.open_session()
    rec = Recorder(s)
    s.on_oracle(OracleReset(1, clock.now()))
    await step(agent, clock)
    s.on_oracle(OracleAppend(1, (5, 6), "a b", clock.now()))
    await step(agent, clock, 5)
    assert (s.stats.oracle_tokens_sent, s.stats.oracle_tokens_fed, s.stats.oracle_tokens_late) == (2, 2, None)
    assert s._stats_fields()["oracle_tokens_late"] is None
    await s.close()
    await rec.task
    await agent.stop()


def test_the_oracle_line_leaves_out_late_tokens_not_counted(tmp_path, capsys):
    print_summary(_summary(oracle_tokens_fed=30, oracle_tokens_late=None), tmp_path / "o.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("oracle "))
    assert line.endswith("(30 of 40 tokens fed)") and "came after" not in line


def test_the_oracle_line_says_the_tokens_neither_fed_nor_late(tmp_path, capsys):
    """The sent tokens neither fed nor late were cut by a newer prediction (or still queued at the
    end): said, so the counts add up (was: "(29 of 46 tokens fed, 9 came after their frame)")."""
    print_summary(_summary(oracle_tokens_sent=46, oracle_tokens_fed=29, oracle_tokens_late=9), tmp_path / "o.wav",
                  True)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("oracle "))
    assert line.endswith("(29 of 46 tokens fed, 9 came after their frame, 8 cut by a newer prediction or the "
                         "run's end)"), line
    for fed, late in ((12, 28), (30, None)):  # (none cut; late not counted: the rest not known)
        print_summary(_summary(oracle_tokens_fed=fed, oracle_tokens_late=late), tmp_path / "o.wav", True)
        assert "cut by" not in capsys.readouterr().out
