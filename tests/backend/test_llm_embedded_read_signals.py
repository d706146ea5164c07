"""What the embedded LLM tells its consumers beyond text, with stand-in children (no model load):

- while its child reads a prompt (the prefill: one forward pass that says nothing until the first
  token), it is ``reading_prompt``: a pause that the stall timers of every consumer wait out as a reload
  (kame.runtime.clock.next_within, the oracle's and the cascade's), those of the request whose
  prompt it is and of a request queued behind it alike (review r2 finding 1; was: keep-alives to
  the reading request only, so a request queued behind it "stalled: nothing within N s of the
  request" while the child worked); past the read's allowance (PROMPT_S_PER_TOKEN a token) too,
  until the dispatcher ends a child still reading CANCEL_GRACE_S after it as hung (review r7
  finding 1; was: the pause ended with the allowance, and the request queued behind failed with
  the reading one, "stalled: nothing for N s after it finished reading a prompt");
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

from .test_llm_embedded_hung import MSGS, _answers, _llm, _text, _until, _worker_with, requests
from .test_llm_embedded_prefill import TOKENS, _wait_for, _worker

READS = ["waits for LLM embedded, which reads a prompt (it cannot stop in it, nor say anything before its "
         "first token)"]


def _reads_until_told(conn, cancel, finish):
    """Loads; each request: says it reads a prompt of TOKENS tokens, "reads" until ``finish`` is
    set (by the test), then gives "hello" and ends."""
    for req_id in requests(conn):
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
        await _until(lambda: worker.reading_prompt)  # A's child reads (the dispatcher heard so)
        b = ask()
        await _until(lambda: len(clock.sleepers()) == 2)  # (both timers run)
        clock.advance(5.0)  # 5 times their limit, while the child still reads
        await _until(lambda: a.done() or b.done() or len([d for d, _ in clock.sleepers() if d > 5.0]) == 2)
        assert not a.done() and not b.done()  # (was: B "nothing within 1 s", or A's keep-alive)
        assert said == READS * 2
        finish.value = 1  # the read ends: A's first token, then B's request runs
        assert await asyncio.wait_for(a, 20) == "hello"
        assert await asyncio.wait_for(b, 20) == "hello"
        await _until(lambda: worker.current == 0)  # (the dispatcher is done with B's request)
        assert not worker.reading_prompt and worker.conn.kinds == ["prompt", "text", "end"] * 2
    finally:
        finish.value = 1
        for stream in streams:
            await stream.aclose()
        worker.close()


def _hangs_in_its_first_read(conn, cancel, hung):
    """Loads; each request: says it reads a prompt of TOKENS tokens; the first one of all (``hung``
    unset: then set, shared by the children) never ends that read; the others give "hello" and end."""
    for req_id in requests(conn):
        conn.send(("prompt", req_id, TOKENS))
        if not hung.value:
            hung.value = 1
            _wait_for(lambda: False)  # (until terminated)
        conn.send(("text", req_id, "hello"))
        conn.send(("end", req_id, (1, 0.0)))


async def _past_its_allowance(clock, b):
    """Moves ``clock`` 5 s twice (B's 1 s timer runs out twice, its grant too if it had one), each
    time until B is done or waits on; the read is past its allowance (0 s) all along."""
    for t in (5.0, 10.0):
        clock.advance(5.0)
        await _until(lambda: b.done() or any(d > t for d, _ in clock.sleepers()))


async def test_past_the_reads_allowance_the_pause_holds_until_the_dispatcher_ends_the_read(monkeypatch):
    """A child still "reading" after the time allowed for its prompt (none here) may hang, but only
    the dispatcher ends that read (CANCEL_GRACE_S after the allowance): until then every consumer's
    timer waits, that of request B queued behind too (here on a FakeClock, 10 times its limit);
    then A fails, saying its child hung, and B gets a new child and its answer (was: the pause ended
    with the allowance, and B "stalled: nothing for 1 s after it finished reading a prompt")."""
    monkeypatch.setattr(embedded, "PROMPT_S_PER_TOKEN", 0.0)
    monkeypatch.setattr(embedded, "CANCEL_GRACE_S", 600.0)  # (the test says when the grace ends)
    hung = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_hangs_in_its_first_read, hung)
    first = worker.proc
    worker.start = lambda: _restart(worker, hung)
    clock, said, b_stream, b = FakeClock(), [], None, None
    try:
        llm = _llm(worker, stall_timeout=0.5)  # (stream_chat's own timer waits too)
        a = asyncio.ensure_future(_text(llm))
        await _until(lambda: worker.reading_prompt)  # A's child reads, past its allowance at once
        b_stream = llm.stream_chat(MSGS)
        b = asyncio.ensure_future(next_within(b_stream, clock, 1.0, loading=llm, limit=1.0,
                                              on_reload=lambda: said.append(waits_for_reload("LLM embedded", llm))))
        await _until(lambda: len(clock.sleepers()) == 1)
        await _past_its_allowance(clock, b)
        assert not b.done() and not a.done() and worker.reading_prompt and said == READS
        monkeypatch.setattr(embedded, "CANCEL_GRACE_S", 0.2)  # the grace ends: A's child is ended as hung
        with pytest.raises(BackendError, match=r"hung \(no first token 0.2 s after the 0 s allowed for reading its "
                                               r"prompt of 1000 tokens \(0 s a token\)\) and was terminated"):
            await asyncio.wait_for(a, 20)
        assert await asyncio.wait_for(b, 20) == "hello"  # (a new child)
        assert not first.is_alive() and worker.proc is not first and worker.restarts == 1
    finally:
        hung.value = 1
        await _close(b_stream, b)
        worker.close()


async def _close(stream, reading):
    """Close a stream its reader (a task) may still be reading (a failed test)."""
    if reading is not None and not reading.done():
        reading.cancel()
        await asyncio.wait([reading], timeout=5)
    if stream is not None:
        await stream.aclose()


def _restart(worker, hung):
    worker.cancel = childproc.CTX.Value("q", 0, lock=False)
    worker.proc, worker.conn = childproc.start_child(_hangs_in_its_first_read, (worker.cancel, hung),
                                                     name="kame-test-llm", what="a stand-in")


async def test_a_cancel_past_the_reads_allowance_keeps_the_pause(monkeypatch):
    """Request A, whose child reads past its allowance, is cancelled (a barge-in); B, queued behind,
    waits through the grace after that cancel too (review r7 finding 4), and is answered by the same
    child once the read ends."""
    monkeypatch.setattr(embedded, "PROMPT_S_PER_TOKEN", 0.0)
    monkeypatch.setattr(embedded, "CANCEL_GRACE_S", 600.0)
    finish = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_reads_until_told, finish)
    first = worker.proc
    clock, said, b_stream, b = FakeClock(), [], None, None
    try:
        llm = _llm(worker, stall_timeout=30)
        a_stream = llm.stream_chat(MSGS)
        a = asyncio.ensure_future(a_stream.__anext__())
        await _until(lambda: worker.reading_prompt)
        b_stream = llm.stream_chat(MSGS)
        b = asyncio.ensure_future(next_within(b_stream, clock, 1.0, loading=llm, limit=1.0,
                                              on_reload=lambda: said.append(waits_for_reload("LLM embedded", llm))))
        await _until(lambda: len(clock.sleepers()) == 1)
        a.cancel()  # (the consumer gave up)
        with pytest.raises(asyncio.CancelledError):
            await a
        await a_stream.aclose()
        await _until(lambda: worker.cancel.value != 0)  # the dispatcher passed the cancel on, past the allowance
        await _past_its_allowance(clock, b)
        assert not b.done() and worker.reading_prompt and said == READS
        finish.value = 1  # the read ends: A stops at its first token, B runs
        assert await asyncio.wait_for(b, 20) == "hello"
        assert worker.proc is first and worker.restarts == 0
    finally:
        finish.value = 1
        await _close(b_stream, b)
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
