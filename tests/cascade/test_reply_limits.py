"""A cascade reply's stall timeouts and rate limits (QA k27 back-end faults, findings 2 and 5)
and the words a cut segment counts as heard (review 224, finding 6a), on a FakeClock.

- A spec's own timeouts (``openai:MODEL;first_token_timeout=60``) were cut short by the
  cascade's fixed 10 s / 5 s timers; now those wait at least as long, and the cascade has keys
  of its own (cascade.first_timeout / chunk_timeout).
- An HTTP 429's Retry-After was not honoured: every next reply asked the server at once.
- A segment cut in its TTS's silent tail lost its last word (the silent ends counted)."""

import asyncio
import re

import numpy as np
import pytest

from kame.cascade.config import CascadeConfig, resolved_timeouts
from kame.cascade.reply import ReplyParts, ReplyPipeline, _Segment
from kame.config import load_config
from kame.errors import BackendError, ConfigError
from kame.runtime.base import ErrorEvent
from kame.runtime.clock import FakeClock

from .fakes import FakeTTS


async def settle(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class SlowLLM:
    """Says nothing for ``wait`` clock-seconds, then "Yes."; ``stall_timeouts`` as a spec sets them."""

    name = "slow-llm"

    def __init__(self, clock, wait: float, stall_timeouts=(None, None)) -> None:
        self.clock, self.wait, self.stall_timeouts = clock, wait, stall_timeouts
        self.calls = 0

    async def stream_chat(self, messages, **kw):
        self.calls += 1
        await self.clock.sleep(self.wait)
        yield "Yes."


class RateLimitedLLM:
    """Every call fails at once as a 429 with Retry-After: 5 does."""

    name = "limited-llm"

    def __init__(self) -> None:
        self.calls = 0

    async def stream_chat(self, messages, **kw):
        self.calls += 1
        exc = BackendError("LLM http://x/v1/chat/completions: HTTP 429: slow down (rate limited; retry after 5 s)")
        exc.retry_after = 5.0
        raise exc
        yield ""  # (an async generator)


def _reply(llm, clock, out, cfg=None, parts=None):
    parts = parts or ReplyParts(llm, FakeTTS(clock), cfg or CascadeConfig(), clock, out.append,
                                names={"llm": "openai:m;first_token_timeout=60"})
    rp = ReplyPipeline(parts, metric=lambda *a: None)
    rp.start([], t_user_end=0.0, turn_id=len(out) + 1)
    return rp, parts


async def _advance(clock, seconds: float, step: float = 0.5) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)
        await settle()


async def test_an_llm_spec_timeout_longer_than_the_cascades_is_not_cut_short():
    clock, out = FakeClock(), []
    llm = SlowLLM(clock, wait=14.0, stall_timeouts=(60.0, None))  # first token after 14 s; spec allows 60
    rp, _ = _reply(llm, clock, out)
    await settle()
    await _advance(clock, 15.0)
    await rp.wait()
    assert not rp.failed and rp.text == "Yes."  # (was: "LLM stalled: nothing within 10 s of the request")


async def test_an_llm_past_its_spec_timeout_stalls_there_and_says_so():
    clock, out = FakeClock(), []
    rp, _ = _reply(SlowLLM(clock, wait=100.0, stall_timeouts=(20.0, None)), clock, out)
    await settle()
    await _advance(clock, 21.0)
    await rp.wait()
    assert rp.failed
    errors = [o.message for o in out if isinstance(o, ErrorEvent)]
    assert errors and "LLM slow-llm stalled: nothing within 20 s of the request" in errors[0]


async def test_the_cascade_stall_timeout_keys_set_the_timers():
    clock, out = FakeClock(), []
    rp, _ = _reply(SlowLLM(clock, wait=14.0), clock, out, cfg=CascadeConfig(first_timeout=30.0))
    await settle()
    await _advance(clock, 15.0)
    await rp.wait()
    assert not rp.failed and rp.text == "Yes."
    rp, _ = _reply(SlowLLM(clock, wait=14.0), clock, out, cfg=CascadeConfig(first_timeout=3.0))
    await settle()
    await _advance(clock, 4.0)
    await rp.wait()
    assert rp.failed and "nothing within 3 s" in [o.message for o in out if isinstance(o, ErrorEvent)][-1]


def test_the_cascade_timeouts_follow_the_backend_keys_unless_set():
    cfg = load_config(None, ["backend.llm_first_token_timeout_s=25", "backend.llm_chunk_timeout_s=7"])
    assert resolved_timeouts(cfg.cascade, cfg.backend) == {"first_timeout": 25.0, "chunk_timeout": 7.0}
    cfg = load_config(None, ["cascade.first_timeout=40", "backend.llm_first_token_timeout_s=25"])
    assert resolved_timeouts(cfg.cascade, cfg.backend)["first_timeout"] == 40.0


@pytest.mark.parametrize("d, message", [
    ({"first_timeout": 0}, "cascade.first_timeout: a time in s, must be > 0, got 0"),
    ({"chunk_timeout": "x"}, "cascade.chunk_timeout: expected a finite number"),
    ({"first_timeout_s": 3}, "unknown [cascade] config key(s) ['first_timeout_s']"),
])
def test_bad_cascade_timeouts_are_config_errors_naming_the_key(d, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        CascadeConfig.from_dict(d)


async def test_a_rate_limited_llm_is_not_asked_again_before_its_retry_after():
    clock, out = FakeClock(), []
    llm = RateLimitedLLM()
    rp, parts = _reply(llm, clock, out)
    await rp.wait()
    assert rp.failed and llm.calls == 1
    clock.advance(2.0)
    rp, _ = _reply(llm, clock, out, parts=parts)  # the next turn, 2 s later: not asked
    await rp.wait()
    assert rp.failed and llm.calls == 1
    errors = [o.message for o in out if isinstance(o, ErrorEvent)]
    assert "not asked: it rate-limited kame (HTTP 429) and asked it to wait 3.0 s more (Retry-After)" in errors[-1]
    clock.advance(3.5)
    rp, _ = _reply(llm, clock, out, parts=parts)  # past it: asked again
    await rp.wait()
    assert llm.calls == 2


class RateLimitedTTS(FakeTTS):
    async def synthesize(self, text):
        self.texts.append(text)
        exc = BackendError("TTS http://x/v1/audio/speech: HTTP 429: slow down (rate limited; retry after 5 s)")
        exc.retry_after = 5.0
        raise exc
        yield np.zeros(0, np.float32)


async def test_a_rate_limited_tts_is_not_asked_again_before_its_retry_after():
    clock, out = FakeClock(), []
    tts = RateLimitedTTS(clock)
    parts = ReplyParts(SlowLLM(clock, wait=0.0), tts, CascadeConfig(), clock, out.append)
    rp, _ = _reply(None, clock, out, parts=parts)
    await rp.wait()
    assert rp.failed and len(tts.texts) == 1
    clock.advance(1.0)
    rp, _ = _reply(None, clock, out, parts=parts)
    await rp.wait()
    assert len(tts.texts) == 1  # not asked
    assert "tts fake-tts failed" in [o.message for o in out if isinstance(o, ErrorEvent)][-1]


def _segment(text: str, lead: int, loud: int, tail: int) -> _Segment:
    seg = _Segment(text)
    seg.add(np.concatenate([np.zeros(lead, np.float32), np.full(loud, 0.3, np.float32),
                            np.zeros(tail, np.float32)]), threshold=0.01)
    seg.done = seg.complete = True
    return seg


def test_a_segment_cut_in_its_silent_tail_counts_all_its_words():
    seg = _segment("Yes, of course.", 2400, 24000, 2400)  # 0.1 s lead-in, 1 s of speech, 0.1 s tail
    seg.played = 2400 + 24000 + 240  # cut 10 ms into the tail
    assert seg.heard() == "Yes, of course."  # (was: 'Yes, of')


def test_a_segment_cut_in_its_silent_lead_in_counts_no_word():
    seg = _segment("Yes, of course.", 12000, 12000, 0)  # 0.5 s lead-in, 0.5 s of speech
    seg.played = 11000
    assert seg.heard() == ""  # (was: 'Yes,': the lead-in counted as a share of the words)
    seg.played = 12000 + 6000  # half way through the speech
    assert seg.heard() == "Yes,"


def test_a_segment_with_only_silence_played_counts_no_word():
    """review231 finding 5: with no audible sample its silence was the span, so a TTS that failed
    after 0.4 s of silent lead-in, 0.3 s played, "said" 'one'; an all-silent segment half played
    'one two'."""
    seg = _Segment("one two three four")
    seg.add(np.zeros(9600, np.float32), threshold=0.01)
    seg.done, seg.played = True, 7200  # failed: not complete
    assert seg.heard() == ""
    seg = _segment("one two three four", 24000, 0, 0)  # complete, all silent
    seg.played = 12000
    assert seg.heard() == ""
    seg.played = 24000  # played to its end: all its words, as any segment
    assert seg.heard() == "one two three four"


async def test_sessions_sharing_a_rate_limited_llm_share_its_retry_after():
    """review231 finding 4: the wait was per session (ReplyParts): in kame serve each session
    asked a server that had already said 429. Now it is the LLM's own (its ``rate_gate``, as the
    openai adapter's)."""
    from kame.backend.policy import RetryAfterGate

    clock, out = FakeClock(), []
    llm = RateLimitedLLM()
    llm.rate_gate = RetryAfterGate()
    rp, _ = _reply(llm, clock, out)  # session 1: 429, Retry-After 5
    await rp.wait()
    assert rp.failed and llm.calls == 1
    clock.advance(1.0)
    rp, _ = _reply(llm, clock, out)  # session 2 (its own ReplyParts), 1 s later: not asked
    await rp.wait()
    assert rp.failed and llm.calls == 1
    assert "not asked: it rate-limited kame (HTTP 429) and asked it to wait 4.0 s more" in \
        [o.message for o in out if isinstance(o, ErrorEvent)][-1]
