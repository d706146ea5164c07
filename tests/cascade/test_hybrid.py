"""Hybrid routing inside a tandem session: structured turns are answered by the cascade path."""

import asyncio

import numpy as np

from kame.backend.types import Transcript, Word
from kame.backend.vad import VADEvent
from kame.cascade.agent import default_prompt_fn
from kame.cascade.config import CascadeConfig
from kame.cascade.hybrid import HybridRouter
from kame.runtime.base import Meta
from kame.runtime.clock import FakeClock

from .fakes import FakeLLM, FakeTTS

FRONT = np.full(1920, 0.001, np.float32)  # the front-end's (quiet) frame


def _final(text, t):
    return Transcript(tuple(Word(w, t - 0.5, t - 0.1) for w in text.split()), True, t)


async def _frames(clock, router, n):
    out = []
    for _ in range(n):
        clock.advance(0.08)
        for _ in range(20):
            await asyncio.sleep(0)
        out.append(router.frame(FRONT))
    return out


def _router(clock, llm, tts, on=True, on_heard=None):
    events = []
    cfg = CascadeConfig(hybrid_routing=on, max_tokens=50)
    r = HybridRouter(llm, tts, cfg, clock, emit=events.append, prompt_fn=default_prompt_fn(), on_heard=on_heard)
    return r, events


def _digits(clock, delay):
    """An LLM reading back a long number, a sentence per digit (a reply that plays for seconds)."""
    return FakeLLM(clock, [f"Digit number {i} is {i}. " for i in range(30)], delay=delay)


async def _reading_back(clock, delay, frames):
    """A routed reply reading back a phone number, ``frames`` frames into playing: (router, its
    events, the LLM)."""
    llm = _digits(clock, delay)
    router, events = _router(clock, llm, FakeTTS(clock))
    router.on_transcript(_final("read back my phone number", clock.now()))
    await _frames(clock, router, frames)
    assert router.active
    return router, events, llm


async def test_structured_turn_is_spoken_by_the_cascade_path():
    clock = FakeClock()
    llm, tts = FakeLLM(clock, ["Seventeen times twenty three is ", "three hundred ninety one."], delay=0.1), FakeTTS(clock)
    router, events = _router(clock, llm, tts)
    assert router.on_transcript(_final("what is seventeen times twenty three", clock.now())) == "structured"
    frames = await _frames(clock, router, 80)
    routed = [f for f in frames if f is not FRONT]
    assert any(np.abs(f).max() > 0.1 for f in routed)  # the reply's audio replaced the front-end
    assert frames[-1] is FRONT  # and the front-end is back once the reply is over
    routes = [e.data for e in events if isinstance(e, Meta) and e.data["type"] == "route"]
    assert routes[0]["route"] == "structured" and "arithmetic: expression" in routes[0]["rules"]
    done = [e.data for e in events if isinstance(e, Meta) and e.data["type"] == "agent_turn"]
    assert done and not done[0]["interrupted"] and done[0]["text"].endswith("ninety one.")
    assert router.history[-1].speaker == "agent"


async def test_open_turns_and_routing_off_leave_the_front_end_alone():
    clock = FakeClock()
    llm, tts = FakeLLM(clock, ["Hi."]), FakeTTS(clock)
    router, _ = _router(clock, llm, tts)
    assert router.on_transcript(_final("tell me about rome", clock.now())) == "open"
    assert all(f is FRONT for f in await _frames(clock, router, 10))
    off, _ = _router(clock, llm, tts, on=False)
    assert off.on_transcript(_final("what is 2 + 2", clock.now())) == "structured"
    assert all(f is FRONT for f in await _frames(clock, off, 10))
    assert llm.calls == []


async def test_barge_in_cancels_the_routed_reply():
    clock = FakeClock()
    router, events, llm = await _reading_back(clock, 0.3, 20)
    t = clock.now()
    router.on_vad([VADEvent("start", t, t)], t, True, t)
    assert router.active  # not yet: a blip is not a barge-in
    router.on_vad([], t + 0.32, True, t + 0.32)
    for _ in range(5):  # (the cancellation reaches the LLM's stream through the reply's task)
        await asyncio.sleep(0)
    assert not router.active and llm.cancelled == 1
    assert all(f is FRONT for f in await _frames(clock, router, 5))
    assert [e.data["type"] for e in events if isinstance(e, Meta)].count("barge_in") == 1


async def test_the_questions_own_tail_is_not_a_barge_in():
    """The STT's final can start a routed reply while the VAD still reports the question as
    ongoing (it waits min_silence before "end"): that silent tail must not cut the reply,
    while voice heard after the reply started still does."""
    clock = FakeClock()
    llm = _digits(clock, 0.05)
    router, events = _router(clock, llm, FakeTTS(clock))
    t0 = clock.now()
    router.on_vad([VADEvent("start", t0 - 2.0, t0 - 1.9)], t0, True, t0)  # the question, voiced up to t0
    router.on_transcript(_final("read back my phone number", t0))
    for i in range(12):  # ~1 s: still "in speech" (no end event yet), but nothing voiced after t0
        await _frames(clock, router, 1)
        router.on_vad([], clock.now(), True, t0)
    assert router.active and llm.cancelled == 0
    router.on_vad([VADEvent("end", t0, clock.now())], clock.now(), False, t0)
    await _frames(clock, router, 3)
    t1 = clock.now()  # the user speaks again, over the reply
    router.on_vad([VADEvent("start", t1, t1 + 0.1)], t1 + 0.1, True, t1 + 0.1)
    assert router.active
    router.on_vad([], t1 + 0.32, True, t1 + 0.32)
    for _ in range(5):  # (the cancellation reaches the LLM's stream through the reply's task)
        await asyncio.sleep(0)
    assert not router.active and llm.cancelled == 1
    assert [e.data["type"] for e in events if isinstance(e, Meta)].count("barge_in") == 1


async def test_a_routed_reply_whose_tts_audio_is_unusable_ends_as_failed():
    """NaN TTS audio never replaces the front-end's frame; the routed turn ends failed, with
    nothing heard (was: the reply's full text, as if spoken), and the ErrorEvent names the TTS."""
    from kame.runtime.base import ErrorEvent

    class NanTTS(FakeTTS):
        async def synthesize(self, text):
            async for pcm in super().synthesize(text):
                yield np.full_like(pcm, np.nan)

    clock = FakeClock()
    llm = FakeLLM(clock, ["Seventeen times twenty three is ", "three hundred ninety one."], delay=0.1)
    router, events = _router(clock, llm, NanTTS(clock))
    router.on_transcript(_final("what is seventeen times twenty three", clock.now()))
    frames = await _frames(clock, router, 40)
    assert all(np.isfinite(f).all() for f in frames) and frames[-1] is FRONT
    (ended,) = [e.data for e in events if isinstance(e, Meta) and e.data["type"] == "agent_turn"]
    assert ended["failed"] is True and ended["text"] == "" and ended["reply"]
    assert any(isinstance(e, ErrorEvent) and e.message.startswith("tts fake-tts failed") for e in events)


def test_the_front_ends_endless_talk_is_bounded_in_the_history():
    """The front-end talking for minutes with no user turn: its line keeps its newest words (was:
    every piece, all of it in the next routed reply's prompt)."""
    from kame.backend.prompt import MAX_LINE_CHARS

    clock = FakeClock()
    r, _ = _router(clock, FakeLLM(clock, ["Okay."]), FakeTTS(clock))
    for n in range(3000):  # ~30 min of words
        r.on_agent_text(f" word{n}", n * 0.6)
    (turn,) = r.history
    assert len(turn.text) <= MAX_LINE_CHARS and turn.text.split()[-1] == "word2999"


async def test_every_routed_agent_turn_is_reported_also_with_nothing_heard():
    """on_heard gets each committed agent_turn: the heard text, or "" (was: called only for
    non-empty text, so the oracle never learned that a routed question went unanswered), and
    whether the reply was cut (a later final) rather than ended by itself (an empty answer)."""
    clock = FakeClock()
    heard = []
    llm = FakeLLM(clock, ["Four."], delay=0.5)
    r, _ = _router(clock, llm, FakeTTS(clock), on_heard=lambda text, t, interrupted: heard.append((text, interrupted)))
    r.on_transcript(_final("what is two plus two", clock.now()))
    r.on_transcript(_final("what is three plus three", clock.now() + 0.1))  # cuts it before a word
    assert heard == [("", True)]
    llm.pieces = []  # the LLM answers nothing
    await _frames(clock, r, 20)
    assert heard == [("", True), ("", False)] and r.reply is None


async def test_the_routed_reply_precedes_the_next_user_turn_in_the_history():
    """Was: the next final was remembered before the previous reply's agent turn was committed:
    [user 1, user 2, agent 1] in the next routed reply's prompt."""
    clock = FakeClock()
    r, _, llm = await _reading_back(clock, 0.05, 25)
    r.on_transcript(_final("what is two plus two", clock.now()))
    assert [(t.speaker, t.text.split()[0]) for t in r.history] == [("user", "read"), ("agent", "Digit"),
                                                                    ("user", "what")]
    await _frames(clock, r, 1)  # (its LLM request starts in a task)
    assert [line.split(":")[0] for line in llm.calls[-1][-1].content.splitlines()] == ["user", "agent", "user"]


async def test_a_final_cutting_a_reply_that_just_ended_unheard_reports_it_cut():
    """A routed reply that ended unheard (an empty answer) but that frame() has not collected yet
    is cut by the next final like a reply under way: on_heard is told it was interrupted, so the
    oracle answers that final rather than predicting the unheard question first (was: reported
    as ended by itself, owing the question a prediction started before the final reached it)."""
    clock = FakeClock()
    heard = []
    llm = FakeLLM(clock, [], delay=0.0)
    r, _ = _router(clock, llm, FakeTTS(clock), on_heard=lambda text, t, interrupted: heard.append((text, interrupted)))
    r.on_transcript(_final("what is two plus two", clock.now()))
    for _ in range(5):  # (the LLM answers nothing; no frame() collects the ended reply)
        clock.advance(0.02)
        for _ in range(20):
            await asyncio.sleep(0)
    assert r.reply is not None and not r.reply.active
    r.on_transcript(_final("tell me about rome", clock.now()))
    assert heard == [("", True)]


async def test_a_failing_on_heard_is_logged_and_the_router_goes_on(caplog):
    clock = FakeClock()

    def boom(text, t, interrupted):
        raise RuntimeError("boom")

    r, _ = _router(clock, FakeLLM(clock, ["Four."], delay=0.5), FakeTTS(clock), on_heard=boom)
    r.on_transcript(_final("what is two plus two", clock.now()))
    assert r.on_transcript(_final("what is three plus three", clock.now() + 0.1)) == "structured"
    assert r.active and [t.speaker for t in r.history] == ["user", "user"] and "on_heard" in caplog.text


async def test_the_route_meta_has_the_turn_s_end_of_speech():
    """The route Meta carries the turn's t_user_end, as a cascade's "turn" does (was: none, so the
    timeline put a routed reply's first response after an earlier utterance's VAD end): the VAD's
    end of the speech its words are in."""
    clock = FakeClock()
    router, events = _router(clock, FakeLLM(clock, ["Four."]), FakeTTS(clock))
    clock.advance(3.0)
    router.on_vad([VADEvent("start", 1.0, 1.1)], 1.1, True, 1.1)
    router.on_vad([VADEvent("end", 2.45, 2.9)], 2.9, False, 2.45)
    router.on_transcript(_final("what is two plus two", 3.0))  # (its words 2.5-2.9 s: by the region's end)
    (route,) = [e.data for e in events if isinstance(e, Meta) and e.data["type"] == "route"]
    assert route["t_user_end"] == 2.45


async def test_a_barge_in_min_speech_of_0_is_not_met_by_the_questions_silent_tail():
    """cascade.barge_in_min_speech = 0: the routed reply starts while the VAD still reports the
    question as ongoing; its silent tail (0 s of voice since the reply started) does not cut it
    (was: 0 >= 0), the user's voice after it does."""
    clock = FakeClock()
    llm, events = _digits(clock, 0.05), []
    router = HybridRouter(llm, FakeTTS(clock), CascadeConfig(hybrid_routing=True, max_tokens=50, barge_in_min_speech=0),
                          clock, emit=events.append, prompt_fn=default_prompt_fn())
    t0 = clock.now()
    router.on_vad([VADEvent("start", t0 - 2.0, t0 - 1.9)], t0, True, t0)  # the question, voiced up to t0
    router.on_transcript(_final("read back my phone number", t0))
    for _ in range(6):  # still "in speech", nothing voiced after t0
        await _frames(clock, router, 1)
        router.on_vad([], clock.now(), True, t0)
    assert router.active and llm.cancelled == 0
    router.on_vad([], clock.now(), True, clock.now())  # voice again, over the reply
    for _ in range(5):
        await asyncio.sleep(0)
    assert not router.active
    assert [e.data["type"] for e in events if isinstance(e, Meta)].count("barge_in") == 1
