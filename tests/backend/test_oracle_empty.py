"""An oracle prediction whose LLM answered with no text (tests/k27 finding 3): was a completed
prediction like any other, seen nowhere (no log line, no error, no count), so `kame run`
blamed --tail for the missing answer. Now it is logged naming the session and the LLM, counted
(stats ``empty``) and handed to the LLM's health watcher, which reports it without marking the
LLM down (review231 finding 1); it is not retried."""

import asyncio
import logging

import pytest

from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import Transcript, Word
from kame.runtime.backend import WatchedLLM
from kame.runtime.clock import FakeClock

from .scripted_llm import ScriptedLLM


def tr(words: str, final: bool = True) -> Transcript:
    ws = tuple(Word(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate(words.split()))
    return Transcript(ws, final, ws[-1].end + 0.1)


async def settle(n: int = 200) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def make(llm, statuses, empties=None):
    clock = FakeClock()
    watched = WatchedLLM(llm, lambda ok, err: statuses.append((ok, err)),
                         on_empty=None if empties is None else empties.append)
    p = OracleProducer(watched, default_tokenizer(),
                       OraclePolicy(retry_backoff=0.5), clock=clock, on_event=lambda ev: None, session="s1")
    return p, clock


@pytest.mark.parametrize("pieces, said", [
    ([], "LLM scripted answered with no text"),
    (["", ""], "LLM scripted answered with no text"),  # (keep-alives only)
    (["user: and what about Berlin?\n"], "LLM scripted answered with no text (it went on with the conversation's "
                                         "next line)"),
])
async def test_a_prediction_with_no_text_is_logged_counted_and_reported_to_the_watcher(pieces, said, caplog):
    statuses, empties = [], []
    llm = ScriptedLLM(auto=pieces)
    p, clock = make(llm, statuses, empties)
    runner = asyncio.create_task(p.run())
    with caplog.at_level(logging.WARNING, logger="kame.backend.oracle"):
        await p.on_transcript(tr("what is the capital of france"))
        await settle()
    assert [r.getMessage() for r in caplog.records if r.name == "kame.backend.oracle"] == [
        f"session s1: oracle prediction 1: {said}; check that LLM's replies"]
    assert p.stats["empty"] == 1 and p.stats["completed"] == 1 and p.stats["failed"] == 0
    # (review231 finding 1: was statuses[-1] == (False, said): a reachable LLM marked down)
    assert empties == [said] and (False, said) not in statuses
    for _ in range(4):  # polls: no retry (the LLM would answer the same)
        clock.advance(1.0)
        await settle()
    assert p.prediction_id == 1 and len(llm.calls) == 1
    await p.aclose()
    await asyncio.wait_for(runner, 1)


async def test_a_prediction_with_text_is_not_empty(caplog):
    statuses = []
    p, _ = make(ScriptedLLM(auto=["Paris", "."]), statuses)
    with caplog.at_level(logging.WARNING, logger="kame.backend.oracle"):
        await p.on_transcript(tr("what is the capital of france"))
        await settle()
    assert p.stats["completed"] == 1 and p.stats["empty"] == 0 and not caplog.records
    assert statuses == [(True, None)]
    await p.aclose()


async def test_empty_answers_do_not_flap_the_llm_status():
    """review231 finding 1: two predictions each answered only with the conversation's next line
    were up (its first raw piece), down (no text), up, down: /api/health flapped to degraded."""
    statuses, empties = [], []
    p, clock = make(ScriptedLLM(auto=["user: and Berlin?\n"]), statuses, empties)
    await p.on_transcript(tr("what is the capital of france"))
    await settle()
    await p.on_transcript(tr("and of italy"))
    await settle()
    assert p.stats["empty"] == 2 and len(empties) == 2
    assert all(ok for ok, _ in statuses)  # (never down)
    await p.aclose()
