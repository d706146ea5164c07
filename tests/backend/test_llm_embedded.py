"""The embedded SmolLM2 LLM: loads offline once (in a child process), streams, stops on cancel,
shared, survives the child's death."""

import os
import signal
import sys

import pytest

from kame import registry
from kame.backend.types import ChatMessage
from kame.errors import BackendError, NotAvailableError

from .scripted_llm import cancel_after_first_piece

pytestmark = pytest.mark.slow  # one model load for the module (~30 s the first time: kame.backend.llm.converted)

MSGS = [ChatMessage("system", "Answer in one short sentence."),
        ChatMessage("user", "What is the capital of France?")]


def nice_of(pid: int) -> int:
    """The nice value of a process's main thread (Linux /proc)."""
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])


@pytest.fixture(scope="module")
def llm():
    pytest.importorskip("transformers")
    from kame.backend.llm import embedded

    # A child an earlier test file of this process started (at nice 0: the test run's order, or
    # pytest-xdist's share of files) is stopped and forgotten, so the one made here is at nice 3
    # and stays the shared one for later files, as in a fresh process.
    earlier = embedded._shared.pop(str(embedded.smollm2_path()), None)
    if earlier is not None:
        earlier.close()
    return registry.create("llm", "embedded", nice=3)  # the child runs 3 steps below this process


async def test_streams_an_answer(llm):
    pieces = [p async for p in llm.stream_chat(MSGS, max_tokens=24)]
    text = "".join(pieces)
    assert len(pieces) >= 2 and "Paris" in text
    # greedy by default: the same request gives the same text
    assert "".join([p async for p in llm.stream_chat(MSGS, max_tokens=24)]) == text


async def test_cancel_stops_generation_and_frees_the_worker(llm):
    before = llm.tokens_generated
    long = [ChatMessage("user", "Write a very long story about a dragon and a knight.")]
    await cancel_after_first_piece(llm, long, 60, max_tokens=400)
    # the next request runs after the cancelled one stopped early (well short of 400 tokens)
    assert "".join([p async for p in llm.stream_chat(MSGS, max_tokens=8)])
    cancelled_tokens = llm.tokens_generated - before - 8
    assert cancelled_tokens < 200


def test_shared_model_and_bad_path(llm):
    other = registry.create("llm", "smollm2")
    assert other.worker is llm.worker and other.worker.proc.pid != os.getpid()
    assert llm.worker.nice == 3
    if sys.platform == "linux":  # the child runs below this process's CPU priority
        assert nice_of(llm.worker.proc.pid) == min(19, nice_of(os.getpid()) + 3)
    with pytest.raises(NotAvailableError):
        registry.create("llm", "embedded:/nonexistent/model.gguf")


async def test_child_death_fails_the_request_and_the_next_one_restarts_it(llm, capfd, monkeypatch, tmp_path):
    worker = llm.worker
    pid, restarts = worker.proc.pid, worker.restarts
    long = [ChatMessage("user", "Write a very long story about a dragon and a knight.")]
    got = []
    with pytest.raises(BackendError, match="died"):
        async for piece in llm.stream_chat(long, max_tokens=400):
            got.append(piece)
            if len(got) == 1:
                os.kill(pid, signal.SIGKILL)
    assert len(got) < 100
    # the next request starts a new child (one more load) and answers as before; from the GGUF file (a
    # cache it cannot write: no converted copy), whose reader draws the progress bar checked below
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("KAME_CACHE", str(tmp_path / "a_file"))
    text = "".join([p async for p in llm.stream_chat(MSGS, max_tokens=24)])
    assert "Paris" in text
    assert worker.restarts == restarts + 1 and worker.proc.pid != pid
    # the child's load draws no progress bar on the terminal (transformers' GGUF reader's tqdm)
    assert "GGUF tensors" not in capfd.readouterr().err
    if sys.platform == "linux":  # a restarted child keeps the lower priority
        assert nice_of(worker.proc.pid) == min(19, nice_of(os.getpid()) + 3)


class _HungWorker:
    """A worker whose child never answers (hung without dying)."""

    loading, loaded_at = False, 0.0  # (not (re)starting its child)
    reading_prompt, finished_at = False, None  # (nor reading a prompt)

    def __init__(self):
        self.stopped = []

    def submit(self, llm, req_id, request, stop, put):
        import concurrent.futures

        return concurrent.futures.Future()  # never done, put() never called

    def stop_request(self, req_id):
        self.stopped.append(req_id)


async def test_a_hung_child_is_a_backend_error_not_a_hang():
    """No token for stall_timeout s: BackendError (was: the stream waited forever); the request is
    withdrawn. No model load: the worker is a stand-in."""
    from kame.backend.llm.embedded import EmbeddedLLM

    llm = EmbeddedLLM.__new__(EmbeddedLLM)
    llm.worker, llm.stall_timeout = _HungWorker(), 0.2
    llm.max_tokens, llm.temperature, llm.repetition_penalty = 10, 0.0, 1.0
    with pytest.raises(BackendError, match="nothing from its child for 0.2 s"):
        async for _ in llm.stream_chat(MSGS):
            pass
    assert len(llm.worker.stopped) == 1


def test_stall_timeout_is_checked():
    from kame.backend.llm.embedded import EmbeddedLLM
    from kame.errors import ConfigError

    with pytest.raises(ConfigError, match="embedded LLM: stall_timeout must be a number > 0"):
        EmbeddedLLM(stall_timeout=0)
