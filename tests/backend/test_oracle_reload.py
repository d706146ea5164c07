"""A reload of the LLM's model (``state`` "loading": the embedded LLM's child restarting after it
died) is waited for by the oracle's stall timers, not called a stall (QA k41 finding 6: "LLM
embedded stalled: nothing for 10.00 s", a failed prediction and "llm down" while /api/health
said "loading"), nor is a short one that began and ended before the timer ran out (its
``loaded_at`` moved); the wait is bounded (kame.runtime.clock.RELOAD_WAIT_S: next_within, the
cascade's reply's timer too, tests/cascade/test_reply_reload.py)."""

import logging

from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import OracleAppend
from kame.runtime.backend import WatchedLLM
from kame.runtime.clock import RELOAD_WAIT_S, FakeClock

from .scripted_llm import ReloadingLLM
from .test_retry_after_gate import settle, tr


async def run_for(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    """Move ``clock`` on by ``seconds``, letting everything run after each ``step``."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        await settle()


def make():
    statuses, events = [], []
    llm = ReloadingLLM()
    clock = FakeClock()
    p = OracleProducer(WatchedLLM(llm, lambda ok, err: statuses.append((ok, err)), "embedded"), default_tokenizer(),
                       OraclePolicy(first_token_timeout=10.0, chunk_timeout=5.0, retry_backoff=0.5),
                       clock=clock, on_event=events.append, session="s3")
    return p, llm, clock, statuses, events


async def test_a_reload_is_waited_for_not_a_stall(caplog):
    p, llm, clock, statuses, events = make()
    with caplog.at_level(logging.INFO, logger="kame.backend.oracle"):
        await p.on_transcript(tr("what is the capital of france"))
        await settle()
        llm.reload()
        await run_for(clock, 140.0)  # (QA's reload took 140 s; the timer's 10 s long passed)
        assert p.stats["failed"] == 0 and statuses == [] and p.stats["wait_llm_loading"] == 1
        llm.loaded()
        await run_for(clock, 9.0)  # after the load: the whole first-token limit again
        assert p.stats["failed"] == 0 and statuses == []
        llm.calls[0].send("Paris.")
        llm.calls[0].end()
        await settle()
    assert p.stats["completed"] == 1 and len(llm.calls) == 1 and statuses == [(True, None)]
    assert any(isinstance(e, OracleAppend) for e in events)
    assert "stalled" not in caplog.text
    assert caplog.text.count("session s3: oracle prediction 1 waits for LLM embedded, which is (re)loading its "
                             "model") == 1
    await p.aclose()


async def test_a_stall_after_the_reload_and_a_reload_that_never_ends_still_fail():
    p, llm, clock, statuses, _ = make()
    await p.on_transcript(tr("what is the capital of france"))
    await settle()
    llm.reload()
    await run_for(clock, 30.0)
    llm.loaded()
    await run_for(clock, 9.0)
    assert statuses == []
    await run_for(clock, 2.5)  # loaded (seen within a second), then silent for the whole limit: a stall
    assert statuses == [(False, "LLM embedded stalled: nothing for 10.00 s after it reloaded its model")]
    assert p.stats["failed"] == 1
    await run_for(clock, 1.0)  # the back-off
    p._decide()  # (what the poll loop does): the retry
    await settle()
    assert len(llm.calls) == 2
    llm.reload()
    await run_for(clock, RELOAD_WAIT_S + 20.0, step=5.0)
    assert statuses[-1] == (False, f"LLM embedded still (re)loading its model after {RELOAD_WAIT_S:.0f} s")
    assert p.stats["failed"] == 2 and p.stats["wait_llm_loading"] == 2
    await p.aclose()


async def test_a_reload_that_ends_before_the_timer_runs_out_gets_the_whole_limit_again(caplog):
    """A short reload inside the first-token window (from 2 s to 8 s of 10 s), then the reloaded
    model reads the prompt: the timer gives it the whole limit again when it runs out (was: "LLM
    embedded stalled: nothing for 10.00 s" and wait_llm_loading 0: the state was looked at only
    then, and it said "up"). The log line says the reload was over (was: "which is (re)loading its
    model", the load long ended)."""
    p, llm, clock, statuses, events = make()
    with caplog.at_level(logging.INFO, logger="kame.backend.oracle"):
        await p.on_transcript(tr("what is the capital of france"))
        await settle()
        await run_for(clock, 2.0)
        llm.reload()
        await run_for(clock, 6.0)
        llm.loaded()
        await run_for(clock, 11.0)  # 19 s: the 10 s timer ran out 9 s ago
        assert p.stats["failed"] == 0 and statuses == [] and p.stats["wait_llm_loading"] == 1
        llm.calls[0].send("Paris.")
        llm.calls[0].end()
        await settle()
    assert p.stats["completed"] == 1 and len(llm.calls) == 1 and statuses == [(True, None)]
    assert any(isinstance(e, OracleAppend) for e in events) and "stalled" not in caplog.text
    assert caplog.text.count("oracle prediction 1 waits for LLM embedded") == 1
    assert "session s3: oracle prediction 1 waits for LLM embedded, which was (re)loading its model" in caplog.text
    await p.aclose()
