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
import time

SLOW_LOAD_S = 60  # the stand-in restart's model load: the exit must not wait for it

SCRIPT = textwrap.dedent(f"""
    import logging, os, signal, sys, threading, time
    from pathlib import Path
    from kame.backend import childproc
    from kame.backend.llm import embedded

    def child(conn, gguf, cancel, nice):  # the first child loads at once, its restart takes a minute
        marker = Path(gguf + ".started")
        if marker.exists():
            time.sleep({SLOW_LOAD_S})
        marker.touch()
        conn.send(("loaded", 0, None))
        while True:
            try:
                conn.recv()
            except EOFError:
                return

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        start_child = embedded.start_child
        embedded.start_child = lambda target, args, **kw: start_child(child, args, **kw)
        worker = embedded._ChildWorker(Path(sys.argv[1]))
        worker.start()  # (registers its close() with atexit)
        first = worker.proc.pid
        os.kill(first, signal.SIGKILL)  # (an operator's kill, the OOM killer)
        worker.proc.join(10)
        worker.submit(None, 1, ([{{"role": "user", "content": "Hi"}}], 10, 0.0, 1.0), threading.Event(),
                      lambda *a: None)  # the next request restarts it
        while not [p for p in childproc.CTX.active_children() if p.pid != first]:
            time.sleep(0.05)
        loading = [p for p in childproc.CTX.active_children() if p.pid != first][0]
        assert worker.loading
        print("loading pid", loading.pid, flush=True)
        sys.exit(0)  # (kame serve's and kame run's main return, after a signal too)
""")


def _gone(pid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # (a zombie init has yet to reap)
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.1)


def test_the_exit_terminates_a_restart_under_way_instead_of_waiting_for_it(tmp_path):
    script = tmp_path / "exit_while_loading.py"  # (a file: the spawned child imports its target from it)
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
        assert _gone(pid), "the loading child outlived its parent"
    finally:
        if not _gone(pid, 0):
            os.kill(pid, 9)
    assert f"stopping the embedded LLM child while it loads the model (pid {pid})" in err, err
    assert "Traceback" not in err
