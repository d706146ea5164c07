"""The embedded LLM's dispatcher with stand-in children (no model load): a child that hangs
inside a generation is terminated once the consumer gave up, and the next request gets a new
child instead of queueing behind the hung one forever; a child's (re)start is no stall, but one
that hangs while loading fails the request."""

import asyncio
import threading
from pathlib import Path

import pytest

from kame.backend import childproc
from kame.backend.llm import embedded
from kame.backend.types import ChatMessage
from kame.errors import BackendError

MSGS = [ChatMessage("user", "Hi")]


def _hangs(conn):
    """Loads, takes one request, then never answers nor reads again (stuck in a generation)."""
    import time

    conn.send(("loaded", 0, None))
    conn.recv()
    while True:
        time.sleep(1)


def requests(conn):
    """A stand-in child's loop: says it loaded, then yields each request's id until the parent
    closes the pipe."""
    conn.send(("loaded", 0, None))
    while True:
        try:
            req_id, *_ = conn.recv()
        except EOFError:
            return
        yield req_id


def _answers(conn):
    """Loads, answers every request with one piece of text and its end."""
    for req_id in requests(conn):
        conn.send(("text", req_id, "hello"))
        conn.send(("end", req_id, (1, 0.01)))


def _worker_with(target):
    worker = embedded._ChildWorker(Path("stand-in.gguf"))
    worker.start = _starts(worker, target)
    return worker


def _starts(worker, target):
    """A start() for ``worker`` that runs ``target`` as its child."""
    def start():
        worker.cancel = childproc.CTX.Value("q", 0, lock=False)
        worker.proc, worker.conn = childproc.start_child(target, (), name="kame-test-llm", what="a stand-in")

    return start


def _gate_start(worker, loading: threading.Event, gate: threading.Event) -> None:
    """Make worker's (re)start set ``loading``, then wait for ``gate`` (the model's load: it ends
    when the test says so) before it starts the child."""
    start = worker.start

    def slow_start():
        loading.set()
        gate.wait(60)
        start()

    worker.start = slow_start


def _llm(worker, stall_timeout):
    llm = embedded.EmbeddedLLM.__new__(embedded.EmbeddedLLM)
    llm.worker, llm.stall_timeout = worker, stall_timeout
    llm.max_tokens, llm.temperature, llm.repetition_penalty = 10, 0.0, 1.0
    llm.tokens_generated, llm.generate_seconds = 0, 0.0
    return llm


async def test_a_hung_child_is_terminated_and_the_next_request_gets_a_new_one(monkeypatch):
    monkeypatch.setattr(embedded, "CANCEL_GRACE_S", 0.5)
    worker = _worker_with(_hangs)
    worker.start()
    hung = worker.proc
    try:
        llm = _llm(worker, stall_timeout=0.3)
        with pytest.raises(BackendError, match="nothing from its child for 0.3 s"):
            async for _ in llm.stream_chat(MSGS):
                pass
        for _ in range(400):  # the dispatcher ends it 0.5 s after the consumer's cancel
            if not hung.is_alive():
                break
            await asyncio.sleep(0.05)
        assert not hung.is_alive() and hung.exitcode == -15  # terminated, not left running
        # the next request is not stuck behind it: a new child answers (was: a 0.3 s stall
        # error for every later request, the dispatcher still waiting on the hung child)
        answering = _worker_with(_answers)

        def start_answering():
            answering.start()
            worker.proc, worker.conn, worker.cancel = answering.proc, answering.conn, answering.cancel

        worker.start = start_answering
        llm.stall_timeout = 60  # (spawning the new child takes seconds on a busy machine)
        text = "".join([p async for p in llm.stream_chat(MSGS)])
        assert text == "hello" and worker.restarts == 1 and worker.proc.pid != hung.pid
    finally:
        childproc.reap_child(hung, None, hung=True)
        worker.close()


async def test_a_cancelled_request_that_stops_in_time_keeps_its_child(monkeypatch):
    """The grace applies only to a child that does not stop: a normal one lives on."""
    worker = _worker_with(_answers)
    worker.start()
    try:
        llm = _llm(worker, stall_timeout=30)
        pid = worker.proc.pid
        stream = llm.stream_chat(MSGS)
        assert await stream.__anext__() == "hello"
        await stream.aclose()  # cancelled after its first piece
        assert "".join([p async for p in llm.stream_chat(MSGS)]) == "hello"
        assert worker.proc.pid == pid and worker.restarts == 0
    finally:
        worker.close()


def _one_piece_then_waits(conn):
    """Loads, answers the first request with one piece, then waits for its pipe to close."""
    conn.send(("loaded", 0, None))
    req_id, *_ = conn.recv()
    conn.send(("text", req_id, "hel"))
    try:
        conn.recv()
    except EOFError:
        return


async def test_release_children_stops_the_child_and_the_next_request_starts_it(monkeypatch, tmp_path):
    """release_children() is not a failure: no restart counted, the next request starts the
    child again; a request it interrupts gets an error that says what happened."""
    monkeypatch.setattr(childproc, "_shared_stops", [])
    worker = _worker_with(_one_piece_then_waits)
    worker.start()
    childproc.shared_child(worker.close)
    try:
        llm = _llm(worker, stall_timeout=30)
        first = worker.proc
        stream = llm.stream_chat(MSGS)
        assert await stream.__anext__() == "hel"
        assert await asyncio.to_thread(childproc.release_children) == 1
        with pytest.raises(BackendError, match="was stopped"):
            await stream.__anext__()
        assert not first.is_alive() and worker.proc is None
        answering = _worker_with(_answers)

        def start_answering():
            answering.start()
            worker.proc, worker.conn, worker.cancel = answering.proc, answering.conn, answering.cancel

        worker.start = start_answering
        assert "".join([p async for p in llm.stream_chat(MSGS)]) == "hello"
        assert worker.restarts == 0 and worker.proc.pid != first.pid
        # released again: the next agent's load (shared_worker) starts it, not its first request
        assert await asyncio.to_thread(childproc.release_children) == 1 and worker.proc is None
        gguf = tmp_path / "stand-in.gguf"
        gguf.write_bytes(b"")
        monkeypatch.setitem(embedded._shared, str(gguf), worker)
        monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: object())  # (no [llm] extra needed)
        assert embedded.shared_worker(gguf) is worker and worker.alive and not worker.released
    finally:
        worker.close()


def _never_loads(conn):
    """Hangs while loading: never says "loaded"."""
    import time

    while True:
        time.sleep(1)


async def _until(pred):
    for _ in range(2000):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def _text(llm):
    return "".join([p async for p in llm.stream_chat(MSGS)])


async def test_a_restart_that_loads_longer_than_the_stall_timeout_is_waited_for():
    """The child's (re)start (the model's ~20 s load; minutes on a busy machine) is not counted
    in stall_timeout (was: "nothing from its child for 60 s" while a restarted child loaded)."""
    loading, gate = threading.Event(), threading.Event()
    worker = _worker_with(_answers)
    _gate_start(worker, loading, gate)
    reply = None
    try:
        llm = _llm(worker, stall_timeout=0.2)
        reply = asyncio.create_task(_text(llm))
        await _until(loading.is_set)  # (no child yet: this request starts one)
        await asyncio.sleep(0.2)  # the request's stall timer, started before this wait, runs out first
        gate.set()
        llm.stall_timeout = 30  # (what follows is the child's answer, not its load: a busy machine's pace)
        assert await reply == "hello"
        assert worker.restarts == 1 and worker.alive and not worker.loading
    finally:
        gate.set()
        if reply is not None:
            reply.cancel()
        worker.close()


async def test_a_child_that_hangs_while_loading_fails_the_request_and_the_next_one_gets_a_new_one(monkeypatch):
    """A (re)start still loading after LOAD_TIMEOUT_S is terminated and the request fails saying
    so (was: the stall error, and the dispatcher waited on the child forever)."""
    monkeypatch.setattr(embedded, "LOAD_TIMEOUT_S", 0.5)
    worker = _worker_with(_never_loads)
    try:
        llm = _llm(worker, stall_timeout=0.1)  # (its load is no stall: LOAD_TIMEOUT_S bounds it)
        with pytest.raises(BackendError, match="did not finish loading the model within 0.5 s .* was terminated"):
            await _text(llm)
        assert worker.proc is None and not worker.loading
        assert not [p for p in childproc.CTX.active_children() if p.name == "kame-test-llm"]
        # the dispatcher is free: the next request starts a new child, which answers
        monkeypatch.setattr(embedded, "LOAD_TIMEOUT_S", 600.0)
        worker.start = _starts(worker, _answers)
        llm.stall_timeout = 30  # (the child's answer on a busy machine)
        assert await _text(llm) == "hello" and worker.restarts == 2
    finally:
        for p in childproc.CTX.active_children():  # (a dispatcher that never ends the load waits on it)
            if p.name == "kame-test-llm":
                p.kill()
        worker.close()


async def test_close_during_a_restart_ends_the_loading_child_at_once(monkeypatch):
    """close() (an agent's stop, a server's shutdown) while the child (re)loads: the loading
    child is terminated and the request fails saying so (was: close() saw no child, so shutdown
    waited out the whole load, up to LOAD_TIMEOUT_S, and a second signal orphaned the child)."""
    worker = _worker_with(_never_loads)
    try:
        llm = _llm(worker, stall_timeout=0.1)
        reply = asyncio.ensure_future(_text(llm))
        await _until(lambda: worker.loading and [p for p in childproc.CTX.active_children() if p.name == "kame-test-llm"])
        assert worker.close()  # (a load was under way)
        with pytest.raises(BackendError, match="stopped while it loaded the model"):
            await asyncio.wait_for(reply, 30)
        await _until(lambda: not [p for p in childproc.CTX.active_children() if p.name == "kame-test-llm"])
        assert not worker.loading
    finally:
        for p in childproc.CTX.active_children():
            if p.name == "kame-test-llm":
                p.kill()
        worker.close()


async def test_state_says_up_down_loading_and_stopped():
    """EmbeddedLLM.state, for the agents' health() (was: nothing said a killed child was down,
    nor that its restart was loading, until a request failed)."""
    loading, gate = threading.Event(), threading.Event()
    worker = _worker_with(_answers)
    worker.start()
    llm = _llm(worker, stall_timeout=30)
    reply = None
    try:
        assert llm.state == worker.state == "up"
        worker.proc.kill()  # (an operator's kill, the OOM killer)
        worker.proc.join(10)
        assert llm.state == "down"
        _gate_start(worker, loading, gate)
        with pytest.raises(BackendError, match="died .* between requests"):  # the next request is told
            await _text(llm)
        await _until(loading.is_set)  # and the restart it began goes on
        assert llm.state == "loading"
        reply = asyncio.create_task(_text(llm))  # (waits for that load)
        gate.set()
        assert await reply == "hello" and llm.state == "up"
        worker.close()
        assert llm.state == "stopped"
    finally:
        gate.set()
        if reply is not None:
            reply.cancel()
        worker.close()


async def test_a_close_just_as_the_child_finished_loading_stops_it(monkeypatch):
    """(review, helper-82) close() between the child's "loaded" and the worker taking it: close()
    saw no child and the load had nothing left to abort, so the child outlived close()."""
    worker = embedded._ChildWorker(Path("stand-in.gguf"))
    started = []

    def start_then_close(target, args, **kw):  # the child is ready; close() comes before it is taken
        proc, conn = childproc.start_child(_answers, (), name="kame-test-llm", what="a stand-in")
        started.append(proc)
        worker.close()
        return proc, conn

    monkeypatch.setattr(embedded, "start_child", start_then_close)
    try:
        llm = _llm(worker, stall_timeout=30)
        with pytest.raises(BackendError, match="stopped while it loaded the model"):
            await _text(llm)
        assert worker.proc is None
        started[0].join(10)
        assert not started[0].is_alive()
    finally:
        for p in childproc.CTX.active_children():
            if p.name == "kame-test-llm":
                p.kill()
        worker.close()
