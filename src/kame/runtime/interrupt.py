"""Ctrl-C in the commands that play a conversation (kame run, kame client): the first press
ends the conversation and keeps what came, a second quits at once (kame run, kame eval mtbench: SIGTERM alike;
kame run's files are then written whole: ``sigterm_held``; kame serve's start: kame.runtime.signals,
which imports no asyncio). And ``run_to_end``, the
asyncio.run of the commands: a component that ignores its cancellation does not hang them; an
agent's ``stop()`` ends with ``end_left_behind``, so a program's plain ``asyncio.run(main())``
is not hung by one either (the tasks it left: warned about, named, and detached from the loop).
Also the stop rules that every kame command shares: how a stop is said and its exit status
(``stopped_by``, ``exit_status``: 130 / 143), a second signal that quits at once (``QuitAtOnce``,
``after_stop``: kame's main while the back-end children stop), SIGTERM taken as Ctrl-C by the
commands without an event loop (``sigterm_as_ctrl_c``: kame train, data encode, bench train) and by
those with one (``run_ended_by_sigterm``: the kame data commands).

    rec = run_to_end(converse())                                       # asyncio.run, bounded at the end

    async with first_ctrl_c("ending the conversation here") as stop:   # stop: an asyncio.Event
        if not await unless_stopped(agent.start(), stop):              # a load ended by Ctrl-C
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections import Counter

from .clock import LEFT_BEHIND, cancel_within, leave
from .signals import handling

log = logging.getLogger(__name__)
LEAVE_AFTER_S = 5.0  # a task left running when a command's work is done gets this long to stop
# (end_left_behind's warning, for tasks it detached: under a plain asyncio.run(main()), whose end
# tries to close the async generators they are running)
ASYNCIO_MAY_SAY = ("; under a plain asyncio.run(main()), asyncio may also log an ERROR for each async generator "
                   "they run at its loop's end "
                   "(\"aclose(): asynchronous generator is already running\"): the same tasks, left behind")


async def done_or_stopped(what, stop: asyncio.Event, timeout: float | None = None) -> bool:
    """Wait until ``what`` (an awaitable; not cancelled here if it is a future) is done or ``stop``
    is set, at most ``timeout`` s (None: no limit): whether either happened."""
    own = not asyncio.isfuture(what)
    what, halt = asyncio.ensure_future(what), asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([what, halt], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halt.cancel()
        if own:
            what.cancel()
    return bool(done)


async def unless_stopped(work, stop: asyncio.Event | None) -> bool:
    """Await ``work`` unless ``stop`` is set first: then cancel it (an agent's load: kame.backend.
    childproc terminates the children it waits for) and return False."""
    task = asyncio.ensure_future(work)
    if stop is not None:
        await done_or_stopped(task, stop)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return False
    await task  # (its error, if any)
    return True


# `kame run`'s exit status after SIGTERM, the files written: 128 + 15, as Ctrl-C's is 128 + 2 (130): the
# run was cut short, and a script that takes 0 for "complete" must not take a cut-short file for one.
# (`kame serve` exits 0 after SIGTERM: for a service it is the normal stop, docs/protocol.md "Stopping".)
TERMINATED_STATUS = 143


class QuitAtOnce(KeyboardInterrupt):
    """The second signal, after a first one that ended the work and said "... again to quit at
    once": the command leaves now, writing nothing more. ``signal``: its name ("SIGINT",
    "SIGTERM"); ``status``: the exit status (130, 143 after SIGTERM); ``said``: kame's main's words
    for it ("terminated (SIGTERM) again: quit at once, nothing more written"; was: a bare
    KeyboardInterrupt, said "interrupted", exit 130, after a second SIGTERM too)."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum).name
        super().__init__(self.signal)
        self.status = exit_status(self.signal)
        self.said = f"{stopped_by(self.signal)} again: quit at once, nothing more written"


class Stop(asyncio.Event):
    """first_ctrl_c's event; ``signal``: the name of the signal that set it ("SIGINT",
    "SIGTERM"), None while unset."""

    signal: str | None = None


@contextlib.asynccontextmanager
async def first_ctrl_c(what: str, *, sigterm: bool = False):
    """An asyncio.Event (a Stop) set by the first Ctrl-C (SIGINT) inside the block, which prints
    "interrupted: ``what``": the caller ends its work early and keeps what it has (kame run,
    kame client). A second Ctrl-C raises KeyboardInterrupt (QuitAtOnce): quit at once, even while
    the loop is busy. ``sigterm``: SIGTERM too (kame run: was killed at once, nothing written),
    the first printing "terminated (SIGTERM): ``what``", a second of either quitting at once
    (QuitAtOnce); the hint printed is worded by the signal received (interrupt.again).
    Inside a sigterm_held block, its SIGTERM sets the HeldSigterm's ``again`` at once, so a
    second SIGTERM after this block (kame run ending its leftover tasks) quits as the hint said.
    Not installed where the signal is ignored (``cmd &`` in a script ignores SIGINT) or handled
    outside Python (getsignal's None: it could not be restored) nor outside the main thread; the
    previous handlers are restored at the end."""
    loop, stop = asyncio.get_running_loop(), Stop()
    pressed = []

    def announce(name: str) -> None:
        stop.signal = name
        stop.set()
        print(f"\n{stopped_by(name)}: {what} ({again(name)})", file=sys.stderr, flush=True)

    def interrupted(signum, frame) -> None:  # (runs in the main thread, between bytecodes: it may
        # interrupt the loop or a write to stderr, so it only records the press; the loop does the rest)
        if pressed:
            raise QuitAtOnce(signum)
        pressed.append(True)
        held = getattr(installed.get(signum), "held", None)  # (sigterm_held's handler: its state)
        if held is not None:  # (was: set only after run_to_end returned; a SIGTERM before was only noted)
            held.again = True
        loop.call_soon_threadsafe(announce, signal.Signals(signum).name)

    installed = {}  # signal -> the handler it had
    with contextlib.ExitStack() as handlers:
        for sig in (signal.SIGINT, signal.SIGTERM) if sigterm else (signal.SIGINT,):
            previous = handlers.enter_context(handling(sig, interrupted))
            if previous is not None:
                installed[sig] = previous
        yield stop


def stopped_by(name: str | None) -> str:
    """How stderr says what ended a run: "interrupted" (Ctrl-C, SIGINT), "terminated (SIGTERM)"."""
    return "interrupted" if name in (None, "SIGINT") else f"terminated ({name})"


def exit_status(name: str | None) -> int:
    """The exit status of a run the signal ``name`` ended, by stopped_by's rule: 130 (Ctrl-C,
    SIGINT; None: a Ctrl-C), TERMINATED_STATUS (143) otherwise (SIGTERM)."""
    return 130 if name in (None, "SIGINT") else TERMINATED_STATUS


def again(name: str) -> str:
    """The hint after the first signal ``name``, worded by that signal (was: "Ctrl-C again" after
    a SIGTERM too, which a service manager or `kill` sends, not a keyboard)."""
    return "Ctrl-C again to quit at once" if name == "SIGINT" else f"{name} again or Ctrl-C to quit at once"


class HeldSigterm:
    """sigterm_held's state: ``signal`` "SIGTERM" once one came within the block (None until then);
    ``again``: the next SIGTERM quits at once (QuitAtOnce), as after a first one (set by a
    first_ctrl_c inside the block when a SIGTERM reaches it)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self.again = False


@contextlib.contextmanager
def sigterm_held():
    """Within the block a SIGTERM is only noted (the HeldSigterm yielded: ``.signal``), so the work
    in it (kame run writing OUT.wav, OUT.json, OUT.png) is finished, not cut into partial files;
    the caller then exits with TERMINATED_STATUS. A second one (or the first, once ``.again`` is
    set: a SIGTERM ended the conversation and said "again ... to quit at once") raises
    QuitAtOnce: quit at once. A first_ctrl_c inside the block takes SIGTERM over for its
    own and gives it back. Not installed where SIGTERM is ignored or handled outside Python nor
    outside the main thread; the previous handler is restored at the end. (The handler only records: it runs between
    bytecodes, possibly inside a write to stderr.)"""
    held = HeldSigterm()

    def noted(signum, frame) -> None:
        if held.signal or held.again:
            raise QuitAtOnce(signum)
        held.signal = signal.Signals(signum).name

    noted.held = held  # (first_ctrl_c sets .again through it)
    with handling(signal.SIGTERM, noted):
        yield held


@contextlib.contextmanager
def sigterm_as_ctrl_c(*, sigterm: bool = True, sigint: bool = False):
    """Within the block a SIGTERM raises KeyboardInterrupt, as Ctrl-C does, after noting
    "SIGTERM" in the list yielded (the commands that run without an event loop: kame train, kame
    data encode, kame bench train; their Ctrl-C path then says how it stopped, exit
    TERMINATED_STATUS). ``sigterm`` False: not for SIGTERM. ``sigint``: a Ctrl-C (SIGINT) too is
    noted, "SIGINT", before its KeyboardInterrupt (kame train under torchrun, whose SIGTERM is left
    to torchrun: a process whose KeyboardInterrupt a collective took still knows it was stopped).
    Neither: nothing installed (the list stays empty)."""
    by: list[str] = []

    def terminated(signum, frame) -> None:
        by.append(signal.Signals(signum).name)
        raise KeyboardInterrupt

    with contextlib.ExitStack() as handlers:
        for sig, wanted in ((signal.SIGTERM, sigterm), (signal.SIGINT, sigint)):
            if wanted:
                handlers.enter_context(handling(sig, terminated))
        yield by


def run_ended_by_sigterm(main) -> str | None:
    """``main()`` run to its end (run_to_end: bounded) where a SIGTERM ends the run as Ctrl-C does
    (its task cancelled: the work in flight finishes what it must, ``finally`` blocks run) and
    returns "SIGTERM"; a second signal after the first, SIGTERM or Ctrl-C, also while the tasks
    left are ended, raises QuitAtOnce (quit at once: was swallowed, the run's line said as after
    one, or the second SIGTERM killed the process, nothing said). None when ``main`` ended by
    itself; a first Ctrl-C cancels it too, then raises KeyboardInterrupt, as asyncio.run does. (The
    kame data commands: their manifest written; after a QuitAtOnce, nothing more.)"""
    stopped: list[str] = []  # the first signal's name
    tasks: list[asyncio.Task] = []  # run()'s
    quits: list[QuitAtOnce] = []

    def signalled(signum, frame) -> None:  # (runs between bytecodes: it only cancels or raises)
        if stopped:
            quits.append(QuitAtOnce(signum))  # (raised again below if the runner's end took it for a Ctrl-C)
            raise quits[-1]
        stopped.append(signal.Signals(signum).name)
        if tasks and not tasks[0].done():
            tasks[0].get_loop().call_soon_threadsafe(tasks[0].cancel)
        elif signum == signal.SIGINT:  # (before or after the run: as ever)
            raise KeyboardInterrupt

    async def run():
        tasks.append(asyncio.current_task())
        await main()

    try:  # (the handlers over the whole of it: a second SIGTERM while the runner ended the tasks left killed the
        # process; run_to_end: one raised inside a task that then ignored its cancellation hung asyncio.run's end)
        with handling(signal.SIGTERM, signalled), handling(signal.SIGINT, signalled):
            run_to_end(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        if not stopped:
            raise
    finally:
        for task in tasks:  # (a QuitAtOnce raised out of the loop, then again by the task as it was cancelled:
            if task.done() and not task.cancelled():  # taken here, not "Task exception was never retrieved")
                task.exception()
    if quits:
        raise quits[0]
    if stopped == ["SIGINT"]:
        raise KeyboardInterrupt  # (the caller says it, as after a Ctrl-C the runner turned into one)
    return stopped[0] if stopped else None


@contextlib.contextmanager
def after_stop(stopped: bool):
    """The block after the work (the files a stopped run still writes, the children kame's main
    stops): a SIGTERM within is held to its end (sigterm_held: the HeldSigterm yielded, ``.signal``
    once one came). ``stopped``: a first signal stopped the work already; then a SIGTERM or a
    Ctrl-C within is the second and quits at once: QuitAtOnce, said "interrupted again: quit at
    once, nothing more written" for a Ctrl-C (was: a plain KeyboardInterrupt, said "interrupted"
    as a first Ctrl-C). If not, a Ctrl-C raises KeyboardInterrupt, as anywhere."""
    with sigterm_held() as held:
        held.again = stopped
        try:
            yield held
        except KeyboardInterrupt as exc:
            if stopped and not isinstance(exc, QuitAtOnce):
                raise QuitAtOnce(signal.SIGINT) from None
            raise


def run_to_end(main, leave_after: float = LEAVE_AFTER_S):
    """``asyncio.run(main)``, except at the end: the tasks ``main`` leaves running (a plugin's
    stream that catches its cancellation, an ``aclose()`` that never returns) are cancelled and
    waited for at most ``leave_after`` seconds, then left behind with a warning naming them, where
    asyncio.run would wait for them forever. (A component's thread that never returns still
    holds the interpreter's exit: Python joins those.)"""
    runner = asyncio.Runner()
    try:
        return runner.run(main)
    finally:
        close_runner(runner, leave_after)


def close_runner(runner: asyncio.Runner, leave_after: float = LEAVE_AFTER_S) -> None:
    """Close ``runner`` (asyncio.Runner) as run_to_end closes its own: the tasks still running are
    cancelled and get ``leave_after`` s, then are left behind, named (a component that ignores its
    cancellation must not hang the command's end; its tasks are named after it: "next item of LLM
    NAME's reply", "STT NAME's stream (session s1)"), each name once with its count. Tasks an
    agent's stop() already detached and warned about (end_left_behind) are left too, unsaid."""
    try:
        left = runner.run(_end_leftovers(leave_after))
        within = f"within {leave_after:.0f} s of their cancellation"
    except BaseException as exc:  # noqa: BLE001 - Ctrl-C during that wait (or a task raising the second signal's
        running = [t for t in asyncio.all_tasks(runner.get_loop()) if not t.done()]  # QuitAtOnce again as it is
        leave(running)  # cancelled): leave what is still running
        cut = "a second signal" if isinstance(exc, QuitAtOnce) else "Ctrl-C"
        left, within = sorted(t.get_name() for t in running), f"before {cut} cut their wait short"
    from ..backend.childproc import loads_running

    if left:
        _warn_left("", left, within)
        runner.get_loop().close()
    elif _still_left(runner.get_loop()):  # detached by an agent's stop(), which warned: closing the runner
        runner.get_loop().close()  # would aclose() their running async generators (asyncio's ERROR lines)
    elif loads_running():  # a cancelled model load still in the executor: closing that would join it
        runner.get_loop().close()  # (the caller leaves without waiting: childproc.exit_if_loading)
    else:
        runner.close()


def _warn_left(prefix: str, names: list[str], within: str, more: str = "") -> None:
    """The warning naming the tasks left behind (close_runner's, end_left_behind's)."""
    log.warning("%s%d task(s) did not stop %s and are left behind (a component that ignores cancellation "
                "or never finishes closing): %s%s", prefix, len(names), within, _named(names), more)


def _named(names: list[str]) -> str:
    """Each name once, counted: "next item of LLM x's reply (7 tasks)", not seven times over."""
    return ", ".join(n if k == 1 else f"{n} ({k} tasks)" for n, k in Counter(names).items())


async def end_left_behind(who: str, leave_after: float | None = None) -> list[str]:
    """The end of an agent's ``stop()`` (``who``: "tandem", "cascade"): the tasks left running after
    their cancellation on this loop (kame.runtime.clock.leave: a plugin's stream that catches
    CancelledError, an ``aclose()`` that never returns) are cancelled again and get ``leave_after``
    s in all (None: LEAVE_AFTER_S); those still running then are named in a warning and detached
    from the loop (``_detach``), so that a program's plain ``asyncio.run(main())``, whose end
    cancels and awaits every task of the loop, ends (was: it waited for them forever, silently).
    Their names, sorted. LEFT_BEHIND is the process's, not the agent's: this also ends (and names
    under ``who``) the tasks other kame code, another agent on the same loop, left there."""
    leave_after = LEAVE_AFTER_S if leave_after is None else leave_after
    loop, seen = asyncio.get_running_loop(), set()
    deadline = loop.time() + leave_after  # (one for all rounds: stop() takes at most leave_after more)
    for _ in range(3):  # (one that ends may leave another: a reply cancelled in its stall timer leaves the
        # stream's __anext__ it waited for)
        tasks = [t for t in _still_left(loop) if t not in seen]
        if not tasks:
            break
        seen.update(tasks)
        await cancel_within(tasks, max(0.0, deadline - loop.time()))
    left = [t for t in seen if not t.done()]
    names = sorted(t.get_name() for t in left)
    if names:
        kept = [t for t in left if not _detach(t)]
        _warn_left(f"{who}: ", names, f"within {leave_after:g} s of their cancellation", ASYNCIO_MAY_SAY if not kept else
                   "; this Python cannot detach them from the event loop, so asyncio.run(main()) would wait for "
                   "them at its end: run main() with kame.runtime.run_to_end(main()) instead")
    return names


def _detach(task: asyncio.Future) -> bool:
    """Take ``task`` out of its loop's set of tasks (``asyncio.all_tasks``) where this Python lets
    us (asyncio.tasks._unregister_task, the hook for other task implementations): it runs on, but
    the end of asyncio.run no longer waits for it. Whether the task is out. (The async generators
    it runs stay the loop's: asyncio.run's end calls their ``aclose()``, which fails on a running
    one: ASYNCIO_MAY_SAY.)"""
    unregister = getattr(asyncio.tasks, "_unregister_task", None)
    if unregister is not None:
        unregister(task)
    return task not in asyncio.all_tasks(task.get_loop())


def _still_left(loop) -> list:
    """The tasks left behind on ``loop`` (kame.runtime.clock.LEFT_BEHIND) still running: those an
    agent's stop() detached from it (end_left_behind) among them."""
    return [t for t in list(LEFT_BEHIND) if not t.done() and t.get_loop() is loop]


async def _end_leftovers(leave_after: float) -> list[str]:
    """Cancel the tasks still running, wait at most ``leave_after`` s: the names of those left."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    # (said once, by run_to_end: not again as "Task was destroyed but it is pending!" at exit)
    return sorted(t.get_name() for t in await cancel_within(tasks, leave_after))
