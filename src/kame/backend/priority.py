"""CPU priority of the back-end's compute (STT decoding threads, the embedded LLM's child).

On a small machine the 80 ms front-end step shares the cores with whisper decodes and LLM
tokens; run those ``nice`` steps below it and the kernel gives the step the CPU first. On Linux
each thread has its own nice value and the threads (and processes) it starts inherit it, so
lowering the STT worker thread covers the decode threads it starts; a library that starts its
compute threads in a constructor (CTranslate2) is built in a lowered thread instead. Raising
priority again needs privileges, so this only ever lowers it; off Linux both are no-ops.

    lower_thread_priority(10)                  # the calling thread, and whatever it starts later
    model = run_in_lowered_thread(build, 10)   # build() in a thread 10 steps lower
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def lower_thread_priority(nice: int) -> int:
    """Add ``nice`` (0..19) to the calling thread's nice value (capped at 19); return the new
    value. A no-op (returning 0) for ``nice`` 0 and off Linux (elsewhere setpriority takes a
    process id, not a thread id)."""
    if nice <= 0 or sys.platform != "linux":
        return 0
    tid = threading.get_native_id()
    try:
        new = min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice)
        os.setpriority(os.PRIO_PROCESS, tid, new)
    except OSError as exc:  # e.g. a sandbox that forbids it: run at normal priority
        log.warning("could not lower the priority of thread %s: %s", threading.current_thread().name, exc)
        return 0
    return new


def run_in_lowered_thread(fn: Callable[[], T], nice: int) -> T:
    """Run ``fn`` in a short-lived thread ``nice`` steps below this one and return its result:
    for libraries that start their compute threads when an object is built (CTranslate2 does,
    in the constructor), so that those threads inherit the lower priority."""
    if nice <= 0 or sys.platform != "linux":
        return fn()
    out: dict = {}

    def run() -> None:
        lower_thread_priority(nice)
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = exc

    t = threading.Thread(target=run, name="kame-lowered-init")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
