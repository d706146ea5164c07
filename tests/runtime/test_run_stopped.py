"""`kame run` cut short (tests/k27 finding 6): after Ctrl-C the summary gives no advice for what
the interruption cut (was: "the cascade heard the user but did not answer in out.wav; give a
longer --max-tail"), and SIGTERM ends the run as Ctrl-C does, the files written (was: killed at
once, exit 143, nothing written, nothing said), exit status 143 (cut short, as Ctrl-C's 130)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from kame.runtime.interrupt import first_ctrl_c
from kame.runtime.runreport import print_warnings

from .test_answer_missing import _summary

ROOT = Path(__file__).resolve().parents[2]


def _warnings(capsys, **kw) -> str:
    print_warnings(_summary(**{"mode": "cascade", "frontend": None, "replies": {}, **kw}), Path("out.wav"))
    return capsys.readouterr().out


def test_an_interrupted_cascade_run_is_not_told_to_give_a_longer_max_tail(capsys):
    said = _warnings(capsys, unanswered=True, interrupted=True)
    assert "had not answered when the run was interrupted" in said and "--max-tail" not in said
    said = _warnings(capsys, reply_cut_off=True, interrupted=True)
    assert "still answering when the run was interrupted" in said and "--max-tail" not in said
    # not interrupted: the advice as before
    assert "give a longer --max-tail" in _warnings(capsys, unanswered=True)
    assert "give a longer --max-tail" in _warnings(capsys, reply_cut_off=True)
    # an LLM that answered with no text is still named, interrupted or not
    said = _warnings(capsys, unanswered=True, interrupted=True, replies={"empty": 1})
    assert "answered with no text" in said and "--max-tail" not in said


def test_first_ctrl_c_with_sigterm_sets_the_event_for_a_sigterm_and_restores_the_handler():
    def guard(signum, frame):  # (were no handler installed, the test process would not be killed)
        raise AssertionError("SIGTERM reached the previous handler")

    before = signal.signal(signal.SIGTERM, guard)
    try:
        async def run():
            async with first_ctrl_c("testing", sigterm=True) as stop:
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.wait_for(stop.wait(), 5)
                return stop.signal

        assert asyncio.run(run()) == "SIGTERM"
        assert signal.getsignal(signal.SIGTERM) is guard
    finally:
        signal.signal(signal.SIGTERM, before)


# kame run (its main, unchanged) in a process of its own, on an agent that needs no model: a SIGTERM
# to that process at the third frame played
PROGRAM = textwrap.dedent("""
    import asyncio, os, signal, sys
    import numpy as np
    from kame.cli import main
    from kame.runtime import filemode
    from kame.runtime.base import AgentAudio

    class Session:
        def __init__(self, clock):
            self.clock, self.queue, self.frames = clock, asyncio.Queue(), 0

        async def push_audio(self, pcm):
            self.frames += 1
            if self.frames == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            self.queue.put_nowait(AgentAudio(np.zeros(1920, np.float32), self.clock.now()))

        async def outputs(self):
            while (item := await self.queue.get()) is not None:
                yield item

        async def close(self):
            self.queue.put_nowait(None)

    class Agent:
        components = {"mode": "tandem", "frontend": "none-needed", "stt": "none", "llm": "none"}

        def __init__(self, clock):
            self.clock = clock

        async def start(self):
            pass

        async def stop(self):
            pass

        async def open_session(self, session_id=None):
            return Session(self.clock)

    real = filemode.run_conversation

    async def run_conversation(cfg, pcm, **kw):
        clock = filemode.FakeClock(start=filemode.FRAME_S)
        return await real(cfg, pcm, agent=Agent(clock), clock=clock, **kw)

    filemode.run_conversation = run_conversation
    sys.exit(main(sys.argv[1:]))
""")


def test_sigterm_ends_kame_run_as_ctrl_c_does_the_files_written(tmp_path):
    import numpy as np

    from kame.audio import write_wav

    wav, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(wav, np.zeros(24000 * 4, np.float32), 24000)
    done = subprocess.run([sys.executable, "-c", PROGRAM, "run", str(wav), "-o", str(out), "--tail", "0",
                           "--no-png", "--set", "backend.stt=none", "--set", "backend.llm=none"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    # (was: -15, killed at once: no files, nothing said)
    assert done.returncode == 143, (done.returncode, done.stderr)
    assert "terminated (SIGTERM): ending the conversation here" in done.stderr
    assert "terminated (SIGTERM) after" in done.stderr and "the files hold what was played" in done.stderr
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert summary["interrupted"] is True and summary["interrupted_by"] == "SIGTERM"
    assert 3 <= summary["frames"] < 50 and out.exists()
