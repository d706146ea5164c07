"""A cancel while the embedded LLM's child reads its prompt (the prefill, before the first token:
no stop check can run then), with stand-in children (no model load; QA k45 long finding 2): the
dispatcher waits for that read, up to PROMPT_S_PER_TOKEN a token of the prompt, and for the
first token (was: the child was killed as "hung (no stop 10 s after a cancel)" and reloaded, and
the requests behind it waited for that load); a child that never finishes reading is still
terminated as hung, CANCEL_GRACE_S after that allowance, saying why."""

import asyncio
import logging
import threading
import time

import pytest

from kame.backend import childproc
from kame.backend.llm import embedded

from .test_llm_embedded_hung import MSGS, _llm, _text, _until

TOKENS = 1000  # the stand-in prompt's length


def _wait_for(pred):
    import time

    while not pred():
        time.sleep(0.01)


def _reads_until_told(conn, cancel, finish):
    """Loads. Its first request: says it reads a prompt of TOKENS tokens, waits for the cancel,
    then goes on "reading" until ``finish`` is set, then gives its first token, sees the cancel
    and ends. Later requests: one piece of text and the end. (``finish``: a shared flag, not a
    multiprocessing Event, whose set() waits forever for a sleeper that was killed.)"""
    conn.send(("loaded", 0, None))
    first = True
    while True:
        try:
            req_id, *_ = conn.recv()
        except EOFError:
            return
        if first:
            first = False
            conn.send(("prompt", req_id, TOKENS))
            _wait_for(lambda: cancel.value == req_id)  # (the parent's cancel came during the read)
            _wait_for(lambda: finish.value)  # the read outlasts CANCEL_GRACE_S: the test says when it ends
            conn.send(("text", req_id, ""))  # its first token; the stop check runs after it
            conn.send(("end", req_id, (1, 0.0)))
            continue
        conn.send(("text", req_id, "hello"))
        conn.send(("end", req_id, (1, 0.0)))


def _never_reads(conn, cancel, finish):
    """Loads, says it reads a prompt of TOKENS tokens, then never answers again (hung in it)."""
    conn.send(("loaded", 0, None))
    req_id, *_ = conn.recv()
    conn.send(("prompt", req_id, TOKENS))
    _wait_for(lambda: finish.value)


class _SeenConn:
    """The parent's end of the pipe, noting which kinds of message the dispatcher has received."""

    def __init__(self, conn):
        self._conn, self.kinds, self.got_prompt = conn, [], threading.Event()

    def recv(self):
        msg = self._conn.recv()
        self.kinds.append(msg[0])
        if msg[0] == "prompt":
            self.got_prompt.set()
        return msg

    def __getattr__(self, name):  # send, poll, close, ...
        return getattr(self._conn, name)


def _worker(target, finish):
    worker = embedded._ChildWorker(embedded.Path("stand-in.gguf"))
    worker.cancel = childproc.CTX.Value("q", 0, lock=False)
    worker.proc, conn = childproc.start_child(target, (worker.cancel, finish), name="kame-test-llm",
                                              what="a stand-in")
    worker.conn = _SeenConn(conn)
    worker.start = _no_restart
    return worker


def _no_restart():
    raise AssertionError("the child was restarted")


async def _cancel_during_the_read(llm, worker) -> float:
    """A request, cancelled once the dispatcher has heard that the child reads its prompt; when."""
    stream = llm.stream_chat(MSGS)
    piece = asyncio.ensure_future(stream.__anext__())
    await _until(worker.conn.got_prompt.is_set)
    cancelled = time.monotonic()
    piece.cancel()  # (the consumer gave up: a barge-in, its stall timer)
    try:
        await piece
    except BaseException:  # noqa: BLE001 - CancelledError
        pass
    await stream.aclose()
    return cancelled


async def test_a_cancel_while_the_child_reads_its_prompt_waits_for_the_read(monkeypatch):
    monkeypatch.setattr(embedded, "CANCEL_GRACE_S", 0.2)  # (the read allowance: TOKENS x 0.1 s)
    finish = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_reads_until_told, finish)
    first = worker.proc
    try:
        llm = _llm(worker, stall_timeout=30)
        await _cancel_during_the_read(llm, worker)
        await asyncio.sleep(1.0)  # the read goes on 5 times CANCEL_GRACE_S after the cancel
        finish.value = 1
        await _until(lambda: worker.current == 0)  # the dispatcher is done with the request
        # not taken for hung: the same child, alive (was: terminated 0.2 s after the cancel)
        assert worker.proc is first and first.is_alive() and worker.restarts == 0
        assert worker.conn.kinds == ["prompt", "text", "end"]
        assert await _text(llm) == "hello" and worker.proc is first and worker.restarts == 0
    finally:
        finish.value = 1
        worker.close()


@pytest.mark.parametrize("per_token, load_timeout", [(0.0005, 600.0), (0.1, 0.5)])
async def test_a_child_that_never_finishes_reading_its_prompt_is_still_terminated(monkeypatch, caplog, per_token,
                                                                                   load_timeout):
    """After the allowance for its prompt (0.5 s here: 1000 tokens x 0.0005 s; or 1000 x 0.1 s = 100 s
    capped at LOAD_TIMEOUT_S, was not capped: a prompt at the full context got 819 s) and the grace."""
    monkeypatch.setattr(embedded, "CANCEL_GRACE_S", 0.2)
    monkeypatch.setattr(embedded, "PROMPT_S_PER_TOKEN", per_token)
    monkeypatch.setattr(embedded, "LOAD_TIMEOUT_S", load_timeout)
    finish = childproc.CTX.Value("b", 0, lock=False)
    worker = _worker(_never_reads, finish)
    hung = worker.proc
    try:
        llm = _llm(worker, stall_timeout=30)
        with caplog.at_level(logging.ERROR, logger="kame.backend.llm.embedded"):
            cancelled = await _cancel_during_the_read(llm, worker)
            await _until(lambda: worker.current == 0)
        assert time.monotonic() - cancelled >= 0.5  # (a lower bound: the allowance was waited for)
        assert worker.proc is None and not hung.is_alive() and hung.exitcode == -15
        assert ("the embedded LLM child hung (no first token 0.2 s after the 0.5 s allowed for reading its "
                f"prompt of 1000 tokens ({per_token:g} s a token)) and was terminated") in caplog.text
        assert not worker.reading_prompt  # (the read ended with the child: the requests behind it wait for a new one)
    finally:
        finish.value = 1
        childproc.reap_child(hung, None, hung=True)
        worker.close()
