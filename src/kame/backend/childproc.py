"""Back-end compute in a child process: start one and wait until it is ready, stop one.

Libraries that hold the GIL while they compute (pocketsphinx's binding) or run long Python
loops (transformers' generate) would stall the front-end's step and the event loop; in a child
process they have their own interpreter. Children are started with multiprocessing's "spawn"
(a fresh interpreter: no copied threads or locks; it re-imports the main script, so a script
must start them under ``if __name__ == "__main__":``), as daemons, and get the child end of a pipe
as their first argument. A child ends at once when its parent process ends, however it ends (a
signal's default action too), and quietly when its pipe is closed at the parent's end. A child
says it is ready with a first message whose kind (element 0) is "loaded"; "unavailable" means a
missing model or package; its last element is the message.

    proc, conn = start_child(_child_main, (model_path, nice), name="kame-x", what="the x child")
    ...
    stop_child(proc, conn)                     # or, once it died: code = reap_child(proc, conn)

Long-lived children shared by every agent of a process (the embedded LLM's, pocketsphinx's)
register their stop function with ``shared_child``; ``release_children()`` stops them all (their
next use starts them again).

Loads run in a thread (``await load_in_thread(fn, ...)``); cancelling that await (Ctrl-C while an
agent loads) terminates the children that load is waiting for and makes its later start_child
calls fail at once, so neither the thread nor the exit waits the seconds a child takes to get
ready. Children started elsewhere (e.g. a live session restarting one) are not touched; a load in a
thread of its own gets the same hold on its children with ``with abortable_load() as load:``. A load
in the process itself (the front-end's model) cannot be stopped: ``loads_running()`` says one
still runs, so a program that is quitting need not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
from multiprocessing import connection as mp_connection
from typing import Any, Callable, Iterator, NoReturn

from ..errors import BackendError, NotAvailableError

CTX = mp.get_context("spawn")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # kame's log lines (kame.cli), a child's too
_current = threading.local()  # .load: the _Load running in this thread (load_in_thread), if any
_running: set = set()  # the _Loads whose fn has not returned yet (cancelled ones too): loads_running


class _Load:
    """One load_in_thread call: the children its start_child calls wait for; abort() ends them."""

    def __init__(self) -> None:
        self.aborted = False
        self.children: set = set()
        self.lock = threading.Lock()

    def add(self, proc) -> None:
        with self.lock:
            self.children.add(proc)
            aborted = self.aborted
        if aborted:  # cancelled between the spawn and here
            proc.terminate()

    def discard(self, proc) -> None:
        with self.lock:
            self.children.discard(proc)

    def abort(self) -> None:
        with self.lock:
            self.aborted, procs = True, list(self.children)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()


SCRIPT_HINT = ('; if this runs from a script, create kame\'s back-end under `if __name__ == "__main__":` '
               "(a spawned child re-imports the script; see its traceback above)")


def start_child(target: Callable, args: tuple, *, name: str, what: str):
    """Run ``target(conn, *args)`` in a child process and wait for its first message.
    Returns (process, the parent's end of the pipe); raises NotAvailableError ("unavailable")
    or BackendError (any other message, or the child exiting first), naming ``what``."""
    load = getattr(_current, "load", None)
    if load is not None and load.aborted:
        raise BackendError(f"{what} not started: the load was cancelled")
    parent_conn, child_conn = CTX.Pipe()
    proc = CTX.Process(target=_child, args=(target, child_conn, *args), name=name, daemon=True)
    try:
        proc.start()
    except BaseException:
        parent_conn.close()
        raise
    finally:
        child_conn.close()  # only the child holds its end: its death gives EOF here
    if load is not None:
        load.add(proc)
    try:
        msg = parent_conn.recv()
    except (EOFError, OSError):
        proc.join(5)
        msg = ("error", f"the child exited while loading (exit code {proc.exitcode})")
        if proc.exitcode == 1:  # e.g. spawn's bootstrap error
            msg = (msg[0], msg[1] + SCRIPT_HINT)
    finally:
        if load is not None:
            load.discard(proc)
    if msg[0] != "loaded":
        parent_conn.close()
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
        raise (NotAvailableError if msg[0] == "unavailable" else BackendError)(f"{what} failed to start: {msg[-1]}")
    return proc, parent_conn


async def load_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` (a blocking load: models, back-end children) in the loop's default executor.
    If the await is cancelled (Ctrl-C while loading), the children this load waits for are
    terminated and its later start_child calls raise BackendError at once, so the thread ends
    (after any in-process step it is in) and the process can exit without waiting for them."""
    load = _Load()

    def run() -> Any:
        _current.load = load
        _running.add(load)
        try:
            return fn(*args)
        finally:
            _running.discard(load)
            _current.load = None

    try:
        return await asyncio.get_running_loop().run_in_executor(None, run)
    except asyncio.CancelledError:
        load.abort()
        raise


@contextlib.contextmanager
def abortable_load() -> Iterator[_Load]:
    """load_in_thread's hold on children for a load that runs in a thread of its own (the embedded
    LLM's dispatcher restarting its child): within it, this thread's start_child calls register
    their children with the handle it yields, whose ``abort()`` (from any thread: a timeout, a
    close) terminates them and makes this thread's later start_child calls fail at once."""
    load = _Load()
    previous = getattr(_current, "load", None)
    _current.load = load
    try:
        yield load
    finally:
        _current.load = previous


def loads_running() -> int:
    """How many load_in_thread loads are still running in their thread, cancelled ones included
    (an in-process model load cannot be stopped: it runs to its end, and the interpreter's exit
    waits for its thread; kame serve and kame run leave without waiting: exit_if_loading)."""
    return len(_running)


def exit_if_loading(status: int, say: Callable[[str], None] | None = None) -> None:
    """For a command quitting while a model still loads in this process (a cancelled start): run
    the exit hooks (the log's, multiprocessing's: children and semaphores, the LLM child's stop),
    flush the output and leave now with ``status``, instead of the interpreter waiting for the
    load's thread (a large front-end: a minute). Nothing if no load runs. (Not a daemon thread
    instead: at exit Python 3.11 ends those with pthread_exit, which can abort inside torch.)"""
    if not loads_running():
        return
    if say is not None:
        say("the agent was still loading: exiting without waiting for its load to end")
    leave_now(status, exit_hooks=True)


def leave_now(status: int, *, exit_hooks: bool) -> NoReturn:
    """Leave the process at once with ``status`` (os._exit: no thread waited for, nothing raised
    to the callers): ``exit_hooks``, the interpreter's exit hooks run first (the log's,
    multiprocessing's, the LLM child's stop: exit_if_loading), else only the log's handlers are
    flushed (kame train's stop under torchrun, finetune._stopped: torch's hooks can abort there);
    then stdout and stderr are flushed. Tests patch it (a pytest process must not leave). Not for
    a signal handler that ends an exit that hangs (kame.server.stopping's _leave: a bare os._exit),
    whose hang may hold the log's or a stream's lock, which these would wait for."""
    if exit_hooks:
        import atexit

        atexit._run_exitfuncs()
    else:
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # (closed or replaced streams)
            stream.flush()
    os._exit(status)


def _child(target: Callable, conn, *args) -> None:
    """The child's entry: Ctrl-C at the terminal goes to the whole process group, but the child
    is the parent's to stop (it closes the pipe), so the child ignores SIGINT instead of dying
    with a KeyboardInterrupt traceback mid-message. Once ``target`` returns (its pipe closed)
    the child leaves at once: a spawned child would otherwise tear its interpreter down, torch
    and transformers included, which takes seconds (more at a high nice) that the parent's exit
    and Ctrl-C wait for. It also leaves at once when its parent process ends (leave_with_parent),
    and quietly when its pipe was closed at the parent's end (a send or receive of ``target``
    failing: nobody is there to read its traceback). Any other exception still ends it the usual
    way, with its traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _log_as_kame()
    leave_with_parent()
    try:
        target(conn, *args)
    except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
        if not _from_the_pipe(exc):
            raise
    try:  # what multiprocessing does after a child's target, e.g. releasing tqdm's semaphore
        mp.util._exit_function()  # (without it the resource tracker warns of a "leaked semaphore")
    except Exception:  # noqa: BLE001 - leaving anyway
        pass
    leave_now(0, exit_hooks=False)  # (the log's handler, stdout and stderr flushed)


def _log_as_kame() -> None:
    """A child's kame warnings read as the parent's lines (LOG_FORMAT on stderr; was: bare lines, from
    logging's last resort). kame's logger only: a library's with a handler of its own (huggingface_hub's)
    would print its lines twice through the root's."""
    kame = logging.getLogger("kame")
    if kame.hasHandlers():  # (the main script the child imported again set up logging: its lines, once)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    kame.addHandler(handler)


def leave_with_parent() -> None:
    """A thread of the child that ends it at once, quietly, when its parent process ends, however
    it ends (was: a SIGTERM that killed `kame data synth` while its LLM child loaded left the child
    loading ~15 s more, then dying on a BrokenPipeError traceback; a parent killed by a signal runs
    no exit hook that could terminate it). The parent's end is seen on spawn's sentinel (a pipe
    only the parent holds open: it reads EOF when the parent is gone); a change of the parent's
    pid is checked each second too, in case another process keeps that pipe open. No exit hooks
    are run: they could wait for a lock the child's own work holds, and nobody waits for it."""
    parent, ppid = mp.parent_process(), os.getppid()
    if parent is None:  # (not started by multiprocessing)
        return

    def watch() -> None:
        while not mp_connection.wait([parent.sentinel], timeout=1.0) and os.getppid() == ppid:
            pass
        os._exit(0)

    threading.Thread(target=watch, name="kame-leave-with-parent", daemon=True).start()


def _from_the_pipe(exc: BaseException) -> bool:
    """Whether ``exc`` (EOFError, BrokenPipeError, ...) was raised by a multiprocessing pipe (the
    child's pipe to its parent: the other end is closed), not by other work of the target."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == "multiprocessing.connection"


def stop_child(proc, conn) -> None:
    """Close the pipe (the child exits when it reads EOF); terminate it after 5 s."""
    if conn is not None:
        conn.close()
    if proc is not None:
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def reap_child(proc, conn, *, hung: bool = False) -> int | None:
    """After a child died (or, with ``hung``, stopped answering: it is terminated first, killed
    if it is still there 5 s later): reap
    it so its exit code is known, close the pipe; returns the exit code (None if unknown)."""
    code = None
    if proc is not None:
        if hung and proc.is_alive():
            proc.terminate()
            proc.join(5)
            if proc.is_alive():  # SIGTERM ignored or too slow: it must not be left running untracked
                proc.kill()
        proc.join(5 if hung else 1)
        code = proc.exitcode
    if conn is not None:
        conn.close()
    return code


_shared_stops: list[Callable[[], bool]] = []  # see shared_child


def shared_child(stop: Callable[[], bool]) -> None:
    """Register a shared child's stop function for release_children (it returns whether a
    child was running)."""
    _shared_stops.append(stop)


_released_for_good = False  # release_children(final=True) began in the command under way


def command_starts() -> None:
    """kame's main (kame.cli), before each command: no final release of it yet (a previous
    command's, kame serve's run in the same process, no longer hides the shared children from
    shared_stops)."""
    global _released_for_good
    _released_for_good = False


def shared_stops() -> list[Callable[[], bool]]:
    """The registered shared children's stop functions (shared_child), a new list; none once the
    command's own last release began (release_children(final=True): kame serve's stop), so kame's
    main (kame.cli) does not stop them over again."""
    return [] if _released_for_good else list(_shared_stops)


def release_children(*, final: bool = False) -> int:
    """Stop the back-end child processes that the agents of this process share (the embedded
    LLM's, pocketsphinx's), e.g. after ``agent.stop()`` in a long-lived program, to give their
    memory back. An agent created later starts them again when it loads (the LLM's load
    is paid again); a request or utterance it interrupts gets a back-end error. It waits for
    each child to exit (up to ~10 s each): call it from a thread (``asyncio.to_thread``), not
    on an event loop. Returns how many children were stopped. ``final``: the command's own last
    release (kame serve's stop, which owns its children's end and its second Ctrl-C's rule):
    kame's main then stops none again, even after a Ctrl-C cut it (till its next command)."""
    global _released_for_good
    _released_for_good = _released_for_good or final
    return sum(bool(stop()) for stop in list(_shared_stops))


PROC = "/proc"  # (Linux's; a test points it elsewhere to play a system without one)


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's live multiprocessing children
    (the back-end's compute: benchmarks add it to their own process's CPU time). Linux (/proc);
    NaN elsewhere when a child lives (0.0 without children, on any system)."""
    total = 0.0
    for child in mp.active_children():
        try:
            with open(f"{PROC}/{child.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # it just ended, or there is no /proc at all (macOS, Windows)
            with contextlib.suppress(OSError), open(f"{PROC}/self/stat"):
                continue  # (this process's own entry is there: the child's alone is gone)
            return float("nan")
        except OSError:  # /proc unreadable
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total
