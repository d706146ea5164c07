"""A reload of the LLM's model (``state`` "loading": the embedded LLM's child restarting after it
died) is waited for by the oracle's stall timers, not called a stall (QA k41 finding 6: "LLM
embedded stalled: nothing for 10.00 s", a failed prediction and "llm down" while /api/health
said "loading"); the wait is bounded (kame.runtime.clock.RELOAD_WAIT_S: next_within, the
cascade's reply's timer too, tests/cascade/test_reply_reload.py)."""

import asyncio
import logging

from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import OracleAppend, Transcript, Word
from kame.runtime.backend import WatchedLLM
from kame.runtime.clock import RELOAD_WAIT_S, FakeClock

from .scripted_llm import ScriptedLLM


def tr(words: str) -> Transcript:
    ws = tuple(Word(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate(words.split()))
    return Transcript(ws, True, ws[-1].end + 0.1)


async def settle(n: int = 100) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def run_for(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)
        await settle()


def make():
    statuses, events = [], []
    llm = ScriptedLLM()
    llm.state = "up"
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
        llm.state = "loading"
        await run_for(clock, 140.0)  # (QA's reload took 140 s; the timer's 10 s long passed)
        assert p.stats["failed"] == 0 and statuses == [] and p.stats["wait_llm_loading"] == 1
        llm.state = "up"
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
    llm.state = "loading"
    await run_for(clock, 30.0)
    llm.state = "up"
    await run_for(clock, 9.0)
    assert statuses == []
    await run_for(clock, 2.5)  # loaded (seen within a second), then silent for the whole limit: a stall
    assert statuses == [(False, "LLM embedded stalled: nothing for 10.00 s after it reloaded its model")]
    assert p.stats["failed"] == 1
    await run_for(clock, 1.0)  # the back-off
    p._decide()  # (what the poll loop does): the retry
    await settle()
    assert len(llm.calls) == 2
    llm.state = "loading"
    await run_for(clock, RELOAD_WAIT_S + 20.0, step=5.0)
    assert statuses[-1] == (False, f"LLM embedded still (re)loading its model after {RELOAD_WAIT_S:.0f} s")
    assert p.stats["failed"] == 2 and p.stats["wait_llm_loading"] == 2
    await p.aclose()
