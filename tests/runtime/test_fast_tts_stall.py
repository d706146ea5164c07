"""A `kame run --fast` cascade whose TTS is slower than the --fast clock (piper: every reply) is
said as what it is: the clock, which runs ahead of wall time, gave the TTS less wall time than its
stall timeout, too little to tell slow from hung, not "N of the agent's replies failed ...; its
back-end reported N error(s)" (was). The TTS here gives nothing until its stream is closed: its
stall timeout (cascade.first_timeout) runs out in virtual time, deterministically; the wall time
the stall timer ran is set by the test (ReplyParts.wall, the reply's wall clock, stood in for), not
measured. A stall that got half its limit or more in wall time (runsummary.OUTRUN_SHARE) is the
back-end's, --fast or not (was: the clock's under --fast; then: whenever it got less than all of
it, so 9.5 s of a 10 s limit too); so is every stall without --fast (was: counted in OUT.json's
outrun_replies too, the paced clock running up to a frame ahead of wall time). The summary counts
stalls from kame.cascade.reply's "reply_stall" metric (was: a regex over its error's words)."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import numpy as np
import pytest

from kame import registry
from kame.audio import write_wav
from kame.cli import main
from kame.runtime.runsummary import OUTRUN_SHARE, fast_stalled, print_summary, stalls, summarize

from .fakes import speech


class BusyTTS:
    """A TTS that is still at work on its first chunk when the reply gives up on it."""

    name = "busy"
    sample_rate = 24000

    async def synthesize(self, text):
        await asyncio.Event().wait()
        yield np.zeros(1920, np.float32)


@pytest.fixture
def busy_tts():
    registry.register("tts", "test_busy", lambda arg=None, **kw: BusyTTS())
    yield
    registry._ENTRIES.get("tts", {}).pop("test_busy", None)


class SteppedClock:
    """A wall clock each reading of which is ``step`` s after the one before: a stall timer, read
    as it starts and as it runs out, ran ``step`` wall seconds."""

    def __init__(self, step: float) -> None:
        self.step, self.t = step, 0.0

    def now(self) -> float:
        self.t += self.step
        return self.t

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the wall clock is only read")


def wall_clock(monkeypatch, step: float) -> None:
    """The cascade session's replies' wall clock (ReplyParts.wall): SteppedClock(step)."""
    from kame.cascade import reply, session

    monkeypatch.setattr(session, "ReplyParts", functools.partial(reply.ReplyParts, wall=SteppedClock(step)))


def run_fast(tmp_path) -> tuple[dict, str]:
    wav, out = tmp_path / "in.wav", tmp_path / "out.wav"
    pcm = np.concatenate([np.zeros(24000, np.float32), speech(0, 30).astype(np.float32), np.zeros(48000, np.float32)])
    write_wav(wav, pcm, 24000)
    assert main(["run", str(wav), "-o", str(out), "--mode", "cascade", "--fast", "--no-png", "--tail", "20",
                 "--set", "backend.stt=fake", "--set", "backend.llm=fake", "--set", "cascade.tts=test_busy"]) == 0
    return json.loads(out.with_suffix(".json").read_text())["summary"], out


def test_a_tts_the_fast_clock_outran_is_not_blamed_on_the_back_end(tmp_path, capsys, fake_components, busy_tts,
                                                                   monkeypatch):
    wall_clock(monkeypatch, 0.0)  # (the stall timer: no wall time for its 10 s on the --fast clock)
    s, out = run_fast(tmp_path)
    said = capsys.readouterr().out
    assert s["replies"]["failed"] == 1 and s["stalled_replies"] == s["outrun_replies"] == 1 and s["errors"] == 1
    assert s["outrun_wall_s"] == 0.0  # (OUT.json: replies.failed and errors as they were)
    assert f"warning   1 of the agent's replies ended before all of it was spoken: {fast_stalled(s)}" in said, said
    assert "after only 0.0 s of wall time, too little to tell a slow back-end from a hung one" in said, said
    assert "back-end reported" not in said and "replies failed" not in said, said
    assert "words not spoken: the --fast clock outran the reply's LLM or TTS" in said, said
    assert "errors 1 (1 the --fast clock's stalls)" in said, said
    # the same stall without --fast: the TTS's own (was and is: the back-end's warning)
    print_summary({**s, "pacing": "simulated-realtime"}, Path(out), True)
    paced = capsys.readouterr().out
    assert "warning   1 of the agent's replies failed before all of it was spoken; its back-end reported 1 " \
           "error(s)" in paced and "--fast clock" not in paced, paced


@pytest.mark.parametrize("wall", [9.5, 100.0])  # (its stall timer ran 10 s on the clock: 95 % of it, or all)
def test_a_tts_silent_for_most_of_its_limit_in_wall_time_is_the_back_ends(tmp_path, capsys, fake_components, busy_tts,
                                                                          monkeypatch, wall):
    wall_clock(monkeypatch, wall)
    s, _ = run_fast(tmp_path)
    said = capsys.readouterr().out
    assert s["replies"]["failed"] == s["stalled_replies"] == 1 and s["outrun_replies"] == 0, s
    assert "warning   1 of the agent's replies failed before all of it was spoken; its back-end reported 1 " \
           "error(s)" in said and "--fast clock" not in said, said  # (was: "no fault of the back-end's")


def _stalled_reply(wall: float, clock: float = 10.0) -> dict:
    """A run record whose reply to turn 1 failed: its TTS stalled, its timer ``clock`` s on the
    session's clock and ``wall`` s of wall time (the reply_stall metric kame.cascade.reply sends)."""
    return {"other": [{"type": "agent_turn", "turn": 1, "reply": "Hi.", "failed": True, "interrupted": False}],
            "metrics": [{"name": "reply_stall", "value": wall,
                         "labels": {"component": "tts", "clock_s": clock, "turn": 1}}]}


def test_a_stall_is_the_fast_clocks_only_under_fast_and_below_its_share_of_the_limit():
    """(was: counted as the clock's whenever its wall seconds were fewer than its clock seconds, paced
    or not: a paced run's clock runs up to a frame ahead of wall time, so a hung TTS's 1.91 s of a 2 s
    limit was OUT.json's outrun_replies 1)"""
    assert stalls(_stalled_reply(1.91, 2.0), fast=False) == (1, 0, None)
    assert stalls(_stalled_reply(0.0), fast=False) == (1, 0, None)
    assert stalls(_stalled_reply(9.9), fast=True) == (1, 0, None)
    assert stalls(_stalled_reply(10.0 * OUTRUN_SHARE), fast=True) == (1, 0, None)
    assert stalls(_stalled_reply(3.3), fast=True) == (1, 1, 3.3)


def test_a_paced_runs_summary_counts_no_outrun_replies(tmp_path):
    rec = {**_stalled_reply(1.91, 2.0), "components": {"mode": "cascade"}, "oracle": [], "agent_text": [],
           "transcripts": [], "frames": 40, "late_frames": 0, "wall_s": 3.2, "slowdown": 1.0, "load_s": 0.0,
           "errors": [{"t": 1.5, "message": "tts x failed during the reply to turn 1"}]}
    s = summarize(rec)
    assert (s["pacing"], s["stalled_replies"], s["outrun_replies"], s["outrun_wall_s"]) == \
        ("simulated-realtime", 1, 0, None)
    assert summarize(rec, fast=True)["outrun_replies"] == 0  # (1.91 s of 2 s: most of it, the TTS's)
