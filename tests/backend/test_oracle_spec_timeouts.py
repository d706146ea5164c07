"""The timeouts an LLM's spec sets hold for the oracle too, and the oracle names the LLM by its
spec (QA k27 back-end faults, finding 2): ``openai:MODEL;first_token_timeout=60`` was cut at the
oracle's own 10 s ("stalled: nothing for 10.00 s"), and its lines named the LLM by its URL."""

import asyncio
import logging
from types import SimpleNamespace

import pytest

from kame import registry
from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy, stall_limits
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import Transcript, Word
from kame.config import load_config
from kame.runtime.backend import WatchedLLM, producer_factory
from kame.runtime.clock import FakeClock

from .scripted_llm import ScriptedLLM

SPEC = "openai:fake-model;first_token_timeout=60"


def tr(words: str) -> Transcript:
    ws = tuple(Word(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate(words.split()))
    return Transcript(ws, True, ws[-1].end + 0.1)


async def settle(n: int = 200) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def make(llm, statuses, spec=SPEC):
    clock = FakeClock()
    p = OracleProducer(WatchedLLM(llm, lambda ok, err: statuses.append((ok, err)), spec), default_tokenizer(),
                       OraclePolicy(retry_backoff=0.5), clock=clock, on_event=lambda ev: None, session="s1")
    return p, clock


async def test_an_llm_spec_first_token_timeout_is_not_cut_at_the_oracles(caplog):
    statuses = []
    llm = ScriptedLLM()
    llm.url = "http://127.0.0.1:9/v1/chat/completions"
    llm.stall_timeouts = (60.0, None)  # as openai:MODEL;first_token_timeout=60 sets it
    p, clock = make(llm, statuses)
    with caplog.at_level(logging.WARNING, logger="kame.backend.oracle"):
        await p.on_transcript(tr("what is the capital of france"))
        await settle()
        clock.advance(14.0)  # past the oracle's 10 s
        await settle()
        assert p.stats["failed"] == 0 and statuses == []  # (was: "stalled: nothing for 10.00 s")
        clock.advance(46.5)  # past the spec's 60 s
        await settle()
    assert p.stats["failed"] == 1
    # named by its spec (was: by its URL)
    assert statuses == [(False, f"LLM {SPEC} stalled: nothing for 60.00 s")]
    assert "oracle prediction 1 failed (LLM openai:fake-model;first_token_timeout=60 stalled" in caplog.text
    await p.aclose()


async def test_the_answered_with_no_text_line_names_the_llm_by_its_spec(caplog):
    statuses = []
    llm = ScriptedLLM(auto=[])
    llm.url = "http://127.0.0.1:9/v1/chat/completions"
    p, clock = make(llm, statuses, spec="openai:fake-model")
    with caplog.at_level(logging.WARNING, logger="kame.backend.oracle"):
        await p.on_transcript(tr("what is the capital of france"))
        await settle()
    assert "oracle prediction 1: LLM openai:fake-model answered with no text" in caplog.text
    assert "127.0.0.1" not in caplog.text
    await p.aclose()


def test_stall_limits_take_the_larger_of_the_watchdogs_and_the_specs():
    assert stall_limits(10.0, 5.0, SimpleNamespace(stall_timeouts=(60.0, None))) == (60.0, 5.0)
    assert stall_limits(10.0, 5.0, SimpleNamespace(stall_timeouts=(3.0, 20.0))) == (10.0, 20.0)
    assert stall_limits(10.0, 5.0, object()) == (10.0, 5.0)


@pytest.mark.parametrize("kind, spec, own, first", [
    ("llm", "openai:m;first_token_timeout=60,chunk_timeout=20", (60.0, 20.0), 60.0),
    ("llm", "openai:m", (None, None), 15.0),  # (unset: the adapter's 15 s, not the oracle's concern)
    ("tts", "openai:tts-1;first_chunk_timeout=30", (30.0, None), 30.0),
    ("tts", "openai:tts-1", (None, None), 15.0),
])
def test_the_openai_adapters_say_which_timeouts_their_spec_set(monkeypatch, kind, spec, own, first):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    part = registry.create(kind, spec)
    assert part.stall_timeouts == own
    assert (part.first_token_timeout if kind == "llm" else part.first_chunk_timeout) == first


def test_the_tandem_wraps_its_llm_with_the_backend_llm_spec():
    make_p = producer_factory(load_config(None, []), None, ScriptedLLM(), default_tokenizer(), SPEC)
    producer = make_p(SimpleNamespace(producer_metric=None, on_oracle=None, id="s1"), lambda *a: None)
    assert producer.llm.spec == SPEC and producer.llm.name == SPEC
