"""kame.backend.childproc: a child is ready on its "loaded" message; a missing model or a child
that dies while loading is a clear error; stop_child ends it."""

import pytest

from kame.backend.childproc import children_cpu_seconds, reap_child, start_child, stop_child
from kame.errors import BackendError, NotAvailableError


def _echo(conn, greeting):
    conn.send(("loaded", None))
    while True:
        try:
            conn.send((greeting, conn.recv()))
        except EOFError:
            return


def _spin_then_load(conn, cpu_s):
    import time

    t = time.process_time()
    while time.process_time() - t < cpu_s:
        pass
    conn.send(("loaded", None))
    conn.recv()  # until the pipe closes


def _exit_on_message(conn):
    conn.send(("loaded", None))
    raise SystemExit(conn.recv())


def _slow_teardown(conn, marker):
    """Returns once its pipe closes; its interpreter's teardown (an exit hook here; torch and
    transformers in the embedded LLM's child) would take seconds and then write ``marker``."""
    import atexit
    import pathlib
    import time

    atexit.register(lambda: (time.sleep(3), pathlib.Path(marker).write_text("torn down")))
    conn.send(("loaded", None))
    try:
        conn.recv()
    except EOFError:
        return


def _no_model(conn):
    conn.send(("unavailable", "no model here"))


def _dies(conn):
    raise SystemExit(3)


def _fails(conn):
    raise RuntimeError("as spawn's bootstrap does when a script starts a child on import")


def _warns(conn):
    import logging

    logging.getLogger("kame.backend.llm.converted").warning("a kame warning")
    library = logging.getLogger("huggingface_hub")  # (a handler of its own, as huggingface_hub sets)
    library.addHandler(logging.StreamHandler())
    library.warning("a library warning")
    conn.send(("loaded", 0, None))
    conn.recv()


def test_a_childs_kame_warnings_are_kames_log_lines_and_no_line_is_printed_twice(capfd):
    proc, conn = start_child(_warns, (), name="kame-test-warns", what="a warning child")
    stop_child(proc, conn)
    err = capfd.readouterr().err
    assert " WARNING kame.backend.llm.converted: a kame warning\n" in err  # (was: the bare message)
    assert err.count("a kame warning") == 1 and err.count("a library warning") == 1


def test_a_child_whose_main_script_set_up_logging_keeps_it(monkeypatch):
    """(a child imports the parent's main script again: one that calls logging.basicConfig gets kame's
    lines once, in its own format, not twice)"""
    import logging

    from kame.backend import childproc

    root, kame = logging.getLogger(), logging.getLogger("kame")
    monkeypatch.setattr(root, "handlers", [logging.StreamHandler()])
    monkeypatch.setattr(kame, "handlers", [])
    childproc._log_as_kame()
    assert kame.handlers == []
    monkeypatch.setattr(root, "handlers", [])
    childproc._log_as_kame()
    assert len(kame.handlers) == 1 and kame.handlers[0].formatter._fmt == childproc.LOG_FORMAT


def test_start_talk_stop():
    proc, conn = start_child(_echo, ("hi",), name="kame-test-echo", what="the echo child")
    assert proc.is_alive() and proc.daemon
    conn.send(42)
    assert conn.recv() == ("hi", 42)
    stop_child(proc, conn)
    assert not proc.is_alive() and proc.exitcode == 0  # it left on EOF, not terminated


def test_ctrl_c_is_the_parents_to_handle():
    """Ctrl-C reaches the whole process group; the child ignores it (no KeyboardInterrupt
    traceback mid-message) and ends when the parent closes the pipe."""
    import os
    import signal

    proc, conn = start_child(_echo, ("hi",), name="kame-test-echo", what="the echo child")
    os.kill(proc.pid, signal.SIGINT)
    conn.send(1)
    assert conn.recv() == ("hi", 1) and proc.is_alive()  # was: dead with a traceback
    stop_child(proc, conn)
    assert proc.exitcode == 0


def test_load_failures_are_clear_errors():
    with pytest.raises(NotAvailableError, match="the x child failed to start: no model here"):
        start_child(_no_model, (), name="kame-test", what="the x child")
    with pytest.raises(BackendError, match=r"exited while loading \(exit code 3\)"):
        start_child(_dies, (), name="kame-test", what="the x child")
    with pytest.raises(BackendError, match=r'exit code 1\).*if __name__ == "__main__"'):
        start_child(_fails, (), name="kame-test", what="the x child")


def test_reap_child_reports_the_exit_code_and_ends_a_hung_child():
    proc, conn = start_child(_exit_on_message, (), name="kame-test-exit", what="the exiting child")
    conn.send(5)
    proc.join(10)  # it died by itself
    assert reap_child(proc, conn) == 5 and conn.closed
    proc, conn = start_child(_echo, ("hi",), name="kame-test-echo", what="the echo child")
    assert reap_child(proc, conn, hung=True) == -15  # alive but not answering: terminated (SIGTERM)
    assert not proc.is_alive() and conn.closed
    assert reap_child(None, None) is None


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/stat"), reason="reads /proc")
def test_children_cpu_seconds_counts_a_live_child():
    before = children_cpu_seconds()
    proc, conn = start_child(_spin_then_load, (0.5,), name="kame-test-spin", what="the spinning child")
    try:
        assert children_cpu_seconds() - before >= 0.4  # its CPU time, while it lives
    finally:
        stop_child(proc, conn)


def _ignores_sigterm(conn):
    import signal
    import time

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn.send(("loaded", None))
    while True:
        time.sleep(1)


def test_reap_child_kills_a_hung_child_that_ignores_sigterm():
    """Terminated, then killed 5 s later: never left running untracked."""
    proc, conn = start_child(_ignores_sigterm, (), name="kame-test-stubborn", what="the stubborn child")
    assert reap_child(proc, conn, hung=True) == -9 and not proc.is_alive()


def _sleep_then_load(conn, seconds):
    import time

    time.sleep(seconds)
    conn.send(("loaded", None))
    conn.recv()


async def test_cancelling_a_load_ends_the_children_it_waits_for():
    """Ctrl-C while an agent loads cancels its load_in_thread: the child it is waiting for is
    terminated, the load's later children are not started, and the loading thread ends at once
    (was: the exit waited ~20 s for the embedded LLM's child to get ready). A child another
    thread starts meanwhile (a live session's restart) is not touched."""
    import asyncio
    import multiprocessing
    import threading
    import time

    from kame.backend import childproc

    errors, other = [], []

    def load():
        for i in range(2):  # the second one must not start at all
            try:
                start_child(_sleep_then_load, (60,), name=f"kame-test-slow{i}", what=f"slow child {i}")
            except BackendError as exc:
                errors.append(str(exc))

    def elsewhere():  # not in the load: a child started by another thread at the same time
        other.append(start_child(_sleep_then_load, (0.5,), name="kame-test-other", what="the other child"))

    def children(name):
        return [p for p in multiprocessing.active_children() if p.name == name]

    task = asyncio.create_task(childproc.load_in_thread(load))
    bystander = threading.Thread(target=elsewhere)
    bystander.start()
    for _ in range(200):  # until the load's first child is spawned
        if children("kame-test-slow0"):
            break
        await asyncio.sleep(0.05)
    (proc,) = children("kame-test-slow0")
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):
        if len(errors) == 2:
            break
        await asyncio.sleep(0.05)
    assert "slow child 0 failed to start: the child exited while loading" in errors[0]
    assert errors[1] == "slow child 1 not started: the load was cancelled"
    assert time.monotonic() - t0 < 15 and not proc.is_alive() and not children("kame-test-slow1")
    bystander.join(30)
    (p, conn) = other[0]
    assert p.is_alive()  # started and ready, not terminated by the cancel
    stop_child(p, conn)


def test_a_child_leaves_without_tearing_its_interpreter_down(tmp_path):
    """Once its pipe closes a child exits at once, with code 0: the parent's exit and Ctrl-C no
    longer wait for torch's teardown in the child (the embedded LLM's took 2-5 s)."""
    marker = tmp_path / "torn-down"
    proc, conn = start_child(_slow_teardown, (str(marker),), name="kame-test-teardown", what="the test child")
    stop_child(proc, conn)
    assert proc.exitcode == 0
    assert not marker.exists()  # the exit hook never ran; stop_child did not wait 3 s for it


def test_abortable_load_holds_this_threads_children_only_within_it():
    """abortable_load (the embedded LLM's dispatcher restarting its child): once its handle is
    aborted, this thread's start_child calls fail at once (nothing spawned); after the block the
    thread starts children as before."""
    from kame.backend import childproc

    with childproc.abortable_load() as load:
        load.abort()
        with pytest.raises(BackendError, match="^the echo child not started: the load was cancelled$"):
            start_child(_echo, ("hi",), name="kame-test-echo", what="the echo child")
    assert load.aborted
    proc, conn = start_child(_echo, ("hi",), name="kame-test-echo", what="the echo child")
    stop_child(proc, conn)
    assert proc.exitcode == 0
