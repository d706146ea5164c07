"""The embedded LLM's dispatcher is closed for good by the interpreter's exit (review helper-231,
finding 7): a request after the atexit close fails at once with a BackendError saying so, and no
child is loaded again (was: the request took the close for release_children's and reloaded the
model, possibly during the interpreter's shutdown). release_children's close stays temporary."""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

import pytest

from kame.backend.llm import embedded
from kame.errors import BackendError


class _Proc:
    pid = 4242

    def is_alive(self):
        return True

    def join(self, timeout=None):
        pass

    def terminate(self):
        pass


class _Conn:
    def close(self):
        pass


@pytest.fixture
def worker(monkeypatch):
    """A _ChildWorker whose child is a stand-in (no process): the starts it made."""
    starts = []

    def start_child(target, args, **kw):
        starts.append(args)
        return _Proc(), _Conn()

    monkeypatch.setattr(embedded, "start_child", start_child)
    w = embedded._ChildWorker(Path("stand-in.gguf"))
    w.start()  # (registers its atexit hook)
    yield w, starts
    atexit.unregister(w._atexit)


def _request(w) -> list:
    said, done = [], threading.Event()

    def put(kind, value=None):
        said.append((kind, value))
        done.set()

    job = w.submit(None, 1, ([{"role": "user", "content": "Hi"}], 5, 0.0, 1.0), threading.Event(), put)
    assert done.wait(5), "the consumer heard nothing"
    return said, job


def test_a_request_after_the_exit_close_fails_saying_so_and_loads_nothing(worker):
    w, starts = worker
    w._atexit()  # the interpreter's exit
    said, _ = _request(w)
    assert said[0][0] == "error" and "closed at the interpreter's exit" in said[0][1], said
    assert len(starts) == 1  # (was: a second start, the model loaded again)
    with pytest.raises(BackendError, match="closed at the interpreter's exit"):
        w.ensure_started()  # an agent's start after it: refused too
    assert len(starts) == 1


def test_release_children_close_is_not_final(worker):
    w, starts = worker
    w.close()  # (release_children): the next request starts the child again
    said, _ = _request(w)
    assert len(starts) == 2 and "closed at the interpreter's exit" not in str(said)
