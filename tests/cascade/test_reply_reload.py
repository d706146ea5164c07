"""A reload of the LLM's model (``state`` "loading": the embedded LLM's child restarting after it
died) is waited for by the cascade's reply as by the tandem's oracle (one stall timer,
kame.runtime.clock.next_within), not called a stall: a turn during a reload said "LLM stalled"
and failed. The user hears silence meanwhile, as while a slow LLM thinks; the wait is bounded
(kame.runtime.clock.RELOAD_WAIT_S); a short reload that began and ended within the timer counts
too (its ``loaded_at`` moved). The session's "stats" Meta counts the waits (wait_llm_loading). On a
FakeClock."""

import logging

from kame.cascade.config import CascadeConfig
from kame.cascade.reply import ReplyParts, ReplyPipeline
from kame.runtime.base import ErrorEvent, Meta
from kame.runtime.clock import RELOAD_WAIT_S, FakeClock

from ..backend.scripted_llm import ReloadingLLM
from ..backend.test_oracle_reload import run_for
from ..backend.test_retry_after_gate import settle
from .fakes import Driver, FakeTTS
from .test_session import _agent


def make(clock: FakeClock, out: list):
    llm = ReloadingLLM()
    parts = ReplyParts(llm, FakeTTS(clock), CascadeConfig(first_timeout=10.0, chunk_timeout=5.0), clock,
                       out.append, session="c2")
    rp = ReplyPipeline(parts, metric=lambda *a: None)
    rp.start([], t_user_end=0.0, turn_id=3)
    return rp, parts, llm


def failures(out: list) -> list[str]:
    return [o.message for o in out if isinstance(o, ErrorEvent)]


async def test_a_reload_is_waited_for_not_a_stall(caplog):
    clock, out = FakeClock(), []
    with caplog.at_level(logging.INFO, logger="kame.cascade.reply"):
        rp, parts, llm = make(clock, out)
        await settle()
        llm.reload()
        await run_for(clock, 140.0)  # (QA's reload took 140 s; the 10 s timer long ran out)
        assert not rp.failed and failures(out) == [] and parts.stats["wait_llm_loading"] == 1
        llm.loaded()
        await run_for(clock, 9.0)  # after the load: the whole first-piece limit again
        assert not rp.failed and failures(out) == []
        llm.calls[0].send("Paris is the capital.")
        llm.calls[0].end()
        await run_for(clock, 2.0)  # (the TTS speaks it)
    assert rp.done and not rp.failed and rp.text == "Paris is the capital." and len(llm.calls) == 1
    assert [o for o in out if isinstance(o, Meta)] == []  # (no "backend" Meta: the LLM was never down)
    assert "stalled" not in caplog.text
    assert caplog.text.count("session c2: the reply to turn 3 waits for llm embedded, which is (re)loading "
                             "its model") == 1


async def test_a_stall_after_the_reload_and_a_reload_that_never_ends_still_fail():
    clock, out = FakeClock(), []
    rp, parts, llm = make(clock, out)
    await settle()
    llm.reload()
    await run_for(clock, 30.0)
    llm.loaded()
    await run_for(clock, 9.0)
    assert not rp.failed
    await run_for(clock, 2.5)  # loaded (seen within a second), then silent for the whole limit: a stall
    await rp.wait()
    assert rp.failed and failures(out) == [
        "llm embedded failed during the reply to turn 3: LLM embedded stalled: nothing for 10 s after it reloaded its model"]

    out.clear()
    rp = ReplyPipeline(parts, metric=lambda *a: None)
    rp.start([], t_user_end=0.0, turn_id=4)
    await settle()
    llm.calls[1].send("Paris")  # the first piece; then a reload mid-reply
    await settle()
    llm.reload()
    await run_for(clock, RELOAD_WAIT_S + 20.0, step=5.0)
    await rp.wait()
    assert rp.failed and failures(out) == [
        f"llm embedded failed during the reply to turn 4: LLM embedded still (re)loading its model after {RELOAD_WAIT_S:.0f} s"]
    assert parts.stats["wait_llm_loading"] == 2


async def test_a_reload_that_ends_before_the_timer_runs_out_gets_the_whole_limit_again(caplog):
    """A short reload between two pieces (from 1 s to 4 s of the 5 s limit): when the timer runs
    out, the LLM gets the whole limit again (was: "LLM stalled: nothing for 5 s after its last
    output" at 5 s, wait_llm_loading 0: the state was looked at only then, and it said "up");
    nothing within it is still a stall. The log line says the reload was over (was: "which is
    (re)loading its model", the load ended)."""
    clock, out = FakeClock(), []
    with caplog.at_level(logging.INFO, logger="kame.cascade.reply"):
        rp, parts, llm = make(clock, out)
        await settle()
        llm.calls[0].send("Paris")
        await settle()
        await run_for(clock, 1.0)
        llm.reload()
        await run_for(clock, 3.0)
        llm.loaded()
        await run_for(clock, 5.0)  # 9 s: the 5 s timer ran out 4 s ago
    assert not rp.failed and failures(out) == [] and parts.stats["wait_llm_loading"] == 1
    assert caplog.text.count("session c2: the reply to turn 3 waits for llm embedded, which was (re)loading "
                             "its model") == 1
    await run_for(clock, 1.5)
    await rp.wait()
    assert rp.failed and failures(out) == [
        "llm embedded failed during the reply to turn 3: LLM embedded stalled: nothing for 5 s after it reloaded its model"]


async def test_a_turn_during_a_reload_hears_silence_then_the_answer():
    clock = FakeClock()
    llm = ReloadingLLM()
    agent, _ = await _agent(clock, llm, FakeTTS(clock))
    d = Driver(clock, await agent.open_session())
    llm.reload()
    d.session.stt.say("what is the capital of france", clock.now())
    await d.step(frames=375)  # 30 s of reload: three times the first-piece timeout
    assert [o for o in d.out if isinstance(o, ErrorEvent)] == [] and d.metas("backend") == []
    assert d.metas("agent_turn") == [] and not d.voiced()
    assert len(d.audio()) >= 370  # (silence, every 80 ms: cascade.emit_silence, as while a slow LLM thinks)
    llm.loaded()
    await d.step(frames=5)
    llm.calls[0].send("Paris.")
    llm.calls[0].end()
    await d.step(frames=30)
    assert d.voiced() and d.metas("agent_turn")[-1]["failed"] is False
    assert d.metas("agent_turn")[-1]["text"] == "Paris."
    assert [o for o in d.out if isinstance(o, ErrorEvent)] == []
    assert [m.get("wait_llm_loading") for m in d.metas("stats")][-1:] == [1]  # (while it runs: it changed)
    await d.close()
    assert d.metas("stats")[-1]["final"] is True and d.metas("stats")[-1].get("wait_llm_loading") == 1
    await agent.stop()
