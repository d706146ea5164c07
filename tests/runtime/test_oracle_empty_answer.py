"""A tandem whose LLM answers with no text (tests/k27 finding 3): the session reports each empty
prediction (an ErrorEvent; no llm "down" Meta nor backend_failures: the LLM answered), and `kame run`'s
answer_missing warning blames that LLM instead of "give a longer --tail". The session's own
outputs go through the summary functions (kame.runtime.runreport)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from kame.backend.tokenizer import default_tokenizer
from kame.runtime.backend import BackendBridge, producer_factory
from kame.runtime.base import ErrorEvent
from kame.runtime.runreport import answer_missing, print_warnings

from .fakes import FakeSTT, step
from .test_backend_bridge import PieceLLM, errors, finish, make_agent, statuses, talk
from .test_answer_missing import _summary


def _record(rec) -> dict:
    """What `kame run` records of the session's outputs (filemode.play_session, in short)."""
    return {"components": {"mode": "tandem", "stt": "fake", "llm": "PieceLLM"},
            "transcripts": rec.meta("transcript"), "metrics": rec.meta("metric"), "oracle": rec.meta("oracle"),
            "errors": [{"t": o.t, "message": o.message} for o in rec.items if isinstance(o, ErrorEvent)],
            "other": []}


async def test_an_llm_that_answers_with_no_text_is_reported_and_blamed_for_the_missing_answer(capsys):
    llm = PieceLLM()  # (every stream ends with no piece)
    tok = default_tokenizer()
    agent, clock, _ = make_agent(lambda s: BackendBridge(s, FakeSTT(), producer_factory(s.agent.config, s.clock, llm, tok),
                                                         s.clock, retry_s=0.16))
    s, rec = await talk(agent, clock, 12)  # voiced: partials, each a prediction that ends empty
    for _ in range(5):  # then silence: the final, its prediction empty too
        await s.push_audio(np.zeros(1920, np.float32))
        await step(agent, clock)
        for _ in range(20):
            await asyncio.sleep(0)
    assert llm.calls >= 1 and s.backend._producer.stats["empty"] == llm.calls
    errs = errors(rec)
    assert len(errs) == llm.calls and all(
        e == "back-end llm gave the oracle no answer (front-end continues): LLM PieceLLM answered with no text"
        for e in errs)
    # (review231 finding 1: was "down", the LLM reachable and answering; /api/health said degraded)
    assert statuses(rec, "llm") == [] and s.stats.backend_failures == 0
    await finish(agent, s, rec)

    miss = answer_missing(_record(rec))
    assert miss is not None and miss["llm_empty"] >= 1
    print_warnings(_summary(llm="openai:fake-model", errors=len(errs), answer_missing=miss), Path("out.wav"))
    warning = capsys.readouterr().out
    # (was: "...; give a longer --tail")
    assert "had not reached the front-end's oracle" in warning and "--tail" not in warning
    assert "its LLM 'openai:fake-model' answered with no text" in warning and "check that LLM's replies" in warning


def test_answer_missing_counts_only_empty_answers_since_the_last_words():
    from .test_answer_missing import _yes_no

    rec = _yes_no()
    empty = "back-end llm gave the oracle no answer (front-end continues): LLM x answered with no text"
    rec["errors"] = [{"t": 1.0, "message": empty},
                     {"t": 7.5, "message": "back-end llm failed (front-end continues): LLM x: HTTP 500"}]
    assert answer_missing(rec)["llm_empty"] == 0  # (before "No." was transcribed; another failure)
    rec["errors"].append({"t": 7.6, "message": empty})
    assert answer_missing(rec)["llm_empty"] == 1
