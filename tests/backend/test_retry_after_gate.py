"""review231 findings 4 and 8: an HTTP 429's Retry-After is one wait per server client (the
adapter's ``rate_gate``, kame.backend.policy.RetryAfterGate), read by the STT, the cascade and
the oracle (was: four copies, per session / per producer / per adapter, each differently), and
the openai STT logs it once (was: again for each stream's request in flight that came back 429)."""

import asyncio
import logging

from kame import registry
from kame.backend.oracle import OracleProducer
from kame.backend.policy import MAX_RETRY_AFTER, OraclePolicy, RetryAfterGate
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import Transcript, Word
from kame.errors import BackendError
from kame.runtime.backend import WatchedLLM
from kame.runtime.clock import FakeClock

from .scripted_llm import ScriptedLLM

URL = "http://127.0.0.1:9/v1"


def test_the_gate_notes_refuses_and_caps():
    gate = RetryAfterGate()
    assert gate.note(100.0, 5.0) is True and gate.left(101.0) == 4.0
    try:
        gate.refuse(101.0, "LLM x: not asked")
        raise AssertionError("not refused")
    except BackendError as exc:
        assert str(exc) == ("LLM x: not asked: it rate-limited kame (HTTP 429) and asked it to wait 4.0 s more "
                            "(Retry-After)") and exc.retry_after == 4.0
    gate.refuse(105.0)  # over: nothing
    assert gate.note(200.0, 3600.0) is True and gate.left(200.0) == MAX_RETRY_AFTER
    assert gate.note(200.0, None) is False and gate.note(200.0, -1) is False


def test_a_wait_extended_by_milliseconds_is_no_news():
    gate = RetryAfterGate()
    assert gate.note(100.0, 5.0) is True
    assert gate.note(100.01, 5.0) is False  # (another stream's request in flight: 10 ms later)
    assert gate.note(100.02, 4.0) is False and abs(gate.left(100.0) - 5.01) < 1e-9
    assert gate.note(102.0, 5.0) is True  # (the wait grew by 2 s: news)


def test_the_openai_adapters_each_keep_one_gate_that_a_watcher_forwards():
    llm = registry.create("llm", "openai:m", base_url=URL)
    assert isinstance(llm.rate_gate, RetryAfterGate)
    assert WatchedLLM(llm, lambda ok, err: None).rate_gate is llm.rate_gate
    assert isinstance(registry.create("tts", "openai:tts-1", base_url=URL).rate_gate, RetryAfterGate)
    assert isinstance(registry.create("stt", "openai:whisper-1", base_url=URL).rate_gate, RetryAfterGate)


def test_the_stt_logs_a_429_once_for_requests_in_flight(caplog):
    clock = FakeClock(100.0)
    stt = registry.create("stt", "openai:whisper-1", base_url=URL, clock=clock)
    caplog.set_level(logging.WARNING, logger="kame.backend.stt.openai")
    for _ in range(3):  # three streams' requests, back 429 a few ms apart
        exc = BackendError("STT x: HTTP 429: slow down")
        exc.retry_after = 5.0
        stt._rate_limited(exc)
        clock.advance(0.005)
    lines = [r.getMessage() for r in caplog.records if "rate-limited kame" in r.getMessage()]
    assert len(lines) == 1 and "no transcription request for 5.0 s" in lines[0]
    assert 4.9 < stt.wait_left() <= 5.0


class GatedLLM(ScriptedLLM):
    """A scripted LLM with a shared Retry-After wait, as the openai adapter has."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.rate_gate = RetryAfterGate()


def tr(words: str) -> Transcript:
    ws = tuple(Word(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate(words.split()))
    return Transcript(ws, True, ws[-1].end + 0.1)


async def settle(n: int = 100) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_the_oracle_waits_out_a_429_its_llms_other_users_got():
    """Hybrid routing's reply (or another session) got a 429 from the LLM: the oracle does not
    ask it before the Retry-After is over (was: its own back-off only, so it asked at once)."""
    clock = FakeClock(0.0)
    llm = GatedLLM(auto=["Paris."])
    p = OracleProducer(WatchedLLM(llm, lambda ok, err: None), default_tokenizer(), OraclePolicy(poll_interval=0.5),
                       clock=clock, on_event=lambda ev: None, session="s1")
    runner = asyncio.create_task(p.run())
    llm.rate_gate.note(clock.now(), 5.0)  # (the cascade path's 429)
    await p.on_transcript(tr("what is the capital of france"))
    await settle()
    assert len(llm.calls) == 0 and p.stats["wait_rate_limited"] == 1
    for _ in range(9):
        clock.advance(0.5)
        await settle()
    assert len(llm.calls) == 0  # 4.5 s: still waiting
    clock.advance(1.0)
    await settle()
    assert len(llm.calls) == 1 and p.stats["start_final"] == 1
    await p.aclose()
    await asyncio.wait_for(runner, 1)


async def test_the_oracles_429_holds_back_its_llms_other_users():
    clock = FakeClock(0.0)
    llm = GatedLLM()
    p = OracleProducer(llm, default_tokenizer(), OraclePolicy(), clock=clock, on_event=lambda ev: None)
    await p.on_transcript(tr("what is the capital of france"))
    await settle()
    exc = BackendError("LLM x: HTTP 429: slow down")
    exc.retry_after = 7.0
    llm.calls[0].fail(exc)
    await settle()
    assert llm.rate_gate.left(clock.now()) == 7.0  # (the cascade, other sessions read it)
    assert p._gate.retry_at == 7.0
    await p.aclose()


def test_a_first_wait_of_a_second_or_less_is_news():
    """review238 finding 3: with no wait running, a Retry-After of 1 s (the most common value)
    or less said False, so the STT never logged it; extending a running wait by that is still none."""
    gate = RetryAfterGate()
    assert gate.note(100.0, 1.0) is True and gate.left(100.0) == 1.0
    assert gate.note(100.5, 1.0) is False  # (a running wait extended by 0.5 s: no news)
    assert gate.note(200.0, 0.5) is True  # (the first wait ended long ago: a new one)


def test_the_time_left_is_capped_when_the_gate_is_fed_by_two_clocks():
    """review238 finding 4: an adapter shared by two agents (components=), one on a FakeClock
    and one on a MonotonicClock, noted a wait on one clock and read it on the other: hours."""
    gate = RetryAfterGate()
    gate.note(90_000.0, 30.0)  # (a monotonic clock: a day of uptime)
    assert gate.left(0.0) == MAX_RETRY_AFTER  # (a FakeClock at 0: was 90 030 s)
    try:
        gate.refuse(0.0)
        raise AssertionError("not refused")
    except BackendError as exc:
        assert exc.retry_after == MAX_RETRY_AFTER and "wait 60.0 s more" in str(exc)
