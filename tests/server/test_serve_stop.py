"""How `kame serve` stops, as a service manager and a terminal see it: Ctrl-C (SIGINT) exits
130 like every kame command (was: 0), SIGTERM (a service manager's normal stop) 0; a signal
during start-up exits without waiting for a model load still running in the process (was: the
exit waited for the load thread, a minute for a large front-end preset)."""

from __future__ import annotations

import argparse
import queue
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

# SIGHUP (a closed terminal or ssh session, `kill -HUP`) as SIGTERM (was: the process died at once)
SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 0)] + ([(signal.SIGHUP, 0)] if hasattr(signal, "SIGHUP") else [])
NAMES = [s.name for s, _ in SIGNALS]
CAUSES = {"SIGINT": "Ctrl-C (SIGINT)", "SIGTERM": "SIGTERM", "SIGHUP": "hang-up (SIGHUP), as for SIGTERM"}


def _serve(args: list[str], stdin=None) -> subprocess.Popen:
    # the signals at their default (a test run from a background job would pass SIGINT on ignored)
    return subprocess.Popen([sys.executable, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_signals)


def _default_signals() -> None:
    for sig in SIGNALS:
        signal.signal(sig[0], signal.SIG_DFL)


def _wait_for(proc: subprocess.Popen, text: str) -> str:
    """Until a stdout line holds ``text``, that line (read in a thread, one per process: a server that
    never says it fails, not hangs)."""
    lines: queue.Queue | None = getattr(proc, "lines", None)
    if lines is None:
        lines = proc.lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in iter(proc.stdout.readline, "")] + [lines.put("")],
                         daemon=True).start()
    while True:
        line = lines.get(timeout=60)
        assert line, f"kame serve ended before it said {text!r}: {proc.stderr.read()}"
        if text in line:
            return line


@pytest.mark.parametrize("sig, status", SIGNALS, ids=NAMES)
def test_the_exit_status_says_which_signal_stopped_it(sig, status):
    proc = _serve(["-c", "import sys; from kame.cli import main; sys.exit(main())", "serve", "--agent", "echo",
                   "--port", "0"])
    try:
        _wait_for(proc, "serving on http://")
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == status
        err = proc.stderr.read()
        assert "shutting down: closing 0 session(s)" in err and "Traceback" not in err
        # the cause, then the end (was: the same lines for all three, and nothing once stopped)
        assert f"INFO kame.server: stopping: {CAUSES[sig.name]}\n" in err, err
        assert f" (exit {status})\n" in err.split("INFO kame.server: stopped after ")[1], err
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_a_hang_up_closes_the_sessions_as_sigterm_does_and_a_second_one_is_ignored():
    """(lifecycle QA) a closed terminal sends SIGHUP, perhaps twice (the terminal's and its shell's):
    the session gets 1001 "server shutting down" and the exit is SIGTERM's 0 (was: 1006, exit 129)."""
    import asyncio

    import aiohttp

    from kame.server.client import chat_url

    proc = _serve(["-c", "import sys; from kame.cli import main; sys.exit(main())", "serve", "--agent", "echo",
                   "--port", "0"])

    async def hang_up_with_a_session(url: str):
        async with aiohttp.ClientSession() as http, http.ws_connect(chat_url(url)) as ws:
            await ws.receive(timeout=30)  # (the handshake: the session is open)
            proc.send_signal(signal.SIGHUP)
            proc.send_signal(signal.SIGHUP)
            while (msg := await ws.receive(timeout=30)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                pass
            return ws.close_code, msg.extra

    try:
        url = _wait_for(proc, "serving on http://").split("serving on ")[1].split()[0]
        code, reason = asyncio.run(hang_up_with_a_session(url))
        assert (code, reason) == (1001, "server shutting down")
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read()
        assert "stopping: hang-up (SIGHUP)" in err and "closing 1 session(s)" in err and "Traceback" not in err
    finally:
        proc.kill()
        proc.wait()


def _nohup() -> None:
    """preexec_fn: the signals as nohup leaves them (SIGHUP ignored)."""
    _default_signals()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _hang_up_is_ignored(proc) -> None:
    """A serving `kame serve` under nohup: a SIGHUP leaves it serving, a SIGTERM then stops it (0)."""
    proc.send_signal(signal.SIGHUP)
    with pytest.raises(subprocess.TimeoutExpired):  # (still serving)
        proc.wait(timeout=2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "hang-up" not in proc.stderr.read()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_under_nohup_a_hang_up_is_left_ignored():
    """`nohup kame serve` (SIGHUP ignored, so the server outlives its terminal) keeps serving after
    a hang-up, as before SIGHUP was handled (review: the handler replaced nohup's ignore)."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from kame.cli import main; sys.exit(main())", "serve",
                             "--agent", "echo", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_nohup)
    try:
        _wait_for(proc, "serving on http://")
        _hang_up_is_ignored(proc)
    finally:
        proc.kill()
        proc.wait()


LOADING_SCRIPT = textwrap.dedent("""
    import sys
    from kame import cli
    from kame.backend.childproc import load_in_thread
    from kame.errors import KameError
    from kame.server import app as A

    class Loading(A.Agent):  # its model loads in the process until the test writes a line
        max_sessions = 1
        components = {"mode": "tandem"}
        async def start(self):
            await load_in_thread(sys.stdin.readline)
        async def stop(self): pass
        async def open_session(self, session_id=None): raise KameError("not in this test")

    A._build = lambda args: (Loading(), A.ServerConfig(port=0))
    sys.exit(cli.main(["serve"]))
""")


@pytest.mark.parametrize("sig, status", SIGNALS, ids=NAMES)
def test_a_signal_while_the_agent_loads_exits_without_waiting_for_the_load(sig, status):
    proc = _serve(["-c", LOADING_SCRIPT], stdin=subprocess.PIPE)
    try:
        _wait_for(proc, "answers 503 \"loading\"")
        proc.send_signal(sig)
        try:
            got = proc.wait(timeout=30)  # (the load never ends by itself)
        except subprocess.TimeoutExpired:
            pytest.fail("kame serve waited for the agent's load to end after the signal")
        assert got == status
        assert "exiting without waiting for its load to end" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


# `kame serve` held where a signal can come before its server's loop handles them: in its imports
# (kame.cli builds the parser: kame.server.app, aiohttp; a second or more), building its agent and
# socket, or making its app (after main's last checkpoint before the loop); each step says it is reached
EARLY_SCRIPT = textwrap.dedent("""
    import sys
    from kame import cli
    from kame.server import app as A

    def step(name, real):
        def reached(*args, **kwargs):
            print("reached:", name, flush=True)
            if name == sys.argv[1]:
                sys.stdin.readline()  # (until the test writes a line)
            return real(*args, **kwargs)
        return reached

    cli._build_parser = step("imports", cli._build_parser)
    A._build = step("build", A._build)
    A.make_app = step("app", A.make_app)
    sys.exit(cli.main(["serve", "--agent", "echo", "--port", "0"]))
""")
NEXT_STEP = {"imports": "reached: build", "build": "reached: app", "app": "serving on"}


@pytest.mark.parametrize("phase", ["imports", "build", "app"])
@pytest.mark.parametrize("sig, status", SIGNALS, ids=NAMES)
def test_a_signal_as_it_starts_stops_it_as_a_later_one_does(sig, status, phase):
    """(last session's note) SIGTERM or SIGHUP in its first second or so, before the server's loop
    handles them, is a normal stop too: exit 0 (was: killed, 143 / 129), logged as a later one's
    once the step under way has ended (was: nothing logged for one during the imports), the next
    step not begun; a second one is ignored. Ctrl-C's 130 as ever, at once."""
    proc = _serve(["-c", EARLY_SCRIPT, phase], stdin=subprocess.PIPE)
    try:
        _wait_for(proc, f"reached: {phase}")
        proc.send_signal(sig)
        if sig != signal.SIGINT:  # (recorded: the step under way goes on to its end)
            proc.send_signal(sig)
            proc.stdin.write("go on\n")
            proc.stdin.flush()
        assert proc.wait(timeout=60) == status
        rest = list(iter(lambda: proc.lines.get(timeout=60), ""))  # (_wait_for's reader: stdout to its end)
        if phase in NEXT_STEP:
            assert not [line for line in rest if NEXT_STEP[phase] in line], rest
        err = proc.stderr.read()
        assert "Traceback" not in err
        if sig != signal.SIGINT:
            assert err.count(f"INFO kame.server: stopping: {CAUSES[sig.name]}\n") == 1, err
            assert " (exit 0)\n" in err.split("INFO kame.server: stopped after ")[1], err
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_a_recorded_hang_up_the_loop_also_dispatches_begins_one_stop():
    """A SIGHUP between aiohttp's handlers (the loop's wakeup fd set) and the server's own is both
    recorded by kame.cli's early stop and dispatched by the loop once Stopping.install has added its
    handler: one stop (without the guard, the second GracefulExit came in the loop's cleanup, cutting
    the sessions' and the agent's stop short)."""
    import asyncio

    from aiohttp import web

    from kame.runtime.signals import stopped_early
    from kame.server.stopping import Stopping

    async def serve(stopping: Stopping) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)  # (as aiohttp's: the loop's wakeup fd set)
        signal.raise_signal(signal.SIGHUP)  # (recorded, and its byte on the wakeup fd)
        await asyncio.sleep(0)  # (the next round reads that byte after this task's step: install's handler gets it)
        stopping.install()
        await asyncio.sleep(30)

    hup, term = signal.signal(signal.SIGHUP, signal.SIG_DFL), signal.getsignal(signal.SIGTERM)
    runner = asyncio.Runner()
    try:
        with stopped_early(signal.SIGHUP):
            stopping = Stopping()
            with pytest.raises(web.GracefulExit):
                runner.run(serve(stopping))
            runner.close()  # (the loop's own dispatch of the same SIGHUP runs here)
            stopping.done()
        assert stopping.cause == "hang-up (SIGHUP), as for SIGTERM"
    finally:
        runner.close()
        signal.signal(signal.SIGHUP, hup)
        signal.signal(signal.SIGTERM, term)


def test_the_early_stop_is_installed_before_any_heavy_import():
    """(review) the early stop came only after `import asyncio` (kame.runtime.interrupt's), 0.1-0.3 s
    on a busy machine during which SIGTERM still killed `kame serve` (143): it is installed
    before kame.cli goes on to the command, with nothing heavier than kame.cli itself imported."""
    script = textwrap.dedent("""
        import signal, sys
        from kame import cli

        def at_command(argv):
            print(signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None),
                  sorted(m for m in ("asyncio", "aiohttp", "logging", "torch") if m in sys.modules))
            return 0

        cli._run = at_command
        sys.exit(cli.main(["serve", "--agent", "echo"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True []\n"


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_under_nohup_a_hang_up_as_it_starts_is_left_ignored():
    proc = subprocess.Popen([sys.executable, "-c", EARLY_SCRIPT, "imports"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_nohup)
    try:
        _wait_for(proc, "reached: imports")
        proc.send_signal(signal.SIGHUP)
        proc.stdin.write("go on\n")
        proc.stdin.flush()
        _wait_for(proc, "serving on http://")  # (it started: the hang-up was ignored)
        _hang_up_is_ignored(proc)
    finally:
        proc.kill()
        proc.wait()


# `kame serve` held in its stop: in the agent's stop (on the server's loop), stopping the back-end's
# children (after the loop), or once the stop is done (its last step, leave_if_loading), until the test
# writes a line
HELD_STOP_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from kame import cli
    from kame.backend import childproc
    from kame.server import app
    from kame.server.echo import EchoAgent

    def held(what):
        print("holding:", what, flush=True)
        sys.stdin.readline()
        return 0

    if sys.argv[1] == "agent":
        stop = EchoAgent.stop

        async def held_stop(self):
            await asyncio.to_thread(held, "the agent's stop")
            print("done: the agent's stop", flush=True)  # (not if the stop was cut short: cancelled)
            await stop(self)
        EchoAgent.stop = held_stop
    elif sys.argv[1] == "children":
        childproc.release_children = lambda **kw: (held("the children"), print("done: the children", flush=True))[0]
    elif sys.argv[1] == "exit":
        app.leave_if_loading = lambda health, status: (held("the exit"), print("done: the exit", flush=True))
    else:  # (after kame.cli's main has returned: its early stop's block has ended)
        import atexit
        atexit.register(lambda: (held("the exit hook"), print("done: the exit", flush=True)))
    sys.exit(cli.main(["serve", "--agent", "echo", "--port", "0"]))
""")


@pytest.mark.parametrize("phase", ["agent", "children"])
def test_a_second_sigterm_does_not_cut_the_stop_short(phase):
    """(QA) A second SIGTERM while the agent or the back-end's children are being stopped: was,
    in the agent's stop, aiohttp's handler ending the stop under way, and after the server's loop
    the default action, killing the process at once (143) and maybe leaving the children running."""
    proc = _serve(["-c", HELD_STOP_SCRIPT, phase], stdin=subprocess.PIPE)
    try:
        _wait_for(proc, "serving on http://")
        proc.send_signal(signal.SIGTERM)
        _wait_for(proc, "holding:")
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):  # (still stopping)
            proc.wait(timeout=2)
        proc.stdin.write("go on\n")
        proc.stdin.flush()
        _wait_for(proc, "done:")  # the stop went on to its end
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read()
        assert err.count("stopping: SIGTERM") == 1 and "stopped after " in err and "Traceback" not in err
    finally:
        proc.kill()
        proc.wait()


def _sigterm_in_held(proc: subprocess.Popen, held: str) -> int:
    """Once kame serve says ``held`` (a step of its exit that never ends by itself), a SIGTERM: its
    exit status."""
    _wait_for(proc, held)
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a SIGTERM once the stop was done left kame serve running")


@pytest.mark.parametrize("phase", ["exit", "hook"])
def test_once_the_stop_is_done_a_sigterm_ends_the_process(phase):
    """(review) after "stopped after", a step of the exit that hangs (kame serve's last step, an exit
    hook after kame.cli's main has returned) is ended by a SIGTERM, with the stop's status (was: the
    held handler was given back as asyncio's, which does nothing: SIGTERM was ignored, only SIGKILL
    ended it; then, in an exit hook, the default action: 143, and ignored by a container's PID 1)."""
    proc = _serve(["-c", HELD_STOP_SCRIPT, phase], stdin=subprocess.PIPE)
    try:
        _wait_for(proc, "serving on http://")
        proc.send_signal(signal.SIGTERM)
        assert _sigterm_in_held(proc, "holding: the exit") == 0  # (the stop's status: SIGTERM's)
        rest = iter(lambda: proc.lines.get(timeout=60), "")  # (_wait_for's reader: stdout's lines to its end)
        assert not [line for line in rest if "done: the exit" in line]  # (ended in the held step)
        err = proc.stderr.read()
        assert err.count("stopping: SIGTERM") == 1 and "stopped after " in err and "Traceback" not in err
    finally:
        proc.kill()
        proc.wait()


# an exit hook that holds the exit (after kame.cli's main has returned) until the test writes a line;
# `early`: kame serve stopped by a signal recorded in its build; `failed`: its agent cannot start
HELD_EXIT_SCRIPT = textwrap.dedent("""
    import atexit, sys
    from kame import cli
    from kame.errors import KameError
    from kame.server import app as A
    from kame.server.echo import EchoAgent

    atexit.register(lambda: (print("holding: the exit hook", flush=True), sys.stdin.readline()))
    if sys.argv[1] == "early":
        build = A._build
        A._build = lambda *a: (print("reached: build", flush=True), sys.stdin.readline(), build(*a))[-1]
    else:
        async def fail(self):
            raise KameError("the agent cannot start")
        EchoAgent.start = fail
    sys.exit(cli.main(["serve", "--agent", "echo", "--port", "0"]))
""")


@pytest.mark.parametrize("case, status", [("early", 0), ("failed", 1)])
def test_a_sigterm_in_a_held_exit_keeps_the_exit_status(case, status):
    """(final re-read) once a stop at a start-up checkpoint is done, a SIGTERM in an exit hook that
    hangs ends the process with the stop's status, 0 (was: killed, -15: only the server's own stop held
    the signals); after a failed start, 1 (was: 0, as if it had started and stopped)."""
    proc = _serve(["-c", HELD_EXIT_SCRIPT, case], stdin=subprocess.PIPE)
    try:
        if case == "early":
            _wait_for(proc, "reached: build")
            proc.send_signal(signal.SIGTERM)
            proc.stdin.write("go on\n")
            proc.stdin.flush()
        got = _sigterm_in_held(proc, "holding: the exit hook")
        assert got == status, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_the_help_lists_the_exit_statuses():
    from kame.server.app import add_arguments

    parser = argparse.ArgumentParser(prog="kame serve")
    add_arguments(parser)
    text = parser.format_help()
    assert "130  stopped by Ctrl-C (SIGINT)" in text and "0    stopped by SIGTERM" in text
