"""`kame bench latency` on fake parts, in a process of its own, for the Ctrl-C test in
test_latency_bench: cascade mode, tone "speech" (no TTS synthesis), tests.runtime.fakes' STT and
TTS, and an LLM that, like the embedded one, keeps a back-end child process (started with
kame.backend.childproc, closed by an exit hook) whose interpreter teardown takes seconds (the
embedded LLM's child tears down torch; childproc's children skip it). In FOLDER (env KAME_TEST_FOLDER) the child
writes ``child.pid`` when it starts and ``left`` once it left on its own; each LLM request
appends a line to ``requests``.

    KAME_TEST_FOLDER=/tmp/x python -c "from tests.cascade.latency_interrupt import run; run()"
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
import time
from pathlib import Path

import numpy as np

TEARDOWN_S = 3.0  # the child's exit after its pipe closed: under the 5 s stop_child waits for it


def _teardown(folder: str) -> None:
    """The child's interpreter teardown (the embedded LLM's tears down torch), slow."""
    time.sleep(TEARDOWN_S)
    Path(folder, "left").write_text("left on its own")


def _child(conn, folder: str) -> None:
    Path(folder, "child.pid").write_text(str(os.getpid()))
    atexit.register(_teardown, folder)
    conn.send(("loaded", None))
    try:
        while True:
            conn.recv()
    except EOFError:  # the parent closed the pipe: leave
        return


class SlowExitLLM:
    """Answers in two pieces; its child is started once per process (as the embedded LLM's)."""

    child = None

    def __init__(self, folder: str) -> None:
        from kame.backend.childproc import start_child, stop_child

        self.folder = folder
        if SlowExitLLM.child is None:
            SlowExitLLM.child = start_child(_child, (folder,), name="kame-test-llm", what="the test LLM's child")
            atexit.register(stop_child, *SlowExitLLM.child)

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        with open(Path(self.folder, "requests"), "a") as f:
            f.write("request\n")
        for piece in ("The answer ", "is forty two."):
            await asyncio.sleep(0.2)
            yield piece


def create_llm(arg=None, **kwargs) -> SlowExitLLM:
    return SlowExitLLM(os.environ["KAME_TEST_FOLDER"])


def _tone(engine, arg, text: str) -> np.ndarray:
    t = np.arange(int(1.5 * 24000)) / 24000
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def run() -> None:
    from kame import registry
    from kame.bench import latency
    from kame.cli import main

    folder = os.environ["KAME_TEST_FOLDER"]
    registry.schemes("stt")  # the built-in table first
    registry.register("llm", "slow_exit", "tests.cascade.latency_interrupt:create_llm")
    registry.register("stt", "fake", "tests.runtime.fakes:create_stt")
    registry.register("tts", "fake", "tests.runtime.fakes:create_tts")
    latency._voices = lambda: _tone
    sys.exit(main(["bench", "latency", "--turns", "1", "--modes", "cascade", "--window", "6",
                   "--out", str(Path(folder, "out")), "--set", "backend.llm=slow_exit",
                   "--set", "backend.stt=fake", "--set", "cascade.tts=fake"]))
