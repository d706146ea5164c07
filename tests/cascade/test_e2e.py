"""End to end with real components: piper speech in -> whisper STT -> (scripted LLM) -> piper TTS
out, through file mode in simulated real time (about 8.5 s of audio)."""

import asyncio

import numpy as np
import pytest

from kame import registry
from kame.cascade.agent import build_cascade_agent
from kame.config import load_config
from kame.runtime.clock import FakeClock
from kame.runtime.filemode import agent_track, run_conversation
from kame.runtime.metrics import MetricsLog

pytest.importorskip("faster_whisper")
pytest.importorskip("piper")


class ScriptedLLM:
    name = "scripted"

    def __init__(self):
        self.prompts = []

    async def stream_chat(self, messages, **kw):
        self.prompts.append(messages[-1].content)
        for piece in ["Paris is ", "the capital, ", "of course. ", "It is lovely."]:
            await asyncio.sleep(0.02)
            yield piece


async def test_real_stt_and_piper_through_file_mode():
    from kame.backend.tts.piper import PiperTTS

    tts = PiperTTS()
    question = tts.synth("What is the capital of France?")
    lead, tail = np.zeros(12000, np.float32), np.zeros(24000 * 6, np.float32)
    pcm = np.concatenate([lead, question, tail])
    end_of_speech = (lead.shape[0] + question.shape[0]) / 24000
    cfg = load_config(None, ["mode=cascade", "runtime.vad=webrtc"])
    clock, log = FakeClock(start=0.08), MetricsLog()
    llm = ScriptedLLM()
    agent = build_cascade_agent(cfg, clock=clock, metrics=log, components={
        "stt": registry.create("stt", "whisper", clock=clock), "llm": llm, "tts": tts})
    rec = await run_conversation(cfg, pcm, agent=agent, clock=clock, metrics=log)
    finals = [t["text"].lower() for t in rec["transcripts"] if t["final"]]
    # whisper tiny.en sometimes hears "France" as "friends" (timing of the growing-buffer final
    # varies with load); "capital" is the word this test needs to see the real STT at work
    assert any("what" in f and "capital" in f for f in finals), finals
    assert llm.prompts and "capital" in llm.prompts[0].lower()
    agent_audio = agent_track(rec, int(np.ceil(pcm.shape[0] / 1920)) * 1920)
    voiced = np.flatnonzero(np.abs(agent_audio) > 0.05)
    assert voiced.size > 24000 * 0.3  # some speech (the reply may be cut by the end of the file)
    assert voiced[0] / 24000 > end_of_speech  # answers after the question, not over it
    names = {m["name"] for m in rec["metrics"]}
    assert {"llm_ttft", "tts_first_chunk", "first_response_latency"} <= names
    assert rec["errors"] == []
    # the STT runs on the session's clock: transcript times are inside the conversation
    assert all(0 <= t["t"] <= pcm.shape[0] / 24000 + 0.5 for t in rec["transcripts"])
