"""SIGTERM around kame run's files and in kame eval mtbench (review helper-231, finding 6): a SIGTERM
after the conversation, while kame run writes OUT.wav/OUT.json, is noted and the files are finished,
then exit 143 (was: the conversation's handler was gone, the process was killed mid-write: partial
files); kame.runtime.filerun.FileAgent (mtbench's player) takes SIGTERM as Ctrl-C and records which
ended the run (was: killed at once, a loading embedded LLM child left as an orphan; interrupted_by
null even after Ctrl-C); the hint after a SIGTERM is worded for it (was: "Ctrl-C again")."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kame.runtime import engine
from kame.runtime.filerun import FileAgent
from kame.runtime.interrupt import close_runner, first_ctrl_c, sigterm_held
from kame.runtime.engine import TandemAgent

from .fakes import FakeFrameModel, speech
from .test_filerun import F, cfg
from .test_run_stopped import PROGRAM, ROOT


@pytest.fixture
def guard():
    """A SIGTERM that reaches the previous handler fails the test (the process is not killed)."""
    def reached(signum, frame):
        raise AssertionError("SIGTERM reached the previous handler")

    before = signal.signal(signal.SIGTERM, reached)
    yield reached
    signal.signal(signal.SIGTERM, before)


def test_the_hint_after_a_sigterm_names_sigterm_not_ctrl_c_again(guard, capsys):
    async def run(sig):
        async with first_ctrl_c("testing", sigterm=True) as stop:
            os.kill(os.getpid(), sig)
            await asyncio.wait_for(stop.wait(), 5)

    asyncio.run(run(signal.SIGTERM))
    said = capsys.readouterr().err
    assert "terminated (SIGTERM): testing (SIGTERM again or Ctrl-C to quit at once)" in said, said
    assert "Ctrl-C again" not in said


def test_sigterm_held_notes_a_sigterm_and_a_second_quits_at_once(guard):
    with sigterm_held() as held:
        os.kill(os.getpid(), signal.SIGTERM)  # (noted: the block goes on)
        assert held.signal == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is guard
    with sigterm_held() as held:  # after a SIGTERM that ended the conversation: the next quits at once
        held.again = True
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)


# kame run (test_run_stopped's stand-in agent, no SIGTERM in the conversation) with a SIGTERM sent as
# OUT.wav is written
WRITING = PROGRAM.replace("if self.frames == 3:", "if False:").replace(
    "filemode.run_conversation = run_conversation", textwrap.dedent("""\
    filemode.run_conversation = run_conversation
    from kame.runtime import filerun
    real_write = filerun.write_wav

    def write_wav(*a, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_write(*a, **kw)

    filerun.write_wav = write_wav"""))


def test_a_sigterm_while_kame_run_writes_its_files_lets_them_be_finished_then_exits_143(tmp_path):
    from kame.audio import write_wav

    wav, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(wav, np.zeros(24000, np.float32), 24000)
    done = subprocess.run([sys.executable, "-c", WRITING, "run", str(wav), "-o", str(out), "--tail", "0",
                           "--no-png", "--set", "backend.stt=none", "--set", "backend.llm=none"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 143, (done.returncode, done.stderr)  # (was: -15, killed mid-write)
    assert "terminated (SIGTERM) after the conversation: the files were written whole first" in done.stderr
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert summary["interrupted"] is False and summary["frames"] == 13 and out.exists()


def test_file_agent_takes_sigterm_as_ctrl_c_and_records_which_ended_the_run(monkeypatch, guard):
    send = {"sig": None, "steps": 0}

    def hook():  # the 5th step of each conversation sends the signal
        send["steps"] += 1
        if send["steps"] == 5:
            os.kill(os.getpid(), send["sig"])

    def build(cfg, *, clock=None, metrics=None):
        return TandemAgent(cfg, clock=clock, metrics=metrics, backend=lambda s: None, token_text=lambda t: f"<{t}>",
                           frame_models=lambda b: FakeFrameModel(b, hook=hook))

    monkeypatch.setattr(engine, "build_agent", build)
    pcm = np.concatenate([speech(1, 30), np.zeros(60 * F, np.float32)])
    runner = asyncio.Runner()
    player = FileAgent(cfg(), runner)
    try:
        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            send.update(sig=sig, steps=0)
            rec = player.play(pcm, fast=True)  # (was: SIGTERM reached the guard; interrupted_by missing)
            assert rec["interrupted"] is True and rec["interrupted_by"] == name, (name, rec["interrupted"])
            assert rec["frames"] < 90
    finally:
        player.close()
        close_runner(runner)


def test_a_second_sigterm_after_the_conversations_block_quits_at_once(guard):
    """(was: held.again was set only after run_to_end returned: a SIGTERM while it ended the
    leftover tasks was only noted, though the hint said "SIGTERM again ... to quit at once")"""
    async def conversation():
        async with first_ctrl_c("testing", sigterm=True) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), 5)

    with sigterm_held() as held:
        asyncio.run(conversation())
        with pytest.raises(KeyboardInterrupt):  # (still inside run_to_end, before held.again = ...)
            os.kill(os.getpid(), signal.SIGTERM)
    assert held.signal is None


def test_a_sigterm_handler_set_outside_python_is_left_alone(monkeypatch):
    """(was: signal.getsignal's None for it was given back to signal.signal at the end: TypeError)"""
    getsignal = signal.getsignal
    monkeypatch.setattr(signal, "getsignal", lambda sig: None if sig == signal.SIGTERM else getsignal(sig))
    before = getsignal(signal.SIGTERM)

    async def conversation():
        async with first_ctrl_c("testing", sigterm=True):
            assert getsignal(signal.SIGTERM) is before  # (not taken over)

    with sigterm_held():
        assert getsignal(signal.SIGTERM) is before
        asyncio.run(conversation())
    assert getsignal(signal.SIGTERM) is before
