"""A cascade reply whose LLM generates a long "word" (a URL, code) sends keep-alives, empty pieces,
while it holds the word back (the embedded LLM's child: one a token): the reply's stall timer
takes them as progress, but they are no text: nothing sent, spoken, nor a first piece for
llm_ttft (QA k43 qa6 finding 1: `kame demo --mode cascade` failed its reply with "LLM stalled:
nothing for 5 s after its last output" on a 58-character URL). A silent LLM still stalls. On a
FakeClock; the child and the oracle: tests/backend/test_llm_keepalive.py."""

from kame.cascade.config import CascadeConfig
from kame.cascade.reply import ReplyParts, ReplyPipeline
from kame.runtime.base import AgentText, ErrorEvent
from kame.runtime.clock import FakeClock

from ..backend.scripted_llm import ScriptedLLM
from ..backend.test_llm_keepalive import keep_alives
from ..backend.test_oracle_reload import run_for
from ..backend.test_retry_after_gate import settle
from .fakes import FakeTTS


def make(first: float = 10.0, chunk: float = 1.5):
    clock, out, metrics = FakeClock(), [], []
    llm = ScriptedLLM()
    parts = ReplyParts(llm, FakeTTS(clock), CascadeConfig(first_timeout=first, chunk_timeout=chunk), clock, out.append)
    rp = ReplyPipeline(parts, metric=lambda name, value, labels: metrics.append((name, value)))
    rp.start([], t_user_end=0.0, turn_id=1)
    return rp, llm, clock, out, metrics


def failures(out: list) -> list[str]:
    return [o.message for o in out if isinstance(o, ErrorEvent)]


async def test_a_long_word_is_no_stall_and_its_keep_alives_no_text():
    rp, llm, clock, out, metrics = make()
    await settle()
    call = llm.calls[0]
    call.send("See here: ")
    await settle()
    await keep_alives(call, clock, 100)  # 25 s of one word: the 1.5 s timer would have run out
    call.send("https://x/x/x now.")
    call.end()
    await run_for(clock, 3.0)
    assert rp.done and not rp.failed and failures(out) == [] and len(llm.calls) == 1
    assert rp.text == "See here: https://x/x/x now."
    assert [o.text for o in out if isinstance(o, AgentText)] == ["See here: ", "https://x/x/x now."]
    assert [v for n, v in metrics if n == "llm_ttft"] == [0.0]


async def test_keep_alives_before_the_first_text_give_at_least_the_chunk_limit():
    rp, llm, clock, out, metrics = make(first=3.0)
    await settle()
    call = llm.calls[0]
    await keep_alives(call, clock, 40)  # 10 s of a first word (was: "nothing within 3 s of the request")
    assert not rp.failed and failures(out) == [] and not any(isinstance(o, AgentText) for o in out)
    call.send("https://x/x now.")
    call.end()
    await settle()
    await run_for(clock, 3.0)
    assert rp.done and not rp.failed and rp.text == "https://x/x now."
    assert [v for n, v in metrics if n == "llm_ttft"] == [10.0]  # the first text's, not a keep-alive's


async def test_a_silent_llm_still_stalls_the_reply():
    rp, llm, clock, out, _ = make(first=3.0)
    await settle()
    await keep_alives(llm.calls[0], clock, 8)  # 2 s, then nothing
    await run_for(clock, 1.25)
    assert not rp.failed  # (3 s from the request not over yet)
    await run_for(clock, 0.5)
    await rp.wait()
    assert rp.failed and failures(out) == [
        "llm scripted failed during the reply to turn 1: LLM scripted stalled: nothing for 1.5 s after its last output"]

    out.clear()
    rp = ReplyPipeline(rp.parts, metric=lambda *a: None)
    rp.start([], t_user_end=0.0, turn_id=2)
    await settle()
    call = llm.calls[1]
    call.send("See here: ")
    await settle()
    await keep_alives(call, clock, 4)
    await run_for(clock, 1.5)  # after text and keep-alives: 1.5 s of nothing is a stall
    await rp.wait()
    assert rp.failed and failures(out) == [
        "llm scripted failed during the reply to turn 2: LLM scripted stalled: nothing for 1.5 s after its last output"]
    assert rp.text == "See here: "


async def test_a_silent_llm_stalls_the_reply_at_its_first_timeout():
    rp, llm, clock, out, _ = make(first=3.0)
    await settle()
    await run_for(clock, 3.5)
    await rp.wait()
    assert rp.failed and failures(out) == [
        "llm scripted failed during the reply to turn 1: LLM scripted stalled: nothing within 3 s of the request"]
