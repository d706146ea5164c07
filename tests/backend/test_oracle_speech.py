"""End to end without a model LLM: Piper speech -> pocketsphinx STT partials/finals -> oracle."""

import asyncio

import numpy as np
import pytest

from kame.backend.oracle import OracleProducer
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import FRAME_SIZE, AudioFrame, OracleAppend

from .scripted_llm import ScriptedLLM


async def test_spoken_question_drives_predictions():
    piper = pytest.importorskip("kame.backend.tts.piper")
    pocketsphinx = pytest.importorskip("kame.backend.stt.pocketsphinx")
    pcm = piper.PiperTTS().synth("What is the capital of France and how many people live there?")
    pcm = np.concatenate([np.zeros(6000, np.float32), pcm, np.zeros(36000, np.float32)])
    pcm = pcm[: len(pcm) // FRAME_SIZE * FRAME_SIZE]
    stt = pocketsphinx.PocketsphinxSTT()

    async def frames():
        for i in range(len(pcm) // FRAME_SIZE):
            yield AudioFrame(pcm[i * FRAME_SIZE : (i + 1) * FRAME_SIZE], i * 0.08)

    llm = ScriptedLLM(auto=["Paris, ", "with about ", "two million people."])
    events = []
    producer = OracleProducer(llm, default_tokenizer(), on_event=events.append)
    finals = []
    async for tr in stt.stream(frames()):
        await producer.on_transcript(tr)
        if tr.final:
            finals.append(tr)
    for _ in range(200):  # let the newest prediction finish streaming
        if not producer.busy:
            break
        await asyncio.sleep(0.01)
    await producer.aclose()
    assert finals and len(finals[-1].words) >= 5
    assert producer.prediction_id >= 1
    # the newest prompt holds what the STT heard, as the last "user:" line
    last_line = llm.calls[-1].messages[1].content.splitlines()[-1]
    assert last_line.lower() == ("user: " + finals[-1].text).lower()
    ids = [i for e in events if isinstance(e, OracleAppend) and e.prediction_id == producer.prediction_id for i in e.token_ids]
    assert ids == default_tokenizer().encode("Paris, with about two million people.")
