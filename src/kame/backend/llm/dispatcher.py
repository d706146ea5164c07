"""The embedded LLM's dispatcher (kame.backend.llm.embedded): one daemon thread per child process
that runs its requests (and its (re)starts) one at a time, in order."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

from ...errors import BackendError

DISPATCHER_CLOSED = ("the embedded LLM was closed at the interpreter's exit (its atexit hook stopped the child for "
                     "good): a request after that is refused, not run by loading the model again during the shutdown")


class Dispatcher:
    """One daemon thread running the submitted calls in order; ``submit`` returns a
    concurrent.futures.Future. (A ThreadPoolExecutor's thread is no daemon: concurrent.futures'
    exit hook joins it before atexit's close() could abort a child's (re)start it is blocked in, so
    `kame serve`'s stop waited out the whole model load and a second Ctrl-C printed a traceback.)
    A daemon thread is safe here although childproc.exit_if_loading warns against them (at exit
    Python 3.11 ends a daemon thread with pthread_exit, which can abort inside torch): this one runs
    no torch, the model is in the child process; it only waits on a queue, a pipe or a child's
    start, which pthread_exit ends cleanly. ``close()`` (the atexit close, _ChildWorker.close_at_exit)
    is final: later submits fail with BackendError (DISPATCHER_CLOSED) at once, and the caller's
    calls check ``closed`` too, so nothing (re)loads a child during the interpreter's shutdown.
    (Its thread then stays blocked in get() until the exit: one idle daemon thread per GGUF file.)"""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False  # close() ran: nothing more is run (set only at the interpreter's exit)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Refuse every later submit (final: the process is exiting)."""
        self.closed = True

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        if self.closed:
            future.set_exception(BackendError(DISPATCHER_CLOSED))
            return future
        self._jobs.put((future, fn, args))
        with self._lock:  # (started on first use, as a ThreadPoolExecutor's thread is)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        return future

    def _loop(self) -> None:
        while True:
            future, fn, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - the submitter's to see
                future.set_exception(exc)
            else:
                future.set_result(result)
