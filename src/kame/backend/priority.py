"""CPU priority of the back-end's compute (STT decoding threads, the embedded LLM's child).

On a small machine the 80 ms front-end step shares the cores with whisper decodes and LLM
tokens; run those ``nice`` steps below it and the kernel gives the step the CPU first. On Linux
each thread has its own nice value and the threads (and processes) it starts inherit it, so
lowering the STT worker thread covers whisper's decode thread and its compute threads too.
Raising priority again needs privileges, so this only ever lowers it.

    lower_thread_priority(10)      # the calling thread, and whatever it starts later
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


def lower_thread_priority(nice: int) -> int:
    """Add ``nice`` (0..19) to the calling thread's nice value (capped at 19); return the new
    value. A no-op (returning 0) for ``nice`` 0 or where per-thread priorities are unavailable."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return 0
    tid = threading.get_native_id()
    try:
        new = min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice)
        os.setpriority(os.PRIO_PROCESS, tid, new)
    except OSError as exc:  # e.g. a sandbox that forbids it: run at normal priority
        log.warning("could not lower the priority of thread %s: %s", threading.current_thread().name, exc)
        return 0
    return new
