"""The embedded LLM's child counts a prompt's tokens before its prefill: past the model's context
(less min(max_tokens, MIN_REPLY_TOKENS) for the reply, which is cut to what is left) the oldest
messages are dropped (not the system message nor the last user message; roles keep alternating),
then the start of the last user message is cut, and a prompt whose system message alone leaves
no room fails at once with a BackendError naming both sizes (was: a 9.7k-token prompt prefilled
past the 60 s stall timeout, and the child was killed as hung and reloaded; then max_tokens >=
8192 refused every prompt, and an overlong [system, user] prompt failed every turn). Stand-in
tokenizer and model: no model load."""

import asyncio
from pathlib import Path

import pytest

from kame.backend import childproc
from kame.backend.llm import context, embedded, embedded_child
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
        self.calls, self.max_new = [], []

    def generate(self, input_ids, streamer=None, stopping_criteria=None, **kw):
        self.calls.append(int(input_ids.shape[1]))
        self.max_new.append(kw["max_new_tokens"])
        return torch.zeros((1, input_ids.shape[1] + 2), dtype=torch.long)


def _msg(role, words):
    return {"role": role, "content": " ".join(["w"] * words)}


def test_the_oldest_messages_are_dropped_until_the_prompt_fits_and_roles_keep_alternating():
    msgs = [_msg("system", 10), _msg("user", 30), _msg("assistant", 30), _msg("user", 20)]
    kept, inputs, n = context.fit_context(FakeTok(), msgs, 20, 100)  # 4*3 + 90 = 102 > 80
    assert kept == [msgs[0], msgs[3]] and n == 36 == inputs["input_ids"].shape[1]  # (not [system, assistant, user])
    msgs = [_msg("system", 10), _msg("user", 30), _msg("assistant", 10), _msg("user", 10), _msg("assistant", 10),
            _msg("user", 10)]
    kept, _, n = context.fit_context(FakeTok(), msgs, 20, 100)  # 18 + 80 = 98 > 80
    assert kept == [msgs[0]] + msgs[3:] and n == 52
    msgs = [_msg("user", 30), _msg("assistant", 10), _msg("user", 10)]  # no system message: user first too
    kept, _, n = context.fit_context(FakeTok(), msgs, 10, 60)
    assert kept == [msgs[2]] and n == 13
    assert context.fit_context(FakeTok(), msgs, 40, 0)[0] == msgs  # (0: an unknown context, unchecked)


def test_a_large_max_tokens_sets_aside_only_a_reply_floor():
    msgs = [{"role": "system", "content": "hi"}, {"role": "user", "content": "hi"}]
    assert context.fit_context(FakeTok(), msgs, 8192, 8192)[0] == msgs  # (was: PromptTooLong)
    msgs = [_msg("system", 10), _msg("user", 50), _msg("assistant", 10), _msg("user", 44)]  # 126 tokens
    floor = context.MIN_REPLY_TOKENS
    assert context.fit_context(FakeTok(), msgs, 4096, 126 + floor)[0] == msgs  # none dropped
    assert context.fit_context(FakeTok(), msgs, 4096, 125 + floor)[0] == [msgs[0], msgs[3]]


def test_the_start_of_the_last_user_message_is_cut_to_fit():
    lines = " ".join(f"a{i}" for i in range(50))  # oldest first: the current turn (a49) at its end
    msgs = [_msg("system", 10), _msg("assistant", 5), {"role": "user", "content": lines}]
    kept, inputs, n = context.fit_context(FakeTok(), msgs, 40, 100)  # 13 + 53 > 60: 44 words stay
    assert kept == [msgs[0], {"role": "user", "content": " ".join(f"a{i}" for i in range(6, 50))}]
    assert n == 60 == inputs["input_ids"].shape[1] and msgs[2]["content"] == lines  # (the caller's untouched)
    kept, _, n = context.fit_context(FakeTok(), msgs[:1] + [_msg("user", 50)], 40, 100)
    assert kept[1]["content"].split() == ["w"] * 44 and n == 60
    with pytest.raises(context.PromptTooLong,
                       match=r"prompt 77 tokens > the embedded LLM's context 100 \(less 40 .*system message alone"
                             r".*shorten the system prompt"):
        context.fit_context(FakeTok(), [_msg("system", 60), _msg("user", 11)], 40, 100)  # 63 + 3 + 40 > 100


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
    too_long = [_msg("system", 90), _msg("user", 5)]
    fits = [_msg("system", 10), _msg("user", 60), _msg("assistant", 5), _msg("user", 5)]
    long_user = [_msg("system", 10), _msg("user", 200)]
    conn = FakeConn([(7, too_long, 20, 0.0, 1.0), (8, fits, 20, 0.0, 1.0), (9, long_user, 20, 0.0, 1.0),
                     (10, [_msg("user", 1)], 10000, 0.0, 1.0)])
    embedded_child._serve(conn, model, FakeTok(), cancel)
    assert conn.sent[0][:2] == ("error", 7)
    assert "prompt 101 tokens > the embedded LLM's context 100" in conn.sent[0][2]
    assert model.calls == [21, 80, 4]  # the oldest user and assistant messages dropped; the long one cut
    assert model.max_new == [20, 20, 96]  # max_tokens 10000: what the context leaves (was: refused)
    # each fitting prompt's reading is announced with its tokens (the parent's allowance for the
    # prefill, kame.backend.llm.embedded PROMPT_S_PER_TOKEN), the one past the context's is not
    assert [m[:2] for m in conn.sent[1:]] == [("prompt", 8), ("end", 8), ("prompt", 9), ("end", 9),
                                              ("prompt", 10), ("end", 10)]
    assert [m[2] for m in conn.sent if m[0] == "prompt"] == model.calls


def _serves_a_fake_model(conn):
    """A stand-in child running the real request loop on the stand-in model."""
    conn.send(("loaded", 0, None))
    embedded_child._serve(conn, FakeModel(), FakeTok(), childproc.CTX.Value("q", 0, lock=False))


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
        long = [ChatMessage("system", " ".join(["w"] * 200)), ChatMessage("user", "hi")]
        with pytest.raises(BackendError, match=r"embedded LLM failed: prompt 207 tokens > the embedded LLM's "
                                               r"context 100"):
            async for _ in llm.stream_chat(long):
                pass
        pid, restarts = worker.proc.pid, worker.restarts  # (its first start counts as one)
        assert [p async for p in llm.stream_chat([ChatMessage("user", "hi")])] == []  # (FakeTok decodes nothing)
        assert worker.proc.pid == pid and worker.restarts == restarts and llm.tokens_generated == 2
    finally:
        await asyncio.get_running_loop().run_in_executor(None, worker.close)
