"""Hybrid routing answers a "structured" final by the cascade path; the tandem session says so
(TandemSession.on_transcript's result), and then that turn is not the oracle's as well."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import Transcript, Word
from kame.cascade.agent import default_prompt_fn
from kame.cascade.hybrid import HybridRouter

from kame.runtime.backend import load_backend
from kame.runtime.base import Meta

from .fakes import CREATED, FakeLLM, wait_for
from .test_engine import make_agent


def _said(text: str, t: float, final: bool = True) -> Transcript:
    return Transcript(tuple(Word(w, t + 0.1 * i, t + 0.1 * i + 0.08) for i, w in enumerate(text.split())), final,
                      t + 0.1 * len(text.split()))


class _NoTTS:
    sample_rate = 24000

    async def synthesize(self, text):
        return
        yield


@contextlib.asynccontextmanager
async def _hybrid_session():
    """A tandem session with hybrid routing and its back-end bridge (fake STT, LLM and TTS):
    (session, bridge, oracle producer, the fake LLM)."""
    agent, clock, log = make_agent(**{"backend.stt": "fake", "backend.llm": "fake", "cascade.tts": "fake",
                                      "cascade.hybrid_routing": True})
    agent._backend, _ = load_backend(agent.config, clock, default_tokenizer(), log)
    llm = next(c for c, _ in CREATED if isinstance(c, FakeLLM))
    await agent.start()
    s = await agent.open_session()
    try:
        await wait_for(lambda: s.backend._producer is not None)
        yield s, s.backend, s.backend._producer, llm
    finally:
        llm.hold = False
        await s.close()
        await agent.stop()


async def test_the_session_says_which_finals_hybrid_routing_answers():
    agent, clock, _ = make_agent(**{"cascade.hybrid_routing": True})
    await agent.start()
    s = await agent.open_session()
    try:
        s.router = HybridRouter(FakeLLM(), _NoTTS(), agent.config.cascade, clock, emit=s._put,
                                prompt_fn=default_prompt_fn())
        assert s.on_transcript(_said("what is two", 0.0, final=False)) is False  # (partials: the oracle's)
        assert s.on_transcript(_said("what is two plus two", 0.0)) is True  # structured: the router's reply
        assert s.router.routed_turns == 1
        assert s.on_transcript(_said("tell me about rome", 1.0)) is False  # chat: the oracle's
    finally:
        await s.close()
        await agent.stop()
    agent, clock, _ = make_agent()
    await agent.start()
    s = await agent.open_session()
    try:
        assert s.on_transcript(_said("what is two plus two", 0.0)) is False
    finally:
        await s.close()
        await agent.stop()


async def test_a_final_hybrid_routing_answers_gets_no_oracle_prediction(fake_components):
    """The bridge hands a routed final to the producer's conversation only (OracleProducer.on_routed):
    no prediction starts for it, and the one its partials started is cancelled (was: a second
    request to the one LLM at once, and an answer fed to the front-end, which could answer twice);
    a chat final still gets its prediction."""
    async with _hybrid_session() as (s, bridge, producer, llm):
        llm.hold = True  # (a prediction stays under way after its first piece)
        await bridge._on_transcript(_said("what is two", 0.0, final=False))
        await wait_for(lambda: llm.in_reply)
        assert producer.prediction_id == 1 and producer.busy  # a partial's prediction: kept while the user speaks
        await bridge._on_transcript(_said("what is two plus two", 0.0))  # structured
        assert producer.stats["routed"] == 1 and producer.stats["start_final"] == 0  # no prediction for it ...
        await wait_for(lambda: not producer.busy)  # ... and the running one cancelled, its feed blanked
        assert producer.prediction_id == 2 and producer.stats["blanked"] == 1
        assert s.router.routed_turns == 1 and s.router.active  # the cascade path answers it
        llm.hold = False
        await bridge._on_transcript(_said("tell me about rome", 2.0))  # chat: the oracle's
        assert producer.prediction_id == 3 and "rome" in str(producer.last_messages)
        # the routed reply, cut by that final before a word of it played, was not heard: the routed
        # question is back in the prompt, before the new final (was: left out of every later prompt)
        lines = producer.last_messages[-1].content.splitlines()
        assert lines[-2:] == ["user: what is two plus two", "user: tell me about rome"]


async def test_the_bare_reset_of_a_routed_final_is_not_counted_as_a_prediction(fake_components):
    """The bare OracleReset a routed final's producer emits (OracleProducer.on_routed: it only
    stops the front-end's feed of the cancelled prediction's queued tokens) is counted in the
    session's stats as ``blanked``, and its "oracle" Meta says ``bare``; was: counted in
    ``predictions`` and reported like a prediction."""
    async with _hybrid_session() as (s, bridge, producer, llm):
        llm.hold = True  # (the partial's prediction stays under way after its first piece)
        await bridge._on_transcript(_said("what is two", 0.0, final=False))
        await wait_for(lambda: llm.in_reply)
        await bridge._on_transcript(_said("what is two plus two", 0.0))  # structured: routed, the feed blanked
        await wait_for(lambda: producer.stats["blanked"] == 1)
        assert s.stats.predictions == 1 and s.stats.blanked == 1  # the partial's prediction; the bare reset
        assert s._stats_fields()["predictions"] == 1 and s._stats_fields()["blanked"] == 1
        resets = [m.data for m in list(s._queue._queue) if isinstance(m, Meta) and m.data.get("type") == "oracle"
                  and m.data.get("event") == "reset"]
        assert [(d["prediction_id"], d.get("bare", False)) for d in resets] == [(1, False), (2, True)]


async def test_the_routed_reply_heard_goes_into_the_oracle_conversation(fake_components):
    """When the router commits a routed reply's agent_turn, its heard text goes to the oracle
    producer as the agent's words (HybridRouter on_heard -> TandemSession.on_routed_reply ->
    the bridge); was: the next prediction saw the routed question, then the next one, with no
    agent line between, and could answer both."""
    async with _hybrid_session() as (s, bridge, producer, llm):
        await bridge._on_transcript(_said("what is two plus two", 0.0))  # structured: the router's
        silence = np.zeros(1920, np.float32)
        for _ in range(2000):  # (its LLM and TTS run in tasks: the reply plays to its end)
            if s.router.reply is None:
                break
            s.router.frame(silence)
            await asyncio.sleep(0.001)
        assert s.router.reply is None and llm.calls == 1
        await bridge._on_transcript(_said("tell me about rome", 2.0))  # chat: the oracle's
        lines = producer.last_messages[-1].content.splitlines()
        assert lines[-3:] == ["user: what is two plus two", "agent: answer 1 .", "user: tell me about rome"]


async def test_a_routed_reply_that_fails_unheard_leaves_its_question_to_the_oracle(fake_components):
    """The routed reply's LLM fails before a word is heard: the router still commits its
    agent_turn (on_heard with ""), and the question goes back into the oracle's prompts and is
    owed a prediction (was: nothing heard, nothing reported; the question left out of every
    later prompt and never answered)."""
    async with _hybrid_session() as (s, bridge, producer, llm):
        llm.dead = True
        await bridge._on_transcript(_said("what is two plus two", 0.0))  # structured: the router's
        assert producer.stats["routed"] == 1 and producer.prediction_id == 0
        silence = np.zeros(1920, np.float32)
        for _ in range(2000):  # (its LLM runs in a task: the failed reply ends)
            if s.router.reply is None:
                break
            s.router.frame(silence)
            await asyncio.sleep(0.001)
        assert s.router.reply is None and s.router.history[-1].speaker == "user"
        assert producer.stats["routed_unheard"] == 1 and producer.stats["start_final"] == 1
        assert producer.last_messages[-1].content.splitlines()[-1] == "user: what is two plus two"


async def test_the_session_asks_the_router_whether_it_started_a_reply():
    """A final is the router's when the router started a reply for it (its routed_turns count),
    not by the session re-checking the router's own start condition (was: route == "structured"
    and hybrid_routing, which a router starting nothing still met)."""

    class _Declines:  # routes a turn "structured" but starts no reply for it
        cfg, routed_turns = type("Cfg", (), {"hybrid_routing": True})(), 0

        def on_transcript(self, tr):
            return "structured"

        async def aclose(self):
            pass

    agent, _, _ = make_agent()
    await agent.start()
    s = await agent.open_session()
    try:
        s.router = _Declines()
        assert s.on_transcript(_said("what is two plus two", 0.0)) is False  # the oracle's, then
    finally:
        s.router = None
        await s.close()
        await agent.stop()
