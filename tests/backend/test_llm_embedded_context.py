"""The embedded LLM's child counts a prompt's tokens before its prefill: past the model's context
(less max_tokens) the oldest messages are dropped (not the system message nor the last user
message), and a prompt that still does not fit fails at once with a BackendError naming both
sizes (was: a 9.7k-token prompt prefilled past the 60 s stall timeout, and the child was killed
as hung and reloaded). Stand-in tokenizer and model: no model load."""

import asyncio
from pathlib import Path

import pytest

from kame.backend import childproc
from kame.backend.llm import embedded
from kame.backend.types import ChatMessage
from kame.errors import BackendError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


class FakeTok:
    """One token per word of each message, plus 3 per message (the chat template's)."""

    eos_token_id = 0

    def apply_chat_template(self, messages, **kw):
        n = sum(3 + len(m["content"].split()) for m in messages)
        return {"input_ids": torch.zeros((1, n), dtype=torch.long)}

    def decode(self, ids, **kw):
        return "ok"


class FakeModel:
    class config:
        max_position_embeddings = 100

    def __init__(self):
        self.calls = []

    def generate(self, input_ids, streamer=None, stopping_criteria=None, **kw):
        self.calls.append(int(input_ids.shape[1]))
        return torch.zeros((1, input_ids.shape[1] + 2), dtype=torch.long)


def _msg(role, words):
    return {"role": role, "content": " ".join(["w"] * words)}


def test_the_oldest_messages_are_dropped_until_the_prompt_fits():
    msgs = [_msg("system", 10), _msg("user", 30), _msg("assistant", 30), _msg("user", 20)]
    kept, inputs, n = embedded.fit_context(FakeTok(), msgs, 20, 100)  # 4*3 + 90 = 102 > 80
    assert kept == [msgs[0], msgs[2], msgs[3]] and n == 69 == inputs["input_ids"].shape[1]
    kept, _, n = embedded.fit_context(FakeTok(), msgs, 40, 100)  # 69 > 60: the assistant line goes too
    assert kept == [msgs[0], msgs[3]] and n == 36
    assert embedded.fit_context(FakeTok(), msgs, 40, 0)[0] == msgs  # (0: an unknown context, unchecked)
    with pytest.raises(embedded.PromptTooLong,
                       match=r"prompt 66 tokens > the embedded LLM's context 100 \(less max_tokens 40 .*backend.history_chars"):
        embedded.fit_context(FakeTok(), [_msg("system", 10), _msg("user", 50)], 40, 100)


class FakeConn:
    def __init__(self, requests=()):
        self.sent, self.requests = [], list(requests)

    def send(self, item):
        self.sent.append(item)

    def recv(self):
        if not self.requests:
            raise EOFError
        return self.requests.pop(0)


def test_the_child_answers_a_prompt_past_its_context_at_once_without_a_prefill():
    model, cancel = FakeModel(), childproc.CTX.Value("q", 0, lock=False)
    too_long = [_msg("system", 10), _msg("user", 90)]
    fits = [_msg("system", 10), _msg("user", 60), _msg("assistant", 5), _msg("user", 5)]
    conn = FakeConn([(7, too_long, 20, 0.0, 1.0), (8, fits, 20, 0.0, 1.0)])
    embedded._serve(conn, model, FakeTok(), cancel)
    assert conn.sent[0][:2] == ("error", 7)
    assert "prompt 106 tokens > the embedded LLM's context 100" in conn.sent[0][2]
    assert model.calls == [29]  # the second request only, its oldest user message dropped
    assert conn.sent[-1][:2] == ("end", 8) and conn.sent[-1][2][0] == 2


def _serves_a_fake_model(conn):
    """A stand-in child running the real request loop on the stand-in model."""
    conn.send(("loaded", 0, None))
    embedded._serve(conn, FakeModel(), FakeTok(), childproc.CTX.Value("q", 0, lock=False))


async def test_a_prompt_past_the_context_is_a_backend_error_and_the_child_lives_on():
    worker = embedded._ChildWorker(Path("stand-in.gguf"))

    def start():
        worker.cancel = childproc.CTX.Value("q", 0, lock=False)
        worker.proc, worker.conn = childproc.start_child(_serves_a_fake_model, (), name="kame-test-llm",
                                                         what="a stand-in")

    worker.start = start
    llm = embedded.EmbeddedLLM.__new__(embedded.EmbeddedLLM)
    llm.worker, llm.stall_timeout = worker, 60.0
    llm.max_tokens, llm.temperature, llm.repetition_penalty = 10, 0.0, 1.0
    llm.tokens_generated, llm.generate_seconds = 0, 0.0
    try:
        long = [ChatMessage("system", "be brief"), ChatMessage("user", " ".join(["w"] * 200))]
        with pytest.raises(BackendError, match=r"embedded LLM failed: prompt 208 tokens > the embedded LLM's "
                                               r"context 100"):
            async for _ in llm.stream_chat(long):
                pass
        pid, restarts = worker.proc.pid, worker.restarts  # (its first start counts as one)
        assert [p async for p in llm.stream_chat([ChatMessage("user", "hi")])] == []  # (FakeTok decodes nothing)
        assert worker.proc.pid == pid and worker.restarts == restarts and llm.tokens_generated == 2
    finally:
        await asyncio.get_running_loop().run_in_executor(None, worker.close)
