"""A process that exits (kame run, kame serve, any program: a signal, the end of main) while the
embedded LLM's dispatcher reloads a dead child does not wait for that load: the loading child is
terminated by the exit's close(), which logs it, and nothing is left running. Was: the
dispatcher was a ThreadPoolExecutor thread, which concurrent.futures' exit hook joins before the
atexit close() could abort the load, so the exit waited out the whole model load (~50 s) in
silence, and a second Ctrl-C printed that hook's KeyboardInterrupt traceback."""

import os
import subprocess
import sys
import textwrap

from tests.backend.reloading_child import ROOT, SLOW_LOAD_S, gone

SCRIPT = textwrap.dedent(f"""
    import logging, sys
    from pathlib import Path
    sys.path.insert(0, {ROOT!r})
    from tests.backend.reloading_child import start_reloading

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        worker, loading = start_reloading(Path(sys.argv[1]))
        assert worker.loading
        print("loading pid", loading, flush=True)
        sys.exit(0)  # (kame serve's and kame run's main return, after a signal too)
""")


def test_the_exit_terminates_a_restart_under_way_instead_of_waiting_for_it(tmp_path):
    script = tmp_path / "exit_while_loading.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "stand-in.gguf")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=SLOW_LOAD_S / 2)  # (well before the load would have ended)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the exit waited for the embedded LLM's reload: {out} {err}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    pid = int(out.split("loading pid")[1].split()[0])
    try:
        assert gone(pid), "the loading child outlived its parent"
    finally:
        if not gone(pid, 0):
            os.kill(pid, 9)
    assert f"stopping the embedded LLM child while it loads the model (pid {pid})" in err, err
    assert "Traceback" not in err


CLOSE_TWICE = textwrap.dedent(f"""
    import logging, sys
    from pathlib import Path
    sys.path.insert(0, {ROOT!r})
    from tests.backend.reloading_child import start_reloading

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        worker, loading = start_reloading(Path(sys.argv[1]))
        print("loading pid", loading, flush=True)
        print("closed", worker.close(), worker.close(), flush=True)  # the agent's stop(), then release_children
        sys.exit(0)  # (and the exit's close)
""")


def test_closing_twice_while_a_restart_loads_stops_it_once(tmp_path):
    """close() while the child reloads, called again (kame serve's shutdown: the agent's stop(),
    then release_children, then the exit's hook): the second call is a no-op; the line that the
    loading child is terminated is logged once (was: twice, 1 ms apart)."""
    script = tmp_path / "close_twice.py"
    script.write_text(CLOSE_TWICE)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "stand-in.gguf")],
                          capture_output=True, text=True, timeout=SLOW_LOAD_S / 2)
    pid = int(proc.stdout.split("loading pid")[1].split()[0])
    try:
        assert gone(pid), "the loading child outlived its parent"
    finally:
        if not gone(pid, 0):
            os.kill(pid, 9)
    assert proc.returncode == 0, proc.stderr
    assert "closed True False" in proc.stdout, proc.stdout
    assert proc.stderr.count("stopping the embedded LLM child while it loads the model") == 1, proc.stderr
