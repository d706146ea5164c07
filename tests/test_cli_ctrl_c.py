"""A Ctrl-C that reaches kame's main (while kame starts: imports, the parser, the logging set-up;
or one the command did not take) exits 130 with one line on stderr and no traceback (was: a
silent exit 130, or a traceback when it came just after the parser was built). A second signal,
which quits at once, says which: "kame run: terminated (SIGTERM) again: quit at once, nothing more
written", exit 143 (was: "kame run: interrupted", 130); kame client's second Ctrl-C is said as kame
run's (was: nothing)."""

import logging
import os
import signal
import subprocess
import sys

import pytest

from kame import cli

STARTING = "kame run: interrupted (Ctrl-C) before it started; nothing was done\n"

# kame's own Ctrl-C handler is not installed yet while the command's module is imported: Python raises
# KeyboardInterrupt wherever the import is; an import hook raises it there, as a Ctrl-C would
IMPORT_INTERRUPTED = """
import importlib.abc, sys

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "kame.runtime.filemode":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
from kame.cli import main
sys.exit(main(["run", "in.wav", "-o", "out.wav"]))
"""


def test_ctrl_c_while_the_command_is_imported(tmp_path):
    p = subprocess.run([sys.executable, "-c", IMPORT_INTERRUPTED], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert p.returncode == 130 and p.stderr == STARTING, p.stderr  # (was: 130, nothing said)
    assert not list(tmp_path.iterdir())


def test_ctrl_c_while_logging_is_set_up(monkeypatch, capsys):
    def interrupted(**kw):  # (just after the parser: was outside main's catch, a traceback)
        raise KeyboardInterrupt

    monkeypatch.setattr(logging, "basicConfig", interrupted)
    try:
        status = cli.main(["run", "in.wav", "-o", "out.wav"])
    except KeyboardInterrupt:  # (caught here: left alone it would stop the whole test run)
        pytest.fail("the Ctrl-C went past kame's main (a traceback for the user)")
    assert status == 130 and capsys.readouterr().err == STARTING


def test_a_ctrl_c_the_command_does_not_take(monkeypatch, capsys):
    from kame.runtime import filemode

    def interrupted(args):  # (e.g. while it imports its models, before its own handler is installed)
        raise KeyboardInterrupt

    monkeypatch.setattr(filemode, "main", interrupted)
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == 130
    assert capsys.readouterr().err == "kame run: interrupted\n"  # (was: nothing)
    monkeypatch.setattr(cli, "_build_parser", lambda argv: interrupted(None))
    assert cli.main(["bench", "step"]) == 130
    assert capsys.readouterr().err == "kame bench step: interrupted (Ctrl-C) before it started; nothing was done\n"


def test_a_second_signal_says_which_and_exits_by_it(monkeypatch, capsys):
    from kame.runtime import filemode
    from kame.runtime.interrupt import QuitAtOnce

    def quit_at_once(signum):
        def main(args):
            raise QuitAtOnce(signum)
        return main

    monkeypatch.setattr(filemode, "main", quit_at_once(signal.SIGTERM))
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == 143  # (was: 130)
    assert capsys.readouterr().err == "kame run: terminated (SIGTERM) again: quit at once, nothing more written\n"
    monkeypatch.setattr(filemode, "main", quit_at_once(signal.SIGINT))
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == 130
    assert capsys.readouterr().err == "kame run: interrupted again: quit at once, nothing more written\n"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_kame_run_after_a_second_signal(tmp_path, sig):
    """(the test_run_stopped stand-in agent, in a process of its own, sent two signals at the third frame)"""
    import numpy as np

    from kame.audio import write_wav
    from tests.runtime.test_run_stopped import PROGRAM, ROOT

    twice = f"os.kill(os.getpid(), signal.{sig}); os.kill(os.getpid(), signal.{sig})"
    program = PROGRAM.replace("os.kill(os.getpid(), signal.SIGTERM)", twice)
    wav, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(wav, np.zeros(24000 * 4, np.float32), 24000)
    done = subprocess.run([sys.executable, "-c", program, "run", str(wav), "-o", str(out), "--tail", "0", "--no-png",
                           "--set", "backend.stt=none", "--set", "backend.llm=none"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    said = "terminated (SIGTERM)" if sig == "SIGTERM" else "interrupted"
    assert done.returncode == (143 if sig == "SIGTERM" else 130), done.stderr  # (was: 130 after SIGTERM too)
    assert done.stderr.endswith(f"\nkame run: {said} again: quit at once, nothing more written\n"), done.stderr
    assert "Traceback" not in done.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_kame_client_after_a_second_ctrl_c(tmp_path, monkeypatch, capsys):
    import asyncio
    import os

    import numpy as np

    from kame.audio import write_wav
    from kame.server import client

    async def chat(*a, stop, **kw):  # (the session streaming: Ctrl-C, then Ctrl-C again before it ended)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(stop.wait(), 10)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(client, "chat", chat)
    wav = tmp_path / "in.wav"
    write_wav(wav, np.zeros(24000, np.float32), 24000)
    assert cli.main(["client", "ws://127.0.0.1:9/api/chat", str(wav), "-o", str(tmp_path / "out.wav")]) == 130
    err = capsys.readouterr().err  # (was: the first Ctrl-C's line alone; kame run's says the second too)
    assert err.endswith("\nkame client: interrupted again: quit at once, nothing more written\n"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_second_signal_while_the_llm_child_stops(monkeypatch, capsys, sig):
    """kame run stopped by a first signal (130), then a second while the embedded LLM's child stops:
    said, not an atexit hook's KeyboardInterrupt traceback (a SIGTERM: killed, nothing said)."""
    from kame.backend import childproc
    from kame.runtime import filemode

    stopped = []

    def stop():  # (the child's stop_child waits for it: the second signal comes then)
        stopped.append(True)
        os.kill(os.getpid(), getattr(signal, sig))
        return True

    monkeypatch.setattr(childproc, "_shared_stops", [stop])
    monkeypatch.setattr(filemode, "main", lambda args: 130)  # (the first Ctrl-C: said by kame run, files kept)
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == (130 if sig == "SIGINT" else 143)
    said = "interrupted" if sig == "SIGINT" else "terminated (SIGTERM)"
    assert stopped and capsys.readouterr().err == f"kame run: {said} again: quit at once, nothing more written\n"
    monkeypatch.setattr(filemode, "main", lambda args: 0)  # (a run that ended by itself: its status kept)
    stopped.clear()
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == 0  # (SIGTERM: held to the stop's end; Ctrl-C: said)
    assert stopped and capsys.readouterr().err == (CUT_AFTER_THE_END if sig == "SIGINT" else "")


CUT_AFTER_THE_END = "kame run: interrupted while the back-end's child processes stopped; the command had ended\n"


def _raises(exc):
    def main(args):
        raise exc
    return main


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_llm_child_stops_after_a_command_that_raised(monkeypatch, capsys, sig):
    """A command that raised (a KameError, a Ctrl-C it did not take) has its shared children stopped
    by kame's main too, the signal then said as after one that returned (was: left to the
    interpreter's exit hook: a KeyboardInterrupt traceback, or killed by the SIGTERM, nothing said)."""
    from kame.backend import childproc
    from kame.errors import ConfigError
    from kame.runtime import filemode

    stopped = []

    def stop():
        stopped.append(True)
        os.kill(os.getpid(), getattr(signal, sig))
        return True

    monkeypatch.setattr(childproc, "_shared_stops", [stop])
    monkeypatch.setattr(filemode, "main", _raises(KeyboardInterrupt()))  # (a first Ctrl-C: the second now)
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == (130 if sig == "SIGINT" else 143)
    said = "interrupted" if sig == "SIGINT" else "terminated (SIGTERM)"
    assert stopped and capsys.readouterr().err == (
        f"kame run: interrupted\nkame run: {said} again: quit at once, nothing more written\n")
    monkeypatch.setattr(filemode, "main", _raises(ConfigError("no such voice")))  # (failed: its status kept)
    stopped.clear()
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == 1
    assert stopped and capsys.readouterr().err == (
        "kame: error: no such voice\n" + (CUT_AFTER_THE_END if sig == "SIGINT" else ""))


# kame run that ended by itself, then a Ctrl-C while the embedded LLM's child stops; its stand-in is
# registered as the embedded LLM registers its child: with release_children and the interpreter's exit hook
CTRL_C_AS_THE_CHILD_STOPS = """
import atexit, os, signal, sys
from kame.backend import childproc
from kame.cli import main
from kame.runtime import filemode

stopped = []

def close():  # (idempotent, as the embedded LLM's close(): stops the child once)
    if not stopped:
        stopped.append(True)
        os.kill(os.getpid(), signal.SIGINT)  # (the child's stop waits up to 10 s: the Ctrl-C comes then)
    return True

childproc.shared_child(close)
atexit.register(close)
filemode.main = lambda args: 0
sys.exit(main(["run", "in.wav", "-o", "out.wav"]))
"""


def test_a_ctrl_c_while_the_llm_child_stops_after_a_run_that_ended_by_itself(tmp_path):
    """Said in one line, the run's status 0 kept (was: the exit hook's "Exception ignored in atexit
    callback" and a KeyboardInterrupt traceback)."""
    p = subprocess.run([sys.executable, "-c", CTRL_C_AS_THE_CHILD_STOPS], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert p.returncode == 0 and p.stderr == CUT_AFTER_THE_END, p.stderr


@pytest.mark.parametrize("second", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("ended", ["by itself", "failed"])
def test_two_signals_while_the_children_stop_keep_the_status_of_a_command_that_ended(monkeypatch, capsys, second,
                                                                                     ended):
    """A SIGTERM (held: the stop goes on), then a second signal while the children stop, after a
    command that ended by itself (0) or failed (1): its status kept, said in one line as a Ctrl-C
    there is (was, for a second SIGTERM: "terminated (SIGTERM) again: quit at once, nothing more
    written", exit 143, which told a script the finished work was cut short)."""
    from kame.backend import childproc
    from kame.errors import ConfigError
    from kame.runtime import filemode

    stopped = []

    def stop():
        stopped.append(True)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), getattr(signal, second))
        return True

    monkeypatch.setattr(childproc, "_shared_stops", [stop])
    monkeypatch.setattr(filemode, "main", (lambda args: 0) if ended == "by itself" else _raises(ConfigError("no voice")))
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == (0 if ended == "by itself" else 1)
    said = "interrupted" if second == "SIGINT" else "terminated (SIGTERM)"
    assert stopped == [True] and capsys.readouterr().err == (
        ("" if ended == "by itself" else "kame: error: no voice\n")
        + f"kame run: {said} while the back-end's child processes stopped; the command had ended\n")


@pytest.mark.parametrize("second", [None, "SIGINT", "SIGTERM"])
def test_after_a_ctrl_c_cut_a_childs_stop_the_others_are_still_stopped(monkeypatch, capsys, second):
    """Two shared children (a cascade: pocketsphinx's and the embedded LLM's), a Ctrl-C while the
    first stops after a run that ended by itself: the second is stopped by kame's main too (was:
    left to its exit hook, where a second Ctrl-C printed the atexit traceback); a ``second``
    signal while it stops quits at once, said; the run's status 0 kept either way."""
    from kame.backend import childproc
    from kame.runtime import filemode

    calls = []

    def first():
        calls.append("first")
        os.kill(os.getpid(), signal.SIGINT)
        return True

    def other():
        calls.append("other")
        if second:
            os.kill(os.getpid(), getattr(signal, second))
        return True

    monkeypatch.setattr(childproc, "_shared_stops", [first, other])
    monkeypatch.setattr(filemode, "main", lambda args: 0)
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == 0
    said = {None: "", "SIGINT": "kame run: interrupted again: quit at once, nothing more written\n",
            "SIGTERM": "kame run: terminated (SIGTERM) again: quit at once, nothing more written\n"}[second]
    assert calls == ["first", "other"] and capsys.readouterr().err == (
        CUT_AFTER_THE_END.rstrip("\n") + " (stopping the others: Ctrl-C again to quit at once)\n" + said)


def test_a_kame_serve_run_before_does_not_keep_the_next_commands_children_running(monkeypatch):
    """kame serve's own final release (childproc.release_children(final=True)) hides the shared
    children from kame's main for that command only: a command run after it in the same process
    (a test worker, a long-lived program) has its children stopped (was: none, ever again)."""
    from kame.backend import childproc
    from kame.runtime import filemode

    stopped = []
    monkeypatch.setattr(childproc, "_shared_stops", [lambda: stopped.append(True) or True])
    monkeypatch.setattr(childproc, "_released_for_good", False)
    childproc.release_children(final=True)  # (kame serve's stop, in this process)
    stopped.clear()
    monkeypatch.setattr(filemode, "main", lambda args: 0)
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == 0
    assert stopped == [True]


# as CTRL_C_AS_THE_CHILD_STOPS, with two children (a cascade's: pocketsphinx's, the embedded LLM's), each
# registered with release_children and the exit hook, and idempotent as their close() is: a Ctrl-C while the
# first stops, a second while the other one does
TWO_CHILDREN = """
import atexit, os, signal, sys
from kame.backend import childproc
from kame.cli import main
from kame.runtime import filemode

calls = []

def stand_in(name):
    def close():
        if name in calls:
            return False
        calls.append(name)
        os.kill(os.getpid(), signal.SIGINT)
        return True
    childproc.shared_child(close)
    atexit.register(close)

stand_in("llm")
stand_in("pocketsphinx")
filemode.main = lambda args: 0
status = main(["run", "in.wav", "-o", "out.wav"])
print("stopped by main:", *calls, file=sys.stderr)
sys.exit(status)
"""


def test_two_ctrl_cs_while_two_children_stop_print_no_traceback(tmp_path):
    """(was: the second child left to its exit hook: "Exception ignored in atexit callback" and a
    KeyboardInterrupt traceback)"""
    from pathlib import Path

    import kame

    env = {**os.environ, "PYTHONPATH": str(Path(kame.__file__).parents[1])}  # (this kame, with cwd elsewhere)
    p = subprocess.run([sys.executable, "-c", TWO_CHILDREN], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env=env)
    assert p.returncode == 0 and p.stderr == (
        CUT_AFTER_THE_END.rstrip("\n") + " (stopping the others: Ctrl-C again to quit at once)\n"
        "kame run: interrupted again: quit at once, nothing more written\n"
        "stopped by main: llm pocketsphinx\n"), p.stderr


def test_the_children_are_stopped_after_an_output_error_too(monkeypatch, capsys):
    """A command that failed to write its standard output (a full disk: `> /dev/full`) has its shared
    children stopped by kame's main too, a Ctrl-C meanwhile said as after any failure, status 1
    kept (was: left to the interpreter's exit hook)."""
    import errno

    from kame.backend import childproc
    from kame.runtime import filemode

    stopped = []

    def stop():
        stopped.append(True)
        os.kill(os.getpid(), signal.SIGINT)
        return True

    def full(args):
        exc = OSError(errno.ENOSPC, "No space left on device")
        exc.kame_stream = "stdout"  # (as kame's marked stdout raises it)
        raise exc

    monkeypatch.setattr(childproc, "_shared_stops", [stop])
    monkeypatch.setattr(filemode, "main", full)
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == 1
    assert stopped and capsys.readouterr().err == (
        CUT_AFTER_THE_END + "kame: error: cannot write to standard output: No space left on device\n")
