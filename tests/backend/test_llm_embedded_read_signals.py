"""What the embedded LLM tells its consumers beyond text, with stand-in children (no model load):

- while its child reads a prompt (the prefill: one forward pass that says nothing until the first
  token), within the read's allowance (PROMPT_S_PER_TOKEN a token), it is ``finishing``: a pause
  that the stall timers of every consumer wait out as a reload (kame.runtime.clock.next_within,
  the oracle's and the cascade's), those of the request whose prompt it is and of a request queued
  behind it alike (review r2 finding 1; was: keep-alives to the reading request only, so a request
  queued behind it "stalled: nothing within N s of the request" while the child worked);
- a child that died while idle fails the next request with a BackendError whose ``restarting``
  is True (a new request will work: the cascade's reply asks again); one that dies during a
  request does not say so."""

import asyncio

import pytest

from kame.backend import childproc
from kame.backend.llm import embedded
from kame.errors import BackendError
from kame.runtime.backend import WatchedLLM
from kame.runtime.clock import FakeClock, next_within, waits_for_reload

from .test_llm_embedded_hung import MSGS, _answers, _llm, _until, _worker_with
from .test_llm_embedded_prefill import TOKENS, _wait_for, _worker


def _reads_until_told(conn, cancel, finish):
    """Loads; each request: says it reads a prompt of TOKENS tokens, "reads" until ``finish`` is
    set (by the test), then gives "hello" and ends."""
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


@pytest.mark.parametrize("watched", [False, True], ids=["cascade", "oracle"])
async def test_the_reading_request_and_one_queued_behind_it_wait_for_the_read(watched):
    """Two consumers of one child (two sessions; the oracle and a routed reply): A's request reads
    a long prompt (100 s allowed: TOKENS x 0.1 s), B's waits behind it; each reads with a 1 s
    first-piece timer (the cascade's reply's and the oracle's, next_within), here on a FakeClock
    moved 5 s on while the child reads. Neither stalls; both answer once the read ends."""
    finish = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_reads_until_told, finish)
    clock, said, streams = FakeClock(), [], []
    try:
        llm = _llm(worker, stall_timeout=30)
        part = WatchedLLM(llm, lambda ok, err: None, "embedded") if watched else llm

        def ask():
            streams.append(part.stream_chat(MSGS))
            return asyncio.ensure_future(next_within(
                streams[-1], clock, 1.0, loading=part, limit=1.0,
                on_reload=lambda: said.append(waits_for_reload("LLM embedded", part))))

        a = ask()
        await _until(lambda: worker.conn.got_prompt.is_set() and worker.current)  # A's child reads
        b = ask()
        await _until(lambda: len(clock.sleepers()) == 2)  # (both timers run)
        clock.advance(5.0)  # 5 times their limit, while the child still reads
        await _until(lambda: a.done() or b.done() or len([d for d, _ in clock.sleepers() if d > 5.0]) == 2)
        assert not a.done() and not b.done()  # (was: B "nothing within 1 s", or A's keep-alive)
        assert said == ["waits for LLM embedded, which reads a prompt (it cannot stop in it, nor say anything "
                        "before its first token)"] * 2
        finish.value = 1  # the read ends: A's first token, then B's request runs
        assert await asyncio.wait_for(a, 20) == "hello"
        assert await asyncio.wait_for(b, 20) == "hello"
        await _until(lambda: worker.current == 0)  # (the dispatcher is done with B's request)
        assert not worker.finishing and worker.finished_at == worker.loaded_at > 0
        assert worker.conn.kinds == ["prompt", "text", "end"] * 2
    finally:
        finish.value = 1
        for stream in streams:
            await stream.aclose()
        worker.close()


async def test_past_the_reads_allowance_the_timers_run_again(monkeypatch):
    """A child still "reading" after the time allowed for its prompt may hang: the pause ends and
    its consumers' timers run again (here the adapter's own stall_timeout)."""
    monkeypatch.setattr(embedded, "PROMPT_S_PER_TOKEN", 0.0)  # (no time allowed for the read)
    finish = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_reads_until_told, finish)
    got = []

    async def read():
        async for piece in _llm(worker, stall_timeout=0.5).stream_chat(MSGS):
            got.append(piece)

    try:
        with pytest.raises(BackendError, match="nothing from its child for 0.5 s"):
            await asyncio.wait_for(read(), 10)  # (a pause that never ends: TimeoutError, not a hang)
        assert got == [] and worker.conn.kinds == ["prompt"]
        assert not worker.finishing and worker.finished_at == worker.loaded_at > 0
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


async def test_a_child_that_dies_during_a_request_does_not():
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
