"""A shared embedded-LLM worker whose dead child is being reloaded, the reload a minute long: what
tests of a stop or an exit during that reload start from (tests/backend/test_llm_embedded_exit.py,
tests/server/test_serve_stop_llm.py). Their scripts run in a process of their own and import this
module (the repository's root on sys.path), so the spawned stand-in child can import ``child``."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

SLOW_LOAD_S = 60  # the stand-in restart's model load: a stop or an exit must not wait for it
ROOT = str(Path(__file__).resolve().parents[2])  # (what a script puts on sys.path to import this module)


def child(conn, gguf, cancel, nice):
    """The stand-in child: the first one loads at once, its restart takes SLOW_LOAD_S."""
    marker = Path(gguf + ".started")
    if marker.exists():
        time.sleep(SLOW_LOAD_S)
    marker.touch()
    conn.send(("loaded", 0, None))
    while True:
        try:
            conn.recv()
        except EOFError:
            return


def start_reloading(gguf: Path, shared: bool = False):
    """A _ChildWorker of stand-in children (``shared``: the process's shared one, as
    shared_worker() makes it), its first child killed and a request sent, so that a restart is
    under way; returns (the worker, the loading child's pid)."""
    from kame.backend import childproc
    from kame.backend.llm import embedded

    start_child = embedded.start_child
    embedded.start_child = lambda target, args, **kw: start_child(child, args, **kw)
    worker = embedded._ChildWorker(gguf)
    worker.start()  # (registers its close() with atexit)
    if shared:
        embedded._shared[str(gguf)] = worker
        childproc.shared_child(worker.close)
    first = worker.proc.pid
    os.kill(first, signal.SIGKILL)  # (an operator's kill, the OOM killer)
    worker.proc.join(10)
    worker.submit(None, 1, ([{"role": "user", "content": "Hi"}], 10, 0.0, 1.0), threading.Event(),
                  lambda *a: None)  # the next request restarts it
    while not [p for p in childproc.CTX.active_children() if p.pid != first]:
        time.sleep(0.05)
    return worker, [p for p in childproc.CTX.active_children() if p.pid != first][0].pid


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``within`` seconds."""
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
