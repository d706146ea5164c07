"""SIGTERM in ``kame eval mtbench`` (kame.runtime.interrupt has kame run's rules; these take them
over for a whole evaluation): ``stop_on_sigterm`` makes SIGTERM end it as Ctrl-C does, wherever it
comes (the judge, the TTS, whisper, between questions; while a question is played FileAgent takes
it over and gives it back), as ``Terminated``; main closes what it opened (``settle`` first: the
tasks the signal cut) and exits TERMINATED_STATUS (143), as kame run does. ``held`` defers it
over a file write (runs/ID.*, results.jsonl), as kame run's sigterm_held does over its files;
``close_held`` over the closing at the end. ``sigterm_line``: what stderr then says. ``main``:
the command's main around all that. Shared by ``kame eval mtbench`` and ``kame eval pairwise``."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from ..cli import say
from .firstwrites import FirstWrites
from .judge import close_judge
from .results import has_results


class Terminated(KeyboardInterrupt):
    """SIGTERM ended the evaluation (stop_on_sigterm; a question or the warm-up that FileAgent
    ended for it): main closes what it opened, as after Ctrl-C, and exits TERMINATED_STATUS (143)."""


def stop_on_sigterm():
    """From now on SIGTERM raises Terminated (a KeyboardInterrupt), as Ctrl-C ends the evaluation,
    wherever it comes: the judge, the TTS, whisper, between questions (was: killed at once, no
    exit hook run: an embedded judge's or LLM's child left); the function returned restores the
    previous handler. While a question is played FileAgent takes SIGTERM over (the question's
    files written, then Terminated) and gives it back. Not installed where SIGTERM is ignored nor
    outside the main thread. (The handler only raises: it runs between bytecodes.)"""
    import signal

    def stopped(signum, frame) -> None:
        raise Terminated

    from ..runtime.signals import handling

    handlers = contextlib.ExitStack()
    handlers.enter_context(handling(signal.SIGTERM, stopped))
    return handlers.close


@contextlib.contextmanager
def held():
    """Within the block a SIGTERM is only noted (kame.runtime.interrupt.sigterm_held: a second one
    quits at once), so the files written in it are written whole; Terminated at its end if one
    came (was: raised wherever it came, e.g. between a question's two lines of results.jsonl)."""
    from ..runtime.interrupt import sigterm_held

    sigterm = None
    try:
        with sigterm_held() as sigterm:
            yield
    finally:
        if sigterm is not None and sigterm.signal:
            raise Terminated


def settle(runner: asyncio.Runner, cancel: bool = False, tries: int = 10) -> None:
    """After a Terminated: let ``runner``'s loop run the tasks it cut short to their end (raised in
    a task, it leaves the task awaiting that one, e.g. the judge's rate() around its wait_for, to
    raise it again out of the loop the next time the loop runs, which would cut the closing that
    follows); ``cancel`` (the agent closed): also cancel what is left (a judge's request under way,
    which closing the judge would otherwise fail, logged as "never retrieved"), given 5 s. A SIGTERM
    meanwhile is a second one (sigterm_held, ``again``): QuitAtOnce, raised (was: taken for a cut
    task's Terminated and lost, so a third was needed to quit at once)."""
    from ..runtime.interrupt import sigterm_held

    async def left_cancelled() -> None:
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in left:
            t.cancel()
        if left:
            await asyncio.wait(left, timeout=5.0)

    with sigterm_held() as sigterm:
        sigterm.again = True
        for _ in range(tries):
            cut = asyncio.all_tasks(runner.get_loop())
            try:
                runner.run(left_cancelled() if cancel else asyncio.sleep(0))
                return
            except Terminated:
                pass
            finally:
                for t in cut:  # (their errors taken: not logged as "never retrieved")
                    if t.done() and not t.cancelled():
                        t.exception()


def close_held(runner: asyncio.Runner, judge, terminated: bool, agent=None) -> bool:
    """Close ``agent`` (FileAgent; None: none), then ``judge`` (None: none) and ``runner``, a
    SIGTERM meanwhile only noted, so they close whole (was, in pairwise: raised inside the judge's
    close, which was cut and close_runner skipped: an embedded judge's child left); a second one
    (or any, once ``terminated``: a SIGTERM already ended the run) quits at once. ``terminated``:
    the tasks it cut are cancelled first (settle). Whether a SIGTERM ends the command: ``terminated``
    or one that came while closing (the caller then exits 143)."""
    from ..runtime.interrupt import close_runner, sigterm_held

    with sigterm_held() as sigterm:
        sigterm.again = terminated
        try:
            if agent is not None:
                agent.close()
        finally:
            try:
                if terminated:
                    settle(runner, cancel=True)  # (a SIGTERM in it quits at once: the judge and runner still close)
            finally:
                try:
                    close_judge(judge, runner)  # (logged, never raised)
                finally:
                    close_runner(runner)  # (a task that ignores its cancellation is left, named, not waited for)
    return terminated or sigterm.signal is not None


def sigterm_line(first: FirstWrites, out: str | Path, what: str, kept: str, before: str, none: str) -> str:
    """What stderr says when SIGTERM ended the command (exit 143): whether OUT keeps results.
    mtbench's: ``what`` "evaluation", ``kept`` "the questions rated", ``before`` (OUT left as it
    was) "no question was run", ``none`` (begun, nothing rated yet) "no question was rated yet".
    "Kept" only when OUT/results.jsonl holds some (was: also for a SIGTERM during the first
    question or pair, no results.jsonl written)."""
    results = Path(out) / "results.jsonl"
    if not first.kept:
        said = f"{out} is left as it was ({before})"
    elif has_results(results):
        said = f"{kept} are kept in {results} (a rerun resumes)"
    else:
        said = f"{none} ({results} not written)"
    return f"terminated (SIGTERM): the {what} ends here; {said}"


def main(args, body, words: tuple[str, str, str, str], files=(), folders=()) -> int:
    """kame eval mtbench's and pairwise's main: ``body(args, first)`` (kame.eval.firstwrites: what
    it makes in ``args.output`` before its first result, its ``files`` and ``folders``, is undone
    when it fails before one), SIGTERM raising Terminated from before OUT is made on (was: after
    eval.json and runs/, a SIGTERM then left them); a Terminated out of it (one outside its loop:
    while OUT is checked and made, or the table written; pairwise's too) said with sigterm_line in
    ``words`` and ended with TERMINATED_STATUS (143)."""
    from ..runtime.interrupt import TERMINATED_STATUS

    first = FirstWrites(args.output, files=files, folders=folders)
    restore = stop_on_sigterm()
    try:
        return first.run(body, args)
    except Terminated:
        say(sigterm_line(first, args.output, *words))
        return TERMINATED_STATUS
    finally:
        restore()
