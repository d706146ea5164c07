"""The tandem runtime with fakes: batching equivalence, deadlines, back-end failure, limits."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from kame.config import load_config
from kame.errors import ConfigError
from kame.backend.tokenizer import default_tokenizer
from kame.runtime.backend import BackendBridge, producer_factory
from kame.runtime.base import SEE_LOG, AgentAudio, AgentText, CapacityError, ErrorEvent, client_form
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.runtime.metrics import MetricsLog

from .fakes import START, FakeFrameModel, FakeLLM, FakeSTT, Recorder, run_plan, speech, step, wait_for

F = 1920


def make_agent(max_sessions=4, batched=True, backend=None, hook=None, voice_from=2, **overrides):
    cfg = load_config(None, {"runtime.max_sessions": max_sessions, "runtime.batched": batched,
                             "runtime.vad": "energy", "runtime.max_input_backlog_s": 30.0,
                             "runtime.stats_interval_s": 0.0, **overrides})
    clock = FakeClock()
    log = MetricsLog()
    models = []

    def factory(b):
        models.append(FakeFrameModel(b, hook=hook, voice_from=voice_from))
        return models[-1]

    agent = TandemAgent(cfg, clock=clock, metrics=log, frame_models=factory,
                        backend=backend or (lambda s: None), token_text=lambda t: f" t{t}")
    agent.fake_models = models
    agent.oracle_start_id = START
    return agent, clock, log


def real_backend(stt, llm, retry_s=0.16):
    """BackendBridge with the real OracleProducer (kame.backend.oracle) on a fake STT/LLM."""
    tok = default_tokenizer()
    return lambda s: BackendBridge(s, stt, producer_factory(s.agent.config, s.clock, llm, tok), s.clock,
                                   retry_s=retry_s)


async def run_alone(audio, batched=True):
    agent, clock, _ = make_agent(batched=batched)
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    n = audio.shape[0] // F
    for k in range(n):
        await s.push_audio(audio[k * F:(k + 1) * F])
        await step(agent, clock)
    await s.close()
    await rec.task
    await agent.stop()
    return rec


@pytest.mark.parametrize("batched", [True, False])
async def test_batched_sessions_join_leave_match_running_alone(batched):
    # (seed, join frame, frames): B leaves at 20, D joins at 22 and reuses a freed row
    plan = {"A": (1, 0, 30), "B": (2, 5, 15), "C": (3, 12, 18), "D": (4, 22, 8)}
    audio = {k: speech(seed, n) for k, (seed, _, n) in plan.items()}
    agent, clock, _ = make_agent(max_sessions=3, batched=batched)
    await agent.start()
    recs = await run_plan(agent, clock, plan, audio)
    await agent.stop()
    if batched:
        assert len(agent.fake_models) == 1 and max(agent.fake_models[0].batch_sizes) == 3
    for name, r in recs.items():
        alone = await run_alone(audio[name], batched=True)
        assert len(r.audio()) == plan[name][2]
        np.testing.assert_array_equal(np.stack(r.audio()), np.stack(alone.audio()))
        assert r.text() == alone.text() and len(r.text()) > 0


async def test_missed_deadline_is_counted():
    clock_ref = {}
    slow = {"n": 0}
    loop_ref = {}

    def hook():  # a step that takes 0.2 s of clock time (advanced from the worker, thread-safely)
        if slow["n"] > 0:
            slow["n"] -= 1
            done = threading.Event()
            loop_ref["loop"].call_soon_threadsafe(lambda: (clock_ref["c"].advance(0.2), done.set()))
            done.wait(5)

    agent, clock, log = make_agent(hook=hook)
    clock_ref["c"], loop_ref["loop"] = clock, asyncio.get_running_loop()
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    await step(agent, clock, 3)
    assert log.values("missed_deadline") == []
    slow["n"] = 1
    await step(agent, clock)  # this frame finishes 0.2 s after its start: 0.12 s late
    # the next one starts at once (re-anchored), with no clock advance; waiting for it here keeps
    # step() below from racing it (step advances the clock before it waits)
    await wait_for(lambda: agent.frames >= 5)
    await step(agent, clock, 2)  # then on time
    assert log.values("missed_deadline") == pytest.approx([0.12])
    assert agent.missed == 1 and s.stats.missed_deadlines == 1
    assert len(log.values("step_time")) == agent.frames == 7  # 3 + slow + immediate re-anchored + 2
    await s.close()
    await rec.task
    stats = rec.meta("stats")[-1]
    assert stats["missed_deadlines"] == 1 and stats["final"] and stats["frames"] == 7
    assert stats["step_time_p50_s"] > 0 and stats["max_lateness"] == pytest.approx(0.12)
    assert [m["value"] for m in rec.meta("metric") if m["name"] == "missed_deadline"] == pytest.approx([0.12])
    await agent.stop()


async def test_backend_dies_mid_turn_audio_flows_and_oracle_resumes():
    stt, llm = FakeSTT(), FakeLLM()
    agent, clock, log = make_agent(backend=real_backend(stt, llm), **{"backend.retry_s": 0.1})
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    rng = np.random.default_rng(0)
    voiced = lambda: (rng.standard_normal(F) * 0.3).astype(np.float32)  # noqa: E731

    async def frames(n, loud=True):
        for _ in range(n):
            await s.push_audio(voiced() if loud else np.zeros(F, np.float32))
            await step(agent, clock)
            for _ in range(20):  # let the back-end tasks run (they are real coroutines)
                await asyncio.sleep(0)

    llm.hold = True  # replies stop after "answer ": the LLM is mid-reply when it dies
    await frames(4)
    await wait_for(lambda: llm.in_reply and rec.meta("oracle"))
    await frames(2)
    fed_before = s.stats.oracle_tokens_fed
    assert fed_before > 0 and llm.in_reply
    # The whole back-end dies mid-turn: the LLM in the middle of a reply, the STT stream too.
    llm.dead = stt.dead = True
    n_resets = len([o for o in rec.meta("oracle") if o["event"] == "reset"])
    await frames(6)  # the user keeps talking
    down = {m["component"] for m in rec.meta("backend") if m["status"] == "down"}
    assert down == {"llm", "stt"}
    assert any(isinstance(o, ErrorEvent) and "mid-reply" in o.message for o in rec.items)
    assert len(rec.audio()) == agent.frames == 12  # the front-end never stopped
    assert all(np.abs(a).max() > 0 for a in rec.audio()[-6:])  # ... and kept talking
    fed_dead = s.stats.oracle_tokens_fed
    llm.dead = stt.dead = llm.hold = False  # the back-end comes back
    await frames(12)
    assert {m["component"] for m in rec.meta("backend") if m["status"] == "up"} == {"llm", "stt"}
    resets_after = [o for o in rec.meta("oracle") if o["event"] == "reset"]
    assert len(resets_after) > n_resets  # new predictions from the revived back-end ...
    new = {o["prediction_id"] for o in resets_after[n_resets:]}
    assert "answer" in "".join(o.get("text", "") for o in rec.meta("oracle") if o["prediction_id"] in new)
    assert s.stats.oracle_tokens_fed > fed_dead  # ... fed to the front-end again
    lags = {stage: {m["labels"]["prediction_id"]: m["value"] for m in rec.meta("metric")
                    if m["name"] == "oracle_lag" and m["labels"].get("stage") == stage} for stage in ("emitted", "fed")}
    assert lags["fed"] and set(lags["fed"]) <= set(lags["emitted"])
    assert all(lags["fed"][p] >= lags["emitted"][p] for p in lags["fed"])  # fed at/after emission, same basis
    assert log.values("oracle_lag") == list(lags["fed"].values())  # the agent's sink gets the fed lag only
    assert len(rec.audio()) == agent.frames == 24
    # the agent's own words reached the producer (inner monologue -> back-end)
    turns = s.backend._producer.conversation.turns
    assert any(t.speaker == "agent" and " t" in t.text for t in turns)
    await s.close()
    await rec.task
    await agent.stop()


async def test_stt_dies_and_recovers():
    stt = FakeSTT()
    backend = lambda s: BackendBridge(s, stt, None, s.clock, retry_s=0.08)  # noqa: E731
    agent, clock, _ = make_agent(backend=backend)
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    loud = (np.ones(F) * 0.3).astype(np.float32)
    for k in range(12):
        stt.dead = 3 <= k < 6
        await s.push_audio(loud)
        await step(agent, clock)
        for _ in range(20):
            await asyncio.sleep(0)
    assert [m["status"] for m in rec.meta("backend") if m["component"] == "stt"] == ["down", "up"]
    assert stt.streams >= 2 and len(rec.audio()) == 12
    await s.close()
    await rec.task
    await agent.stop()


async def test_capacity_bad_audio_and_idle_rows():
    agent, clock, _ = make_agent(max_sessions=2)
    await agent.start()
    a, b = await agent.open_session(), await agent.open_session()
    with pytest.raises(CapacityError):
        await agent.open_session()
    rec = Recorder(a)
    await a.push_audio(np.full(F, np.nan, np.float32))
    await a.push_audio(np.zeros(F, np.int16))
    await a.push_audio(np.zeros((2, F), np.float32))
    await a.push_audio(np.zeros(F, np.float32))
    await step(agent, clock, 2)
    errors = [o for o in rec.items if isinstance(o, ErrorEvent)]
    assert len(errors) == 3 and "NaN" in errors[0].message and "int16" in errors[1].message
    assert len(rec.audio()) == 2 and a.stats.input_frames == 1 and a.stats.bad_audio == 3
    await b.close()
    c = await agent.open_session()  # the freed row is reusable at once
    await step(agent, clock)
    assert agent.fake_models[0].batch_sizes[-1] == 2
    for x in (a, c):
        await x.close()
    await rec.task
    await agent.stop()


async def test_input_backlog_is_bounded_and_counted(caplog):
    agent, clock, _ = make_agent(**{"runtime.max_input_backlog_s": 0.16})
    await agent.start()
    s = await agent.open_session()
    await s.push_audio(np.ones(10 * F, np.float32) * 0.1)  # 0.8 s at once
    assert s.stats.dropped_input_s == pytest.approx(0.8 - 0.16)
    await s.push_audio(np.ones(10 * F, np.float32) * 0.1)
    warned = [r.getMessage() for r in caplog.records if "faster than real time" in r.getMessage()]
    assert len(warned) == 1 and "keeping the newest 0.16 s" in warned[0]  # once per session
    await step(agent, clock, 3)
    assert s.stats.input_frames == 2
    await s.close()
    await agent.stop()


async def test_1000_open_close_cycles_leave_nothing_behind():
    stt, llm = FakeSTT(), FakeLLM()
    agent, clock, _ = make_agent(max_sessions=2, backend=real_backend(stt, llm))
    await agent.start()
    keep = await agent.open_session()  # one long-lived session keeps the ticker stepping
    await step(agent, clock)
    base_tasks = len(asyncio.all_tasks())
    for i in range(1000):
        s = await agent.open_session()
        await s.push_audio(np.zeros(F // 2, np.float32))
        if i % 50 == 0:
            await step(agent, clock)
        await s.close()
    await step(agent, clock)
    await wait_for(lambda: len(asyncio.all_tasks()) <= base_tasks, timeout=5)  # (cancellations settle)
    assert len(asyncio.all_tasks()) == base_tasks
    assert list(agent.sessions.values()) == [keep]
    assert sorted(agent._free) == [1 - keep.row] and agent._released == []
    await keep.close()
    await agent.stop()
    assert agent.worker is None


async def test_a_failing_step_is_reported_and_the_session_goes_on():
    fail = {"n": 0}

    def hook():
        if fail["n"]:
            fail["n"] -= 1
            raise RuntimeError("boom")

    agent, clock, _ = make_agent(hook=hook)
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    await step(agent, clock)
    fail["n"] = 1
    clock.advance(0.08)
    await wait_for(lambda: any(isinstance(o, ErrorEvent) for o in rec.items))
    await step(agent, clock, 2)
    errors = [o.message for o in rec.items if isinstance(o, ErrorEvent)]
    assert errors == ["front-end step failed: boom"] and len(rec.audio()) == 3
    sent = [client_form(o).message for o in rec.items if isinstance(o, ErrorEvent)]  # (what kame serve sends)
    assert sent == [f"front-end step failed; {SEE_LOG}"]
    await s.close()
    await rec.task
    await agent.stop()


@pytest.mark.parametrize("voice_from, expected, overlap", [(11, 0.40, False), (2, 0.0, True)])
async def test_first_response_latency(voice_from, expected, overlap):
    # user speaks in frames 0..5 (audio [-0.08, 0.40) on the clock), then silence; the agent
    # becomes audible at its frame `voice_from` (frame k finishes at k * 0.08)
    agent, clock, log = make_agent(voice_from=voice_from)
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    loud = (np.sin(np.arange(F) / 3.0) * 0.3).astype(np.float32)
    for k in range(20):
        await s.push_audio(loud if k < 6 else np.zeros(F, np.float32))
        await step(agent, clock)
    vad = rec.meta("vad")
    assert [v["event"] for v in vad] == ["start", "end"] and vad[1]["t"] == pytest.approx(0.40)
    assert log.values("first_response_latency") == pytest.approx([expected])
    m = [m for m in rec.meta("metric") if m["name"] == "first_response_latency"]
    assert len(m) == 1 and m[0]["labels"].get("overlap", False) is overlap
    await s.close()
    await rec.task
    await agent.stop()


async def test_hybrid_routing_replaces_front_end_audio_for_structured_turns(fake_components):
    from kame.runtime.backend import load_backend

    # barge-in on (the default 0.24 s): the reply often starts before the VAD has reported the end
    # of the question (its end detection lags); the question's silent tail must not cut it (before
    # the barge-in rule counted only voiced chunks, 2 of its 3 frames played in about 1 run in 5)
    agent, clock, log = make_agent(**{"backend.stt": "fake_question", "backend.llm": "fake", "cascade.tts": "fake",
                                      "cascade.hybrid_routing": True})
    agent._backend, info = load_backend(agent.config, clock, default_tokenizer(), log)
    assert info["hybrid_routing"] and info["tts"] == "fake"
    agent.token_text = lambda tok: "§" if tok >= 0 else ""  # the front-end's words, told apart
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    def routed_samples():
        return sum(int(np.isclose(a, 0.5).sum()) for a in rec.audio())

    for k in range(200):  # (the router's LLM/TTS tasks may lag on a loaded machine: bounded wait)
        await s.push_audio((np.ones(F) * 0.3).astype(np.float32) if k < 2 else np.zeros(F, np.float32))
        await step(agent, clock)
        for _ in range(20):
            await asyncio.sleep(0)
        if k >= 30:
            if routed_samples() >= 3 * F:
                break
            await asyncio.sleep(0.02)  # wall time for the router's worker threads (bounded: <= 3.4 s)
    routes = rec.meta("route")
    assert routes and routes[0]["route"] == "structured"
    audio = np.concatenate(rec.audio())
    assert np.isclose(audio, 0.5).sum() == 3 * F  # the routed reply's whole TTS audio was played ...
    routed = [a for a in rec.audio() if np.isclose(a, 0.5).any()]
    assert all(set(np.unique(a)) <= {0.0, 0.5} for a in routed)  # ... instead of the front-end's frames
    # ... and the muted front-end's words are not sent among the reply's (they ran together)
    routed_t = [x.t for x in rec.items if isinstance(x, AgentAudio) and np.isclose(x.pcm, 0.5).any()]
    texts = [x for x in rec.items if isinstance(x, AgentText)]
    assert not any("§" in x.text for x in texts if routed_t[0] <= x.t <= routed_t[-1]), [(x.t, x.text) for x in texts]
    assert any("§" in x.text for x in texts) and "answer" in "".join(x.text for x in texts)  # (both speak)
    assert any("answer" in (m.get("text") or "") for m in rec.meta("agent_turn"))
    assert not rec.meta("barge_in")
    await s.close()
    await rec.task
    await agent.stop()


def test_worker_reports_each_rows_vad_events_and_last_voice():
    """The step worker runs one VAD per row and hands the router what barge-in needs: the
    events and the end of the row's latest voiced chunk (which stops during the end wait)."""
    from kame.runtime.worker import EnergyVAD, RowInput, StepJob, StepWorker

    w = StepWorker([FakeFrameModel(2)], vad_factory=lambda: EnergyVAD(min_silence=0.5))
    loud, quiet = np.full(F, 0.3, np.float32), np.zeros(F, np.float32)
    try:
        outs = [w.run(StepJob([RowInput(0, loud if k < 3 else quiet, k * 0.08, reset=k == 0),
                               RowInput(1, quiet, k * 0.08, reset=k == 0)])).rows for k in range(6)]
    finally:
        w.shutdown()
    assert [ev.kind for o in outs for ev in o[0].vad] == ["start"]  # the 0.5 s end wait is not over
    assert [o[0].last_voice for o in outs] == pytest.approx([0.08, 0.16, 0.24, 0.24, 0.24, 0.24])
    assert all(o[1].last_voice is None and not o[1].vad for o in outs)


def test_load_backend_gives_the_backend_its_cpu_priority(fake_components):
    """backend.nice reaches the STT and an LLM factory that takes it; other LLMs never see it."""
    from kame.runtime.backend import load_backend

    from . import fakes

    for llm, llm_kwargs in (("fake_nice", {"nice": 7}), ("fake", {})):
        fakes.CREATED.clear()
        cfg = load_config(None, {"backend.stt": "fake", "backend.llm": llm, "backend.nice": 7})
        load_backend(cfg, FakeClock(), default_tokenizer(), MetricsLog())
        (_, stt_kwargs), (_, got) = fakes.CREATED
        assert stt_kwargs["nice"] == 7 and got == llm_kwargs
    with pytest.raises(ConfigError, match="backend.nice"):
        load_config(None, {"backend.nice": 20})  # nice values stop at 19


def test_an_llm_without_an_stt_is_not_loaded(fake_components, caplog):
    """A tandem with backend.stt=none would never ask its LLM (it answers what the STT heard): it
    is not loaded, and the log says so (was: loaded, for nothing)."""
    from kame.runtime.backend import load_backend

    from . import fakes

    fakes.CREATED.clear()
    cfg = load_config(None, {"backend.stt": "none", "backend.llm": "fake"})
    factory, info = load_backend(cfg, FakeClock(), default_tokenizer(), MetricsLog())
    assert fakes.CREATED == [] and info == {"stt": "none", "llm": "none"} and factory(None) is None
    assert "backend.stt is 'none': nothing would reach backend.llm 'fake', which is not loaded" in caplog.text


async def test_stop_closes_the_shared_stt_and_llm(fake_components):
    """The STT and LLM every session shares (an HTTP client session for openai:) are closed when
    the agent stops, and one that fails to close does not stop the others."""
    from kame.runtime.backend import load_backend

    from . import fakes

    fakes.CREATED.clear()
    cfg = load_config(None, {"backend.stt": "fake", "backend.llm": "fake"})
    factory, _ = load_backend(cfg, FakeClock(), default_tokenizer(), MetricsLog())
    stt, llm = (obj for obj, _ in fakes.CREATED)
    assert factory.shared == (stt, llm)
    closed = []

    async def broken():
        raise ConnectionError("the server is gone")

    async def ok():
        closed.append("llm")

    stt.aclose, llm.aclose = broken, ok
    agent, _, _ = make_agent(backend=factory)
    await agent.start()
    await agent.stop()
    assert closed == ["llm"]


async def test_outputs_of_an_ended_session_end_again_instead_of_hanging():
    """A second outputs() after the session ended returns (it waited forever for a second end marker)."""
    agent, clock, _ = make_agent()
    await agent.start()
    s = await agent.open_session()
    await step(agent, clock)
    await s.close()
    first = [o async for o in s.outputs()]
    assert first  # the frames and the final stats
    again = await asyncio.wait_for(_collect(s), 2.0)
    assert again == []
    await agent.stop()


async def _collect(s):
    return [o async for o in s.outputs()]


async def test_an_open_sessions_id_is_refused_and_free_again_once_it_closed(monkeypatch):
    """As the cascade's: was accepted, two live sessions with one id; and an id the agent makes
    skips one a caller took (was: open_session("s2") then open_session() gave two "s2")."""
    import itertools

    from kame.runtime import engine
    from kame.runtime.base import SessionIdError

    agent, clock, _ = make_agent()
    await agent.start()
    s = await agent.open_session("alice")
    with pytest.raises(SessionIdError, match="'alice' is in use"):
        await agent.open_session("alice")
    assert len(agent.sessions) == 1
    await s.close()
    again = await agent.open_session("alice")
    assert again.id == "alice"
    monkeypatch.setattr(engine, "_session_ids", itertools.count(1000))
    taken = await agent.open_session("s1000")
    made = await agent.open_session()
    assert (taken.id, made.id) == ("s1000", "s1001")
    await agent.stop()


async def test_the_stt_stall_time_is_a_config_key(fake_components):
    """backend.stt_stall_s reaches both agents' STT supervisors (there was no key: an STT that
    loads a model inside stream() for more than 5 s was restarted)."""
    from kame.cascade.agent import build_cascade_agent
    from kame.runtime.backend import load_backend

    from ..cascade.fakes import FakeTTS

    with pytest.raises(ConfigError, match="backend.stt_stall_s"):
        load_config(None, {"backend.stt_stall_s": 0.1})
    cfg = load_config(None, {"backend.stt": "fake", "backend.llm": "fake", "backend.stt_stall_s": 30.0})
    make, _ = load_backend(cfg, FakeClock(), default_tokenizer(), MetricsLog())
    agent, clock, _ = make_agent(backend=make)
    await agent.start()
    s = await agent.open_session()
    assert s.backend._stt.stall_s == 30.0
    await agent.stop()
    cascade = build_cascade_agent(load_config(None, {"mode": "cascade", "backend.stt": "fake", "backend.llm": "fake",
                                                     "backend.stt_stall_s": 30.0, "runtime.vad": "energy"}),
                                  clock=FakeClock(), components={"tts": FakeTTS(FakeClock())})
    await cascade.start()
    c = await cascade.open_session()
    assert c._stt.stall_s == 30.0
    await cascade.stop()


async def test_a_lasting_step_failure_is_logged_once_then_counted(caplog):
    """A front-end that fails every frame logged a traceback every 80 ms (~45 000 an hour): now the
    first failure in full, a count every StepFailures.REPORT_S of clock time, and the recovery."""
    import logging

    from kame.runtime.engine import StepFailures

    caplog.set_level(logging.WARNING, logger="kame.runtime.engine")
    broken = [True]

    def hook():
        if broken[0]:
            raise RuntimeError("CUDA out of memory")

    agent, clock, _ = make_agent(hook=hook)
    await agent.start()
    s = await agent.open_session()
    rec = Recorder(s)
    n = int(2.5 * StepFailures.REPORT_S / 0.08)  # 2.5 report periods of failing frames
    await step(agent, clock, n, failed=lambda: agent.failed_steps)
    broken[0] = False
    await step(agent, clock, 3, failed=lambda: agent.failed_steps)
    lines = [r for r in caplog.records if r.name == "kame.runtime.engine"]
    assert agent.failed_steps == n and len([e for e in rec.items if isinstance(e, ErrorEvent)]) == n  # (each frame still told)
    assert [r.getMessage().split(":")[0] for r in lines] == ["frame step failed"] + ["frame step still failing"] * 2 \
        + [f"frame steps work again after {n} failed in a row"]
    assert lines[0].exc_info is not None and "CUDA out of memory" in lines[1].getMessage()
    await s.close()
    await rec.task
    await agent.stop()
