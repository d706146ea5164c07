"""What the embedded LLM tells its consumer beyond text, with stand-in children (no model load):

- while its child reads a prompt (the prefill: one forward pass that says nothing until the first
  token), a keep-alive (an empty piece) every KEEPALIVE_S from the dispatcher, within the read's
  allowance (PROMPT_S_PER_TOKEN a token): a long read is no stall for a short first-token timer
  (was: nothing came, "LLM stalled: nothing within N s of the request" while the child read);
- a child that died while idle fails the next request with a BackendError whose ``restarting``
  is True (a new request will work: the cascade's reply asks again); one that dies during a
  request does not say so."""

import asyncio

import pytest

from kame.backend import childproc
from kame.backend.llm import embedded
from kame.errors import BackendError

from .test_llm_embedded_hung import MSGS, _answers, _llm, _until, _worker_with
from .test_llm_embedded_prefill import TOKENS, _wait_for, _worker


def _reads_until_told(conn, cancel, finish):
    """Loads; each request: says it reads a prompt of TOKENS tokens, "reads" until ``finish`` is
    set (the test sets it once it saw a keep-alive), then gives "hello" and ends."""
    conn.send(("loaded", 0, None))
    while True:
        try:
            req_id, *_ = conn.recv()
        except EOFError:
            return
        conn.send(("prompt", req_id, TOKENS))
        _wait_for(lambda: finish.value)
        conn.send(("text", req_id, "hello"))
        conn.send(("end", req_id, (1, 0.0)))


async def test_the_consumer_gets_keep_alives_while_the_child_reads_its_prompt(monkeypatch):
    monkeypatch.setattr(embedded, "KEEPALIVE_S", 0.05)  # (the read's allowance: TOKENS x 0.1 s = 100 s)
    finish = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_reads_until_told, finish)
    try:
        stream = _llm(worker, stall_timeout=30).stream_chat(MSGS)
        first = await asyncio.wait_for(stream.__anext__(), 30)
        assert first == "" and worker.conn.kinds == ["prompt"]  # a keep-alive while it still reads
        finish.value = 1
        rest = [piece async for piece in stream]
        assert rest[-1] == "hello" and set(rest[:-1]) <= {""}
        assert worker.conn.kinds == ["prompt", "text", "end"]
    finally:
        finish.value = 1
        worker.close()


async def test_no_keep_alive_past_the_reads_allowance(monkeypatch):
    """A child still "reading" after the time allowed for its prompt may hang: its consumer's
    timer runs again (here the adapter's own stall_timeout)."""
    monkeypatch.setattr(embedded, "KEEPALIVE_S", 0.05)
    monkeypatch.setattr(embedded, "PROMPT_S_PER_TOKEN", 0.0)  # (no time allowed for the read)
    finish = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_reads_until_told, finish)
    got = []
    try:
        with pytest.raises(BackendError, match="nothing from its child for 0.5 s"):
            async for piece in _llm(worker, stall_timeout=0.5).stream_chat(MSGS):
                got.append(piece)
        assert got == []
    finally:
        finish.value = 1
        worker.close()


async def test_a_child_that_died_while_idle_says_a_new_request_works():
    worker = _worker_with(_answers)
    worker.start()
    try:
        llm = _llm(worker, stall_timeout=30)
        assert "".join([p async for p in llm.stream_chat(MSGS)]) == "hello"
        worker.proc.kill()  # idle
        worker.proc.join(10)
        with pytest.raises(BackendError, match="between requests") as died:
            async for _ in llm.stream_chat(MSGS):
                pass
        assert died.value.restarting is True
    finally:
        worker.close()


async def test_a_child_that_dies_during_a_request_does_not(monkeypatch):
    monkeypatch.setattr(embedded, "KEEPALIVE_S", 1e9)  # (its read's keep-alives are not this test's)
    finish = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_reads_until_told, finish)
    try:
        llm = _llm(worker, stall_timeout=30)
        reply = asyncio.ensure_future(llm.stream_chat(MSGS).__anext__())
        await _until(worker.conn.got_prompt.is_set)  # (the request runs)
        worker.proc.kill()  # (the child's death may come from this request: not asked again)
        with pytest.raises(BackendError, match=r"died \(exit code -9\)$") as died:
            await reply
        assert died.value.restarting is False
    finally:
        finish.value = 1
        worker.close()
