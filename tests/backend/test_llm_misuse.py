"""A wrong ``messages`` argument to an LLM's stream_chat is refused up front with a clear error,
before any request (was: a str raised AttributeError "'str' object has no attribute 'role'", an
empty list went to the child / the server, which refused it); and the oracle's failure log reads
without private class names (was: "(_Stalled: ...)", "(_LLMFault: ...)")."""

import asyncio
import logging

import pytest

from kame.backend.llm import embedded
from kame.backend.llm.openai import OpenAIChat
from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import ChatMessage, Transcript, Word
from kame.runtime.clock import FakeClock

from .fake_openai import FakeOpenAI
from .scripted_llm import ScriptedLLM

BAD = [
    ("hello", TypeError, r"stream_chat expects a list of ChatMessage\(role, content\), got str 'hello': wrap it, "
                         r"e\.g\. \[ChatMessage\('user', text\)\]"),
    ([], ValueError, r"stream_chat got no messages: give at least one"),
    ([ChatMessage("user", "hi"), {"role": "user", "content": "x"}], TypeError,
     r"stream_chat's messages\[1\] is dict \{'role': 'user', 'content': 'x'\}, expected a ChatMessage"),
    ([ChatMessage("user", None)], TypeError, r"messages\[0\] is ChatMessage\(role='user', content=None\)"),
    (None, TypeError, r"got None"),
]


class _NoWorker:
    """Stands in for the embedded LLM's child: records whether a request reached it."""

    def __init__(self):
        self.submitted = []

    def submit(self, *args):
        self.submitted.append(args)
        raise AssertionError("a request reached the child")

    def stop_request(self, req_id):
        pass


@pytest.mark.parametrize("messages, error, message", BAD)
async def test_the_embedded_llm_refuses_bad_messages_before_the_child(messages, error, message):
    llm = embedded.EmbeddedLLM.__new__(embedded.EmbeddedLLM)  # (no child: nothing may reach one)
    llm.worker, llm.stall_timeout = _NoWorker(), 1.0
    llm.max_tokens, llm.temperature, llm.repetition_penalty = 10, 0.0, 1.0
    with pytest.raises(error, match=message):
        async for _ in llm.stream_chat(messages):
            pass
    assert llm.worker.submitted == []


@pytest.mark.parametrize("messages, error, message", BAD)
async def test_the_openai_llm_refuses_bad_messages_before_the_request(messages, error, message):
    server = FakeOpenAI()
    await server.start()
    llm = OpenAIChat("m", base_url=server.base_url, api_key="k")
    try:
        with pytest.raises(error, match=message):
            async for _ in llm.stream_chat(messages):
                pass
        assert server.requests == []  # no round trip
        assert [p async for p in llm.stream_chat((ChatMessage("user", "hi"),))] == ["Hello", " there", "."]
    finally:
        await llm.aclose()
        await server.stop()


async def _settle(n=200):
    for _ in range(n):
        await asyncio.sleep(0)


async def test_the_oracle_failure_log_names_no_private_class(caplog):
    words = tuple(Word(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate(["what", "is"]))
    clock, llm = FakeClock(), ScriptedLLM()
    p = OracleProducer(llm, default_tokenizer(), OraclePolicy(first_token_timeout=3.0, retry_backoff=0.5),
                       clock=clock, session="s1")
    caplog.set_level(logging.WARNING, logger="kame.backend.oracle")
    try:
        await p.on_transcript(Transcript(words, False, 1.0))
        await _settle()
        clock.advance(3.1)  # no first piece: stalled
        await _settle()
        clock.advance(1.0)
        p._decide()  # the retry
        await _settle()
        llm.calls[1].send(42)  # not text: the LLM broke its interface
        await _settle()
    finally:
        await p.aclose()
    said = [r.getMessage() for r in caplog.records]
    assert said == ["session s1: oracle prediction 1 failed (LLM scripted stalled: nothing for 3.00 s); retry in 0.50 s",
                    "session s1: oracle prediction 2 failed (LLM scripted broke its interface: yielded int 42, "
                    "expected str (a text piece)); retry in 1.00 s"]
