"""kame.backend.childproc: a back-end child does not outlive its parent (a SIGTERM that killed
`kame data synth` while its LLM child loaded left the child loading ~15 s more, then dying on a
BrokenPipeError traceback), and a pipe closed at the parent's end ends it without a traceback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kame.backend import childproc

ROOT = Path(__file__).resolve().parents[2]  # (the parent script imports this module as tests.backend....)

PARENT = """
import sys
from kame.backend.childproc import start_child
from tests.backend.test_childproc_parent import _slow_to_load
start_child(_slow_to_load, (sys.argv[1],), name="kame-test-slow", what="the slow child")
"""


def _slow_to_load(conn, pid_file):
    """A child that takes long to get ready (the embedded LLM's ~20 s load), its pid in ``pid_file``."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)
    conn.send(("loaded", None))


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (exited, not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_until(condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_a_child_still_loading_ends_with_its_parent(tmp_path):
    """The parent killed by SIGTERM (no handler: as `kame data synth` was while its LLM loaded), so
    none of its exit hooks runs: the loading child ends too, without a traceback."""
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_file)], cwd=ROOT, stderr=subprocess.PIPE)
    child = None
    try:
        assert _wait_until(pid_file.exists, 60), "the child did not start"
        _wait_until(lambda: pid_file.read_text() != "", 5)
        child = int(pid_file.read_text())
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(10) == -signal.SIGTERM
        assert _wait_until(lambda: _gone(child), 10), "the child outlived its parent"
        err = parent.stderr.read().decode()  # (the child held it too: EOF once both are gone)
        assert "Traceback" not in err and "Error" not in err, err
    finally:
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        parent.wait(10)
        parent.stderr.close()


def _send_loaded(conn):
    conn.send(("loaded", None))


def _eof_of_its_own(conn):
    raise EOFError("a truncated file of the child's own")


def _run_child(target):
    """``target`` run as start_child runs it, the parent's end of its pipe closed at once: its exit code."""
    parent_conn, child_conn = childproc.CTX.Pipe()
    proc = childproc.CTX.Process(target=childproc._child, args=(target, child_conn), daemon=True)
    proc.start()
    child_conn.close()
    parent_conn.close()  # (the child is still starting its interpreter: its send comes later)
    proc.join(60)
    return proc.exitcode


def test_a_pipe_closed_at_the_parents_end_ends_the_child_quietly(capfd):
    """(was: "Process kame-...: Traceback ... BrokenPipeError" on stderr, exit code 1)"""
    assert _run_child(_send_loaded) == 0
    assert "Traceback" not in capfd.readouterr().err
    # an error of the child's own work that is not its pipe's still shows its traceback
    assert _run_child(_eof_of_its_own) == 1
    assert "EOFError: a truncated file of the child's own" in capfd.readouterr().err
