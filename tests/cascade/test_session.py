"""The cascade session with fake STT/LLM/TTS on a FakeClock: streaming TTS start, barge-in,
one reply per turn, a dead LLM, the agent's capacity and config."""

import numpy as np
import pytest

from kame.backend.prompt import PromptConfig
from kame.backend.types import ChatMessage
from kame.cascade.agent import build_cascade_agent
from kame.cascade.config import CascadeConfig
from kame.config import load_config
from kame.errors import ConfigError
from kame.runtime.base import SEE_LOG, AgentText, CapacityError, ErrorEvent, client_form
from kame.runtime.clock import FakeClock
from kame.runtime.metrics import MetricsLog

from .fakes import Driver, FakeLLM, FakeSTT, FakeTTS, FakeVAD, speech_frame

REPLY = ["Sure, the capital of France ", "is Paris. ", "It has been the capital ", "for a very long time. ",
         "Anything else?"]


_live: list | None = None  # the agents _agent started in the running test (stop_agents)


@pytest.fixture(autouse=True)
async def stop_agents():
    """Stops every agent the test started with _agent, also when the test failed: a running
    agent's VAD thread and tasks would reach the tests after it (test_failures counts them)."""
    global _live
    _live = []
    try:
        yield
    finally:
        agents, _live = _live, None
        for agent in agents:
            await agent.stop()  # (stopping one the test stopped itself is harmless)


async def _agent(clock, llm, tts, stt=None, prompt_fn=None, vad=FakeVAD, **overrides):
    cfg = load_config(None, {"mode": "cascade", **overrides})
    log = MetricsLog()
    given = {"stt": stt or FakeSTT(), "llm": llm, "tts": tts, "vad_factory": vad}
    agent = build_cascade_agent(cfg, clock=clock, metrics=log, components={
        **given, **({"prompt_fn": prompt_fn} if prompt_fn else {})})
    if _live is not None:  # (in a module that uses stop_agents)
        _live.append(agent)
    await agent.start()
    return agent, log


async def test_first_audio_leaves_before_llm_stream_ends():
    clock = FakeClock()
    llm, tts = FakeLLM(clock, REPLY, delay=0.3), FakeTTS(clock)
    agent, log = await _agent(clock, llm, tts)
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(speech_frame(), frames=10)
    await d.step(frames=2)
    s.stt.say("what is the capital of france", clock.now())
    await d.step(frames=90)
    assert len(llm.calls) == 1 and llm.finished_at
    voiced = d.voiced()
    assert voiced, "no agent audio"
    # speech started on the first clause, long before the LLM finished streaming
    assert tts.texts[0] == "Sure, the capital of France is Paris."
    assert voiced[0].t < llm.finished_at[0]
    assert tts.texts == ["Sure, the capital of France is Paris.", "It has been the capital for a very long time.",
                         "Anything else?"]
    # text and metrics
    assert "".join(o.text for o in d.out if isinstance(o, AgentText)) == "".join(REPLY)
    for name in ("llm_ttft", "tts_first_chunk", "first_response_latency", "content_latency"):
        assert len(log.values(name)) == 1, name
    assert log.values("first_response_latency")[0] > 0
    names = {m["name"] for m in d.metas("metric")}
    assert {"llm_ttft", "first_response_latency"} <= names
    # audio paced: one AgentAudio per 80 ms tick, strictly increasing times
    ts = [a.t for a in d.audio()]
    assert np.allclose(np.diff(ts), 0.08)
    agent_tr = d.metas("agent_turn")
    assert agent_tr and agent_tr[-1]["text"] == "".join(REPLY).strip() and not agent_tr[-1]["interrupted"]
    await d.close()
    await agent.stop()


async def _one_turn(pieces, delay, question, frames=40, prompt_fn=None):
    """A session whose LLM streams ``pieces``; the user says ``question``; ``frames`` frames later."""
    clock = FakeClock()
    llm, tts = FakeLLM(clock, pieces, delay=delay), FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts, prompt_fn=prompt_fn)
    s = await agent.open_session()
    d = Driver(clock, s)
    s.stt.say(question, clock.now())
    await d.step(frames=frames)
    return agent, s, d, llm, tts


async def test_first_segment_can_be_a_clause():
    agent, s, d, llm, tts = await _one_turn(["Well, let me think about that, ", "because it is tricky. ", "Yes."],
                                            0.5, "is it tricky")
    assert tts.texts == ["Well, let me think about that,", "because it is tricky.", "Yes."]
    assert tts.started_at[0] < llm.finished_at[0]
    await d.close()


async def test_barge_in_cancels_llm_and_tts_and_stops_audio():
    clock = FakeClock()
    long_reply = [f"This is sentence number {i} of a long answer. " for i in range(20)]
    llm, tts = FakeLLM(clock, long_reply, delay=0.4), FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts, **{"cascade.barge_in_min_speech": 0.24})
    s = await agent.open_session()
    d = Driver(clock, s)
    s.stt.say("tell me a long story", clock.now())
    await d.step(frames=25)
    assert d.voiced(), "the agent should be speaking"
    n_tts = len(tts.texts)
    await d.step(speech_frame(), frames=5)  # the user talks over the agent
    barge = d.metas("barge_in")
    assert len(barge) == 1
    assert llm.cancelled == 1 and not llm.finished_at
    t_barge = barge[0]["t"]
    await d.step(frames=30)
    # no agent audio after the barge-in frame; no new TTS segment
    assert not [a for a in d.voiced() if a.t > t_barge + 1e-6]
    assert len(tts.texts) <= n_tts + 1
    agent_tr = d.metas("agent_turn")
    assert agent_tr[-1]["interrupted"] and agent_tr[-1]["text"] == barge[0]["heard"]
    # the history keeps only what was heard
    assert s.history[-1].speaker == "agent" and s.history[-1].text == barge[0]["heard"]
    assert len(s.history[-1].text) < len("".join(long_reply))
    await d.close()


async def test_a_reply_starting_before_the_vad_ends_the_turn_is_not_cut_by_its_tail():
    """The final transcript arrives while the VAD still waits out its min_silence: the reply
    starts then, and the user's silent tail must not count as talking over it."""
    clock = FakeClock()
    llm, tts = FakeLLM(clock, REPLY, delay=0.05), FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts, vad=lambda: FakeVAD(min_silence=1.5),  # a slow end detection
                            **{"cascade.barge_in_min_speech": 0.24})
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(speech_frame(), frames=10)
    s.stt.say("what is the capital of france", clock.now())  # final right at the end of speech
    await d.step(frames=120)  # the whole reply (~6 s of audio)
    assert not d.metas("barge_in")
    agent_tr = d.metas("agent_turn")
    assert agent_tr and not agent_tr[-1]["interrupted"] and agent_tr[-1]["text"] == "".join(REPLY).strip()
    await d.close()


async def test_end_of_turn_triggers_once_per_turn():
    clock = FakeClock()
    llm, tts = FakeLLM(clock, ["Okay."], delay=0.1), FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts)
    s = await agent.open_session()
    d = Driver(clock, s)
    s.stt.say("hello", clock.now(), final=False)
    s.stt.say("hello there", clock.now(), final=False)
    await d.step(frames=3)
    assert llm.calls == []  # partials never start a reply
    s.stt.say("hello there", clock.now())
    s.stt.say("", clock.now())  # an empty final (noise) is not a turn
    await d.step(frames=20)
    assert len(llm.calls) == 1
    s.stt.say("and goodbye", clock.now())
    await d.step(frames=20)
    assert len(llm.calls) == 2
    assert len(d.metas("turn")) == 2
    # the second prompt holds the whole conversation: user, agent, user
    last = llm.calls[1]
    assert last[-1].content.splitlines() == ["user: hello there", "agent: Okay.", "user: and goodbye"]
    await d.close()


async def test_dead_llm_reports_error_and_session_goes_on():
    clock = FakeClock()
    llm, tts = FakeLLM(clock, ["Fine, thanks."], delay=0.1, fail_calls={1}), FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts)
    s = await agent.open_session()
    d = Driver(clock, s)
    s.stt.say("how are you", clock.now())
    await d.step(frames=10)
    errors = [o for o in d.out if isinstance(o, ErrorEvent)]
    assert errors and "llm" in errors[0].message and "down" in errors[0].message
    # the tandem's shape: {"type": "backend", "status": "down"}, then "up" at the next good reply
    assert [(m["component"], m["status"]) for m in d.metas("backend")] == [("llm", "down")]
    assert not d.voiced()
    s.stt.say("how are you now", clock.now())
    await d.step(frames=20)
    assert len(llm.calls) == 2 and d.voiced()
    assert [(m["component"], m["status"]) for m in d.metas("backend")] == [("llm", "down"), ("llm", "up")]
    assert not d.metas("error")
    await d.close()


async def test_bad_audio_is_reported_and_dropped():
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock))
    s = await agent.open_session()
    d = Driver(clock, s)
    await s.push_audio(np.full(1920, np.nan, np.float32))
    await s.push_audio(np.zeros(1920, np.int16))
    await d.step(frames=2)
    errs = [o.message for o in d.out if isinstance(o, ErrorEvent)]
    assert len(errs) == 2 and "NaN" in errs[0] and "dtype" in errs[1]
    await d.close()


async def test_audio_sent_faster_than_real_time_is_dropped_beyond_the_backlog(caplog):
    """(was: all of it taken: a client that sent 109 s at once kept the STT and the VAD busy while
    other sessions waited) The audio may run runtime.max_input_backlog_s ahead of the clock; the
    newest is kept, the rest counted, and said in a "stats" Meta while the session goes on (the
    final one comes at close, which a server no longer forwards); real-time audio loses nothing,
    a few samples too many at a time are counted too, and a pause earns no credit."""
    clock = FakeClock()
    stt = FakeSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt,
                            **{"runtime.max_input_backlog_s": 0.4})
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(frames=5)  # real time: each chunk arrives as it ends
    await s.push_audio(np.zeros(24000 * 3, np.float32))  # 3 s at once: 0.4 s kept, 2.6 s dropped
    await d.settle()
    live = [m for m in d.metas("stats") if not m["final"]]
    assert len(live) == 1 and live[0]["dropped_input_s"] == pytest.approx(2.6)
    await d.step(frames=10)  # real time again (the backlog stays full): nothing more dropped
    assert s.stats.dropped_input_s == pytest.approx(2.6)
    await d.step(np.zeros(1930, np.float32), frames=10)  # 10 samples too many each time (was: rounded to 0)
    assert s.stats.dropped_input_s == pytest.approx(2.6 + 100 / 24000, abs=1e-3) and s._dropped == 2.6 * 24000 + 100
    clock.advance(10.0)  # a pause, then two 3 s chunks at once: the first may have been recorded in the
    await s.push_audio(np.zeros(24000 * 3, np.float32))  # last 3 s, the second only 0.4 s of it
    await s.push_audio(np.zeros(24000 * 3, np.float32))
    await d.close()  # (37.5 frames, then 5: the half-frame left at close is counted too, 0.04 s)
    assert d.metas("stats")[-1]["final"] and d.metas("stats")[-1]["dropped_input_s"] == \
        pytest.approx(5.2 + 100 / 24000 + 0.04, abs=1e-3)
    assert caplog.text.count("the client sends audio faster than real time") == 1
    assert stt.frames <= 5 + 5 + 10 + 10 + 37 + 5  # (without the bound: 5 + 37 + 20 + 75)


async def test_an_empty_chunk_takes_no_credit_from_the_next():
    # (was: an empty push moved the audio's end up to the clock: 0.99 s of the next 2 s chunk dropped)
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), **{"runtime.max_input_backlog_s": 1.0})
    s = await agent.open_session()
    d = Driver(clock, s)
    clock.advance(1.0)  # (a second after the opening: the first chunk may have begun then)
    await s.push_audio(np.zeros(0, np.float32))
    clock.advance(0.01)
    await s.push_audio(np.zeros(48000, np.float32))  # 2 s, arriving as it ends: 1 s ahead at most
    await d.close()
    assert d.metas("stats")[-1]["dropped_input_s"] == 0


async def test_file_mode_pushing_loses_nothing_at_the_smallest_backlog():
    # file mode pushes frames 0 and 1 at the same clock time, then one per 80 ms (was: at
    # runtime.max_input_backlog_s 0.08, frame 1 was dropped)
    clock = FakeClock(start=0.08)
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), **{"runtime.max_input_backlog_s": 0.08})
    s = await agent.open_session()
    d = Driver(clock, s)
    frame = np.zeros(1920, np.float32)
    for k in range(20):
        await s.push_audio(frame)
        if k:
            clock.set(0.08 + k * 0.08)
    await d.close()
    assert d.metas("stats")[-1]["dropped_input_s"] == 0


async def test_capacity_and_close():
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), **{"runtime.max_sessions": 1})
    s = await agent.open_session()
    with pytest.raises(CapacityError):
        await agent.open_session()
    await s.close()
    s2 = await agent.open_session()
    assert s2.id != s.id
    await agent.stop()


def test_cascade_config_section():
    cfg = load_config(None, ["mode=cascade", "cascade.tts=espeak:en-us+f2", "cascade.hybrid_routing=true"])
    assert cfg.cascade.tts == "espeak:en-us+f2" and cfg.cascade.hybrid_routing is True
    with pytest.raises(ConfigError, match="nope"):
        load_config(None, ["cascade.nope=1"])
    with pytest.raises(ConfigError):
        CascadeConfig.from_dict({"max_tokens": 0})


async def test_missing_stt_is_a_config_error():
    with pytest.raises(ConfigError, match="needs an STT"):
        agent = build_cascade_agent(load_config(None, ["mode=cascade", "backend.stt=none"]))
        await agent.start()


async def test_reply_stops_at_an_invented_user_line():
    pieces = ["Paris is ", "the capital.", "\nus", "er: How big", " is it?", "\nagent: Big."]
    agent, s, d, llm, tts = await _one_turn(pieces, 0.2, "what is the capital of france")
    assert tts.texts == ["Paris is the capital."]
    assert llm.cancelled == 1 and not llm.finished_at  # the LLM stream was closed, not read to the end
    shown = "".join(o.text for o in d.out if isinstance(o, AgentText))
    assert shown.startswith("Paris is the capital.") and "How big" not in shown and "Big" not in shown
    turn = d.metas("agent_turn")[-1]
    assert turn["reply"] == turn["text"] == "Paris is the capital." and not turn["interrupted"]
    assert s.history[-1].text == "Paris is the capital."
    await d.close()
    await agent.stop()


async def test_custom_user_label_ends_the_reply_and_mid_line_labels_are_spoken():
    def prompt_fn(history):
        return [ChatMessage("user", "Caller: " + history[-1].text)]

    prompt_fn.prompt_config = PromptConfig(user_label="Caller")
    pieces = ["The user: ", "a person.", "\nCal", "ler: And you?"]
    agent, s, d, llm, tts = await _one_turn(pieces, 0.2, "who is the user", prompt_fn=prompt_fn)
    assert llm.calls[0][0].content == "Caller: who is the user"
    assert tts.texts == ["The user: a person."] and llm.cancelled == 1
    assert "".join(o.text for o in d.out if isinstance(o, AgentText)) == "The user: a person."
    await d.close()
    await agent.stop()


async def test_a_prompt_that_cannot_be_built_ends_the_turn_without_a_reply():
    """An ErrorEvent, and the turn's agent_turn with no text (kame run waits for it to know the
    reply is over; was: a turn that never ended); the session answers the next question."""
    calls = []

    def prompt_fn(history):
        calls.append(history[-1].text)
        if len(calls) == 1:
            raise ValueError("no template")
        return [ChatMessage("user", history[-1].text)]

    agent, s, d, llm, tts = await _one_turn(["Paris."], 0.1, "what is it", prompt_fn=prompt_fn)
    err = next(o for o in d.out if isinstance(o, ErrorEvent) and "prompt building" in o.message)
    assert err.message == "prompt building failed: no template"
    assert client_form(err).message == f"prompt building failed; {SEE_LOG}"  # (what kame serve sends)
    turn, ended = d.metas("turn")[-1], d.metas("agent_turn")[-1]
    assert ended["turn"] == turn["turn"] and ended["text"] == "" and not llm.calls
    s.stt.say("and now", d.clock.now())
    await d.step(frames=40)
    assert len(llm.calls) == 1 and d.metas("agent_turn")[-1]["text"] == "Paris."
    await d.close()
    await agent.stop()


async def test_a_reply_whose_tts_failed_is_not_recorded_as_heard():
    """The turn's text (and the LLM's history) is what played, not the whole reply, when the TTS
    failed mid-reply (was: the full reply, as if the user had heard it)."""
    clock = FakeClock()

    class DyingTTS(FakeTTS):
        async def synthesize(self, text):
            if len(self.texts) >= 1:
                self.texts.append(text)
                raise RuntimeError("HTTP 500: tts down")
            async for pcm in super().synthesize(text):
                yield pcm

    llm, tts = FakeLLM(clock, REPLY, delay=0.05), DyingTTS(clock)
    agent, _ = await _agent(clock, llm, tts)
    s = await agent.open_session()
    d = Driver(clock, s)
    s.stt.say("what is the capital of france", clock.now())
    await d.step(frames=80)
    (turn,) = d.metas("agent_turn")
    assert turn["failed"] is True and turn["text"] == tts.texts[0].strip() and turn["reply"].startswith(turn["text"])
    assert len(turn["reply"]) > len(turn["text"])
    assert s.history[-1].text == turn["text"]
    await d.close()


def test_a_tts_fallback_is_named_in_the_components():
    # (was: the summary said "tts espeak", the failure only in the log)
    from kame.cascade.agent import load_tts

    tts, name = load_tts("piper:/no/such/voice.onnx", "espeak")
    assert name.startswith("espeak (cascade.tts 'piper:/no/such/voice.onnx' failed to load: ")
    assert load_tts("espeak", "espeak")[1] == "espeak"


async def test_a_long_session_keeps_only_the_newest_turns(monkeypatch):
    """The history the prompt is built from is bounded (was: every turn of an hours-long session)."""
    import kame.cascade.session as cs

    monkeypatch.setattr(cs, "KEEP_TURNS", 2)  # (100 in use: between 2 and 4 turns kept here)
    seen = []

    def prompt_fn(history):
        seen.append([t.text for t in history])
        return [ChatMessage("user", history[-1].text)]

    clock = FakeClock()
    llm, tts = FakeLLM(clock, ["Okay."], delay=0.1), FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts, prompt_fn=prompt_fn)
    s = await agent.open_session()
    d = Driver(clock, s)
    for n in range(6):
        s.stt.say(f"question {n}", clock.now())
        await d.step(frames=20)
    assert len(seen) == 6 and seen[-1][-1] == "question 5"
    assert max(len(h) for h in seen) <= 4 and len(s.history) <= 4
    await d.close()


async def test_a_barge_in_min_speech_of_0_cuts_a_reply_on_voice_only_never_on_silence():
    """cascade.barge_in_min_speech = 0 (documented valid): any voice over the reply cuts it, the
    silence after the user's question never does (was: 0 s heard >= 0, so every reply was cut on
    its first frame and the cascade never answered)."""
    clock = FakeClock()
    long_reply = [f"This is sentence number {i} of a long answer. " for i in range(20)]
    llm, tts = FakeLLM(clock, long_reply, delay=0.05), FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts, **{"cascade.barge_in_min_speech": 0})
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(speech_frame(), frames=10)
    await d.step(frames=5)  # the VAD ends the question's speech
    s.stt.say("tell me a long story", clock.now())
    await d.step(frames=25)
    assert not d.metas("barge_in") and d.voiced(), "silence cut the reply"
    await d.step(speech_frame(), frames=2)  # the user talks over the agent
    assert len(d.metas("barge_in")) == 1
    assert d.metas("agent_turn")[-1]["interrupted"]
    await d.close()
