"""What `kame run` records of the front-end's feed: the session's FeedLog (the step each oracle
event went into, each oracle token fed) and OUT.json's frontend_feed / the events' "frame"."""

from __future__ import annotations

import pytest

from kame.backend.types import OracleAppend, OracleReset
from kame.errors import KameError
from kame.runtime.filemode import feed_record
from kame.runtime.feedlog import FeedLog

from .fakes import START, Recorder, step
from .test_engine import make_agent


async def test_the_feed_log_records_the_step_each_oracle_event_went_into():
    fails, calls = set(), [0]

    def hook():  # (on the worker thread)
        i, calls[0] = calls[0], calls[0] + 1
        if i in fails:
            raise RuntimeError(f"boom at step {i}")

    agent, clock, _ = make_agent(max_sessions=2, hook=hook)
    await agent.start()
    s = await agent.open_session("a")
    log = s.record_feed()
    assert s.record_feed() is log and log.frontend is None  # (a fake frame model: no Stepper to ask)
    rec = Recorder(s)
    await step(agent, clock)  # step 0: nothing to feed
    s.on_oracle(OracleReset(1, clock.now()))
    s.on_oracle(OracleAppend(1, (5, 6), " a", clock.now()))
    await step(agent, clock, 2)  # steps 1 and 2
    s.on_oracle(OracleAppend(1, (7,), " b", clock.now()))
    fails.add(calls[0])  # the next step fails: its event is applied before the one after, step 3
    await step(agent, clock, 2, failed=lambda: agent.failed_steps)
    late = await agent.open_session("b")
    await step(agent, clock)
    with pytest.raises(KameError, match=r"session b: record_feed\(\) after its first step"):
        late.record_feed()
    s.on_oracle(OracleReset(2, clock.now()))  # after the last step: never fed
    await s.close()
    await late.close()
    await rec.task
    await agent.stop()
    assert log.received == 4 and log.events == {0: 1, 1: 1, 2: 3}
    assert log.steps == 5 and log.tokens == [(1, START), (2, 5), (3, 6), (4, 7)]
    oracle = rec.meta("oracle")
    doc = feed_record(log, oracle)
    assert [o["frame"] for o in oracle] == [1, 1, 3, None] and doc["oracle_frames"] is True
    assert doc == {"max_delay": None, "delays": None, "oracle": None, "start_id": None, "pad_id": None,
                   "text_card": None, "steps": 5, "oracle_tokens": [[1, START], [2, 5], [3, 6], [4, 7]],
                   "lost_steps": [], "unstepped_inputs": [], "oracle_frames": True}


def test_frames_are_set_only_when_the_events_match_the_log_one_to_one():
    log = FeedLog(received=2, events={0: 4})
    one = [{"event": "reset", "prediction_id": 1}]
    assert feed_record(log, one)["oracle_frames"] is False and "frame" not in one[0]
    assert feed_record(None, one) is None  # a cascade: no front-end


def test_the_feed_log_tells_a_lost_output_from_an_unheard_input():
    """With the model's own step count (RowOutput.step), a failed step that ran is a lost output,
    one that did not is an input frame the model never heard."""
    from kame.runtime.feedlog import FeedLog

    ran = FeedLog()
    for k in (0, 2):  # step 1 ran but failed (its input frame 1 was heard)
        ran.handed(1)
        if k == 2:
            ran.handed(0)
        ran.stepped(9, k)
    assert ran.lost == [1] and ran.unstepped == [] and ran.events == {0: 0, 1: 1} and ran.steps == 3
    skipped = FeedLog()
    for k in (0, 1):  # the job of input frame 1 failed before the model stepped: input 2 went to step 1
        skipped.handed(0)
        if k == 1:
            skipped.handed(1)
        skipped.stepped(9, k)
    assert skipped.lost == [] and skipped.unstepped == [1] and skipped.events == {0: 1}
