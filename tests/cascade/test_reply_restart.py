"""An LLM failure that says a new request will work (BackendError ``restarting``: the embedded
LLM's child died while idle and restarts, kame.backend.llm.embedded) is reported, then the
cascade's reply asks the LLM again, once, waiting for the reload as for any "loading" LLM, and
speaks the answer (was: the turn failed unanswered, the user had to ask again). Any other failure
(a dead remote server), or a second such one, still fails the turn. On a FakeClock."""

import asyncio

from kame.cascade.config import CascadeConfig
from kame.cascade.reply import ReplyParts, ReplyPipeline
from kame.errors import BackendError
from kame.runtime.base import ErrorEvent
from kame.runtime.clock import FakeClock

from ..backend.scripted_llm import ReloadingLLM
from ..backend.test_oracle_reload import run_for
from ..backend.test_retry_after_gate import settle
from .fakes import Driver, FakeTTS
from .test_session import _agent

DIED = ("embedded LLM failed: the LLM child process died (exit code -9) between requests; restarting it "
        "(the next request waits for its model to load)")


def died_while_idle(restarting: bool = True) -> BackendError:
    exc = BackendError(DIED)
    exc.restarting = restarting
    return exc


def errors(out: list) -> list[str]:
    return [o.message for o in out if isinstance(o, ErrorEvent)]


async def test_a_turn_whose_llm_restarts_is_asked_again_and_answered():
    clock = FakeClock()
    llm = ReloadingLLM()
    tts = FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts)
    d = Driver(clock, await agent.open_session())
    d.session.stt.say("what is the capital of france", clock.now())
    await d.step(frames=2)
    assert len(llm.calls) == 1
    llm.reload()  # (the embedded LLM's dispatcher starts the restart as it answers the request)
    llm.calls[0].fail(died_while_idle())
    await d.step(frames=2)
    assert errors(d.out) == [f"llm embedded failed during the reply to turn 1: {DIED}; the reply asks it again "
                             "(once), waiting for that"]
    assert [m["status"] for m in d.metas("backend")] == ["down"]
    assert len(llm.calls) == 2  # asked again at once: that request waits for the reload
    await d.step(frames=250)  # 20 s of reload: twice the first-piece timeout
    assert len(errors(d.out)) == 1 and d.metas("agent_turn") == [] and not d.voiced()
    llm.loaded()
    await d.step(frames=5)
    llm.calls[1].send("Paris.")
    llm.calls[1].end()
    await d.step(frames=30)
    assert d.voiced() and tts.texts == ["Paris."]  # the answer is spoken
    turn = d.metas("agent_turn")[-1]
    assert turn["failed"] is False and turn["text"] == "Paris."
    assert [m["status"] for m in d.metas("backend")] == ["down", "up"]
    assert len(errors(d.out)) == 1 and len(llm.calls) == 2
    await d.close()
    await agent.stop()


def make(clock: FakeClock, out: list):
    llm = ReloadingLLM()
    parts = ReplyParts(llm, FakeTTS(clock), CascadeConfig(first_timeout=10.0, chunk_timeout=5.0), clock,
                       out.append, session="c2")
    rp = ReplyPipeline(parts, metric=lambda *a: None)
    rp.start([], t_user_end=0.0, turn_id=3)
    return rp, llm


async def test_other_failures_and_a_second_restart_still_fail_the_turn():
    clock, out = FakeClock(), []
    rp, llm = make(clock, out)
    await settle()
    llm.calls[0].fail(died_while_idle(restarting=False))  # (a dead remote server: no ``restarting``)
    await asyncio.wait_for(rp.wait(), 5)  # (a regression fails, not hangs: the FakeClock stands still)
    assert rp.failed and len(llm.calls) == 1 and errors(out) == [
        f"llm embedded failed during the reply to turn 3: {DIED}"]

    out.clear()
    rp, llm = make(clock, out)
    await settle()
    llm.calls[0].fail(died_while_idle())
    await settle()
    assert not rp.failed and len(llm.calls) == 2
    llm.calls[1].fail(died_while_idle())  # asked again once only
    await run_for(clock, 1.0)
    await asyncio.wait_for(rp.wait(), 5)
    assert rp.failed and len(llm.calls) == 2 and len(errors(out)) == 2
    assert errors(out)[1] == f"llm embedded failed during the reply to turn 3: {DIED}"

    out.clear()
    rp, llm = make(clock, out)
    await settle()
    llm.calls[0].send("Paris")  # its text came: not asked again (the words would be said twice)
    await settle()
    llm.calls[0].fail(died_while_idle())
    await asyncio.wait_for(rp.wait(), 5)
    assert rp.failed and len(llm.calls) == 1 and len(errors(out)) == 1
