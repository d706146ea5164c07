"""The agent's TEXT stream across replies (a new reply starts on a new word, in the cascade and in
hybrid routing), and reply failures logged with the session they belong to."""

import logging

from kame.runtime.base import AgentText
from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeLLM, FakeTTS, speech_frame
from .test_hybrid import _final, _frames, _router
from .test_session import _agent


def _texts(out) -> list[str]:
    return [o.text for o in out if isinstance(o, AgentText)]


async def test_consecutive_replies_do_not_run_together():
    """A client concatenates the TEXT pieces (docs/protocol.md): a reply cut by a barge-in, then
    the next, read "... the capital of Paris is ...", not "the capital ofParis is" (the LLM's leading
    whitespace is dropped). The first reply gets no leading space."""
    clock = FakeClock()
    llm = FakeLLM(clock, ["Paris", " is the capital of", " France, a lovely country."], delay=0.5)
    agent, _ = await _agent(clock, llm, FakeTTS(clock), **{"cascade.first_clause_min_words": 2})
    d = Driver(clock, await agent.open_session())
    d.session.stt.say("what is the capital of france", clock.now())
    for _ in range(40):  # until the reply has said "Paris is the capital of"
        if "capital of" in "".join(_texts(d.out)):
            break
        await d.step()
    await d.step(speech_frame(), frames=5)  # the user barges in before the rest of reply 1
    assert d.metas("barge_in")
    d.session.stt.say("sorry what was that", clock.now())
    await d.step(frames=60)
    text = "".join(_texts(d.out))
    assert text == "Paris is the capital of Paris is the capital of France, a lovely country."
    assert _texts(d.out)[0] == "Paris"
    await d.close()
    await agent.stop()


async def test_a_reply_after_text_ending_in_a_space_gets_no_second_one():
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi there. "], delay=0.1), FakeTTS(clock))
    d = Driver(clock, await agent.open_session())
    for question in ("hello", "hello again"):
        d.session.stt.say(question, clock.now())
        await d.step(frames=30)
    assert _texts(d.out) == ["Hi there. ", "Hi there. "]
    await d.close()
    await agent.stop()


async def test_a_routed_reply_after_the_front_end_s_words_starts_a_new_word():
    """Hybrid routing: the front-end's text, then a routed (cascade-path) reply."""
    clock = FakeClock()
    llm, tts = FakeLLM(clock, ["Seventeen times two", " is thirty four."], delay=0.1), FakeTTS(clock)
    router, events = _router(clock, llm, tts)
    router.on_agent_text(" Okay,", clock.now())  # the front-end's words (the session sends them)
    assert router.on_transcript(_final("what is seventeen times two", clock.now())) == "structured"
    await _frames(clock, router, 40)
    assert _texts(events) == [" Seventeen times two", " is thirty four."]

    fresh, events = _router(clock, llm, tts)  # nothing said before it: no leading space
    fresh.on_transcript(_final("what is seventeen times two", clock.now()))
    await _frames(clock, fresh, 40)
    assert _texts(events)[0] == "Seventeen times two"


async def test_a_failed_reply_is_logged_with_its_session(caplog):
    """Every session has a "turn 1": the log line says whose reply failed (was: not)."""
    clock = FakeClock()
    llm = FakeLLM(clock, ["Fine."], delay=0.1, fail_calls={1})
    agent, _ = await _agent(clock, llm, FakeTTS(clock))
    d = Driver(clock, await agent.open_session("alice"))
    with caplog.at_level(logging.WARNING, logger="kame.cascade.reply"):
        d.session.stt.say("how are you", clock.now())
        await d.step(frames=10)
    assert [r.getMessage() for r in caplog.records if r.name == "kame.cascade.reply"] == [
        "session alice: llm fake-llm failed during the reply to turn 1: fake LLM is down"]
    await d.close()
    await agent.stop()


async def test_a_failed_routed_reply_is_logged_with_its_session(caplog):
    from kame.cascade.config import CascadeConfig
    from kame.cascade.agent import default_prompt_fn
    from kame.cascade.hybrid import HybridRouter

    clock = FakeClock()
    llm = FakeLLM(clock, ["Four."], delay=0.1, fail_calls={1})
    router = HybridRouter(llm, FakeTTS(clock), CascadeConfig(hybrid_routing=True), clock, emit=lambda o: None,
                          prompt_fn=default_prompt_fn(), session_id="s7")
    with caplog.at_level(logging.WARNING, logger="kame.cascade.reply"):
        router.on_transcript(_final("what is two plus two", clock.now()))
        await _frames(clock, router, 10)
    assert [r.getMessage() for r in caplog.records if r.name == "kame.cascade.reply"] == [
        "session s7: llm fake-llm failed during the reply to turn 1: fake LLM is down"]
