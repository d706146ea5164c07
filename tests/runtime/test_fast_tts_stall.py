"""A `kame run --fast` cascade whose TTS is slower than the --fast clock (piper: every reply) is
said as what it is: the clock, which runs ahead of wall time, outran the TTS, not "N of the
agent's replies failed ...; its back-end reported N error(s)" (was). The TTS here gives nothing
until its stream is closed (it is still at work as far as the run can tell): its stall timeout
(cascade.first_timeout) runs out in virtual time, deterministically. The same summary without
--fast keeps the back-end's warning."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from kame import registry
from kame.audio import write_wav
from kame.cli import main
from kame.runtime.runsummary import FAST_STALLED, print_summary

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


def test_a_tts_the_fast_clock_outran_is_not_blamed_on_the_back_end(tmp_path, capsys, fake_components, busy_tts):
    wav, out = tmp_path / "in.wav", tmp_path / "out.wav"
    pcm = np.concatenate([np.zeros(24000, np.float32), speech(0, 30).astype(np.float32), np.zeros(48000, np.float32)])
    write_wav(wav, pcm, 24000)
    assert main(["run", str(wav), "-o", str(out), "--mode", "cascade", "--fast", "--no-png", "--tail", "20",
                 "--set", "backend.stt=fake", "--set", "backend.llm=fake", "--set", "cascade.tts=test_busy"]) == 0
    said = capsys.readouterr().out
    doc = json.loads(out.with_suffix(".json").read_text())
    s = doc["summary"]
    assert s["replies"]["failed"] == 1 and s["stalled_replies"] == 1 and s["errors"] == 1  # (OUT.json: as it was)
    assert f"warning   1 of the agent's replies ended before all of it was spoken: {FAST_STALLED}" in said, said
    assert "back-end reported" not in said and "replies failed" not in said, said
    assert "words not spoken: the --fast clock outran the reply's LLM or TTS" in said, said
    # the same stall without --fast: the TTS's own (was and is: the back-end's warning)
    print_summary({**s, "pacing": "simulated-realtime"}, Path(out), True)
    paced = capsys.readouterr().out
    assert "warning   1 of the agent's replies failed before all of it was spoken; its back-end reported 1 " \
           "error(s)" in paced and FAST_STALLED not in paced, paced
