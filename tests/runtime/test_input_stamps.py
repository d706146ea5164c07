"""User audio time (TandemSession.take_input): a frame is stamped when its audio arrived, not
when a slow agent got round to it. With an agent slower than real time the input piles up; the
times derived from it (VAD, first_response_latency) count from the audio's arrival, and stats
input_delay_s shows the growing wait. With a real-time agent the stamps are tick - 80 ms, as ever."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kame.backend.types import FRAME_S, OracleAppend, OracleReset, Transcript, Word
from kame.config import load_config
from kame.runtime.base import AgentAudio
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.runtime.metrics import MetricsLog

from .fakes import START, FakeFrameModel, Recorder, step, wait_for

F = 1920
SPEECH = range(6, 19)  # the user's 80 ms frames with speech (0.48-1.52 s of their audio)


def user_frame(k: int) -> np.ndarray:
    return np.full(F, 0.3 if k in SPEECH else 0.0, np.float32)


def make_agent(hook=None, voice_from=10**6):
    cfg = load_config(None, {"runtime.max_sessions": 1, "runtime.vad": "energy", "backend.stt": "none",
                             "backend.llm": "none", "runtime.max_input_backlog_s": 5.0,
                             "runtime.stats_interval_s": 0.5})
    clock, log = FakeClock(), MetricsLog()
    agent = TandemAgent(cfg, clock=clock, metrics=log, token_text=lambda t: "",
                        frame_models=lambda b: FakeFrameModel(b, hook=hook, voice_from=voice_from))
    agent.oracle_start_id = START
    return agent, clock


def record_stamps(s) -> list[tuple[float, float, bool]]:
    """(tick, audio time, carried user audio) of every frame the session is fed."""
    fed, take = [], s.take_input

    def take_input(tick):
        before = s.stats.input_frames
        rin = take(tick)
        fed.append((tick, rin.t, s.stats.input_frames > before))
        return rin

    s.take_input = take_input
    return fed


async def slow_run(chunk: int, frames: int = 40, steps: int = 48, step_s: float = 0.12, voice_from: int = 38,
                   at_step=None):
    """One session on an agent whose every step takes ``step_s`` of the FakeClock (> 80 ms: it
    falls behind); its client sends ``chunk`` frames of audio at a time, each chunk when its last
    sample was spoken (frame k is spoken during [0.08 k, 0.08 (k + 1)]). Deterministic: the
    slow step moves the clock and pushes what arrives meanwhile, at its exact arrival time.
    ``at_step``: (step, call(session, clock)) made during that step.
    Returns (session, Recorder, stamps, arrival time of each user frame)."""
    loop = asyncio.get_running_loop()
    box: dict = {"steps": 0}
    arrival: dict[int, float] = {}

    async def time_passes() -> None:  # (on the loop, while the ticker waits for the step)
        clock, s, end = box["clock"], box["s"], box["clock"].now() + step_s
        while box["next"] < frames and (box["next"] + chunk) * FRAME_S <= end + 1e-9:
            k = box["next"]
            at = (k + chunk) * FRAME_S
            clock.set(max(clock.now(), at))
            await s.push_audio(np.concatenate([user_frame(j) for j in range(k, k + chunk)]))
            for j in range(k, k + chunk):
                arrival[j] = clock.now()
            box["next"] = k + chunk
        clock.set(end)
        if at_step is not None and box["steps"] == at_step[0]:
            at_step[1](s, clock)

    def hook():  # (the worker thread)
        box["steps"] += 1
        if box["steps"] <= steps:
            asyncio.run_coroutine_threadsafe(time_passes(), loop).result(5)

    agent, clock = make_agent(hook=hook, voice_from=voice_from)
    box["clock"], box["next"] = clock, 0
    await agent.start()
    s = await agent.open_session()
    box["s"] = s
    stamps = record_stamps(s)
    rec = Recorder(s)
    await wait_for(lambda: box["steps"] > steps and agent.frames >= steps)
    await s.close()
    await rec.task
    await agent.stop()
    return s, rec, stamps, arrival


def metas(rec, kind: str) -> list[dict]:
    return rec.meta(kind)


@pytest.mark.parametrize("chunk", [1, 2])
async def test_a_slow_agent_measures_first_response_from_the_arrival_of_the_speech(chunk):
    s, rec, stamps, arrival = await slow_run(chunk)
    assert s.stats.missed_deadlines >= 40  # every step is late: the input piles up
    ends = [v for v in metas(rec, "vad") if v["event"] == "end"]
    assert len(ends) == 1
    speech_came = arrival[SPEECH[-1]]  # when the user's last speech sample arrived
    assert ends[0]["t"] == pytest.approx(speech_came, abs=FRAME_S + 1e-6)  # (was: ~0.7 s later)
    first = [m for m in metas(rec, "metric") if m["name"] == "first_response_latency"]
    assert len(first) == 1 and not first[0]["labels"]  # (the agent was silent while the user spoke)
    voiced = next(o.t for o in rec.items if isinstance(o, AgentAudio) and np.abs(o.pcm).max() > 0.01)
    true = voiced - speech_came  # first agent audio - arrival of the user's last speech (~1.3 s)
    assert first[0]["value"] == pytest.approx(true, abs=FRAME_S + 1e-6)  # (was: ~0.7 s less)
    heard = [t for _, t, audio in stamps if audio]
    assert all(b - a >= FRAME_S - 1e-6 for a, b in zip(heard, heard[1:]))  # frames 80 ms apart or more
    assert all(t <= tick - FRAME_S + 1e-9 for tick, t, _ in stamps)  # never later than before


async def test_a_growing_backlog_shows_in_the_input_delay_stats():
    s, rec, _, _ = await slow_run(1)
    delays = [m["input_delay_s"] for m in metas(rec, "stats")]  # (every 0.5 s)
    growing = delays[:delays.index(max(delays)) + 1]  # (then the client's audio was all fed: 0)
    assert len(growing) >= 6 and growing == sorted(growing)  # 0.04 s more each 120 ms step
    assert max(delays) > 1.0 and s.stats.input_delay_max_s >= max(delays) and delays[-1] == 0.0
    assert s.stats.max_lateness < 0.05  # (one frame's lateness: the schedule re-anchors after a miss)


async def test_oracle_lag_counts_to_the_tick_that_fed_the_token_not_to_the_audio_time():
    """The prediction's first token is fed at a tick; under a backlog that is not the frame's
    audio time + 80 ms."""
    def predict(s, clock):  # a final whose last word ended at 1.5 s, then a prediction on it
        s.on_transcript(Transcript((Word("hi", 1.0, 1.5),), True, clock.now()))
        s.on_oracle(OracleReset(1, clock.now()))
        s.on_oracle(OracleAppend(1, (7, 8), "ok", clock.now()))

    s, rec, stamps, _ = await slow_run(1, at_step=(36, predict))
    lag = [m for m in metas(rec, "metric") if m["name"] == "oracle_lag"]
    assert len(lag) == 1
    fed = [(tick, t) for tick, t, _ in stamps if tick == lag[0]["t"]]  # a tick of the session's frames
    assert len(fed) == 1 and fed[0][1] < fed[0][0] - FRAME_S - 0.5, (lag, stamps)  # (its audio ~1 s older)
    assert lag[0]["value"] == pytest.approx(lag[0]["t"] - 1.5)


async def test_real_time_stamps_are_tick_minus_80_ms_bit_for_bit():
    """A client in real time (whole frames, half frames, a short burst at the start) and an
    agent that keeps up: every frame's audio time is exactly its tick - 80 ms, as it always was."""
    agent, clock = make_agent()
    await agent.start()
    s = await agent.open_session()
    stamps = record_stamps(s)
    await s.push_audio(np.concatenate([user_frame(0), user_frame(1)]))  # a burst: 2 frames at once
    await step(agent, clock)
    for k in range(2, 30):
        if k % 3:
            await s.push_audio(user_frame(k))
        else:  # in two halves, the second a frame's time after the first
            await s.push_audio(user_frame(k)[:F // 2])
            await s.push_audio(user_frame(k)[F // 2:])
        await step(agent, clock)
    await s.close()
    await agent.stop()
    assert s.stats.missed_deadlines == 0 and s.stats.input_frames >= 28
    assert [t for _, t, _ in stamps] == [tick - FRAME_S for tick, _, _ in stamps]
    assert s.stats.input_delay_max_s == 0.0


async def test_audio_dropped_from_the_backlog_is_forgotten_in_the_arrival_times():
    """A client pushing faster than frames are taken: the backlog drops its oldest audio, and the
    per-chunk arrival times of the dropped chunks go with it (they grew without bound: 200,000
    pushes kept 200,002 entries while the audio stayed bounded)."""
    agent, clock = make_agent()
    await agent.start()
    s = await agent.open_session()
    try:
        for _ in range(400):  # 400 frames in no time against a 5 s (62.5-frame) backlog
            await s.push_audio(user_frame(0))
        assert s.stats.dropped_input_s > 20
        assert len(s._arrivals) <= 64  # (the chunks still buffered, and the one the next frame may need)
    finally:
        await s.close()
        await agent.stop()
