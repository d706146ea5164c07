"""review231 finding 3: the timeout keys could not go above the openai adapters' built-in
limits (15 s to the first piece / chunk, 10 s between): backend.llm_first_token_timeout_s=30 or
cascade.first_timeout=30 still failed a slow LLM at 15 s with the adapter's own error. Now a
watchdog (kame.backend.policy.stall_limits) raises the adapter's unset timeouts to its own."""

from kame import registry
from kame.backend.policy import OraclePolicy, stall_limits
from kame.cascade.config import CascadeConfig
from kame.cascade.reply import ReplyParts
from kame.runtime.backend import WatchedLLM
from kame.runtime.clock import FakeClock

URL = "http://127.0.0.1:9/v1"


def test_unset_adapter_timeouts_follow_the_oracles_keys():
    llm = registry.create("llm", "openai:m", base_url=URL)
    assert (llm.first_token_timeout, llm.chunk_timeout) == (15.0, 10.0)
    p = OraclePolicy(first_token_timeout=30.0, chunk_timeout=12.0)  # backend.llm_*_timeout_s
    assert stall_limits(p.first_token_timeout, p.chunk_timeout, WatchedLLM(llm, lambda ok, err: None)) == (30.0, 12.0)
    assert (llm.first_token_timeout, llm.chunk_timeout) == (30.0, 12.0)  # (was: 15 s / 10 s: a 20 s answer failed)
    stall_limits(10.0, 5.0, llm)  # a shorter watchdog (another session's): the adapter keeps the longest
    assert (llm.first_token_timeout, llm.chunk_timeout) == (30.0, 12.0)


def test_timeouts_a_spec_sets_are_kept():
    llm = registry.create("llm", "openai:m;first_token_timeout=12", base_url=URL)
    assert stall_limits(30.0, 20.0, llm) == (30.0, 20.0)
    assert (llm.first_token_timeout, llm.chunk_timeout) == (12.0, 20.0)  # (its spec's first fires by itself)


def test_the_cascade_first_timeout_raises_the_llm_and_tts_adapters():
    llm = registry.create("llm", "openai:m", base_url=URL)
    tts = registry.create("tts", "openai:tts-1", base_url=URL)
    parts = ReplyParts(llm, tts, CascadeConfig(first_timeout=30.0), FakeClock(), lambda o: None)
    assert parts.limits("llm") == (30.0, 5.0) and llm.first_token_timeout == 30.0 and llm.chunk_timeout == 10.0
    assert parts.limits("tts") == (30.0, 5.0) and tts.first_chunk_timeout == 30.0
