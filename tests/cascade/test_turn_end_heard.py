"""A turn's end of speech (its latency origin) when its final comes late, while the user speaks
again (the cascade session and hybrid routing alike), and what of a reply cut by a barge-in
counts as heard (the words its played audio reached, not whole segments)."""

import numpy as np

from kame.backend.types import Transcript, Word
from kame.backend.vad import VADEvent
from kame.cascade.text import SegmentSplitter
from kame.runtime.base import Meta
from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeLLM, FakeTTS, speech_frame
from . import test_session
from .test_hybrid import _frames, _router
from .test_session import _agent

stop_agents = test_session.stop_agents  # (autouse: stops the agents _agent started, also after a failure)


def _final(words: list[tuple[str, float, float]], t: float) -> Transcript:
    return Transcript(tuple(Word(w, s, e) for w, s, e in words), True, t)


async def test_a_late_final_keeps_the_end_of_its_own_speech_not_the_next_utterances():
    """"I was wondering if" (ended by the VAD), a pause, the user speaks again, and only then its
    final comes: the turn ends where the VAD ended that speech (was: the user's latest voice, in
    the second utterance), and the first response is measured from there."""
    clock = FakeClock()
    agent, log = await _agent(clock, FakeLLM(clock, ["Sure."], delay=0.1), FakeTTS(clock))
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(speech_frame(), frames=12)  # utterance 1
    await d.step(frames=10)  # the VAD ends it (its min_silence)
    await d.step(speech_frame(), frames=12)  # utterance 2: still speaking when the late final comes
    vad = d.metas("vad")
    assert [v["event"] for v in vad] == ["start", "end", "start"]
    first_end = vad[1]["t"]
    s.stt.queue.put_nowait(_final([("I", 0.1, 0.3), ("was", 0.3, 0.5), ("wondering", 0.5, 0.8),
                                   ("if", 0.8, first_end - 0.1)], clock.now()))
    await d.step(frames=25)
    turn = d.metas("turn")[0]
    assert turn["t_user_end"] == first_end, (turn["t_user_end"], first_end)
    assert s.history[0].speaker == "user" and s.history[0].end == first_end
    onset = d.voiced()[0].t
    assert abs(log.values("first_response_latency")[0] - (onset - first_end)) < 0.09  # (within its frame)
    await d.close()


async def test_hybrid_routing_takes_the_end_of_speech_the_same_way():
    """The router's routed reply gets the VAD's end of the final's speech as its latency origin
    (was: the last word's end, once the user spoke again)."""
    clock = FakeClock()
    llm, tts = FakeLLM(clock, ["Four."], delay=0.1), FakeTTS(clock)
    router, events = _router(clock, llm, tts)
    router.on_vad([VADEvent("start", 0.5, 0.6)], 0.6, True, 0.6)
    router.on_vad([VADEvent("end", 1.7, 2.2)], 2.2, False, 1.7)
    router.on_vad([VADEvent("start", 3.3, 3.4)], 4.2, True, 4.2)  # the user speaks again
    clock.advance(4.3)
    assert router.on_transcript(_final([("what", 0.6, 0.9), ("is", 0.9, 1.0), ("2", 1.0, 1.2), ("+", 1.2, 1.3),
                                        ("2", 1.3, 1.6)], clock.now())) == "structured"
    assert router.reply.t_user_end == 1.7
    await _frames(clock, router, 20)
    lat = [e.data for e in events if isinstance(e, Meta) and e.data.get("name") == "first_response_latency"]
    assert lat and abs(lat[0]["value"] - (lat[0]["t"] - 1.7)) < 0.09  # (measured from 1.7, not 1.6)


def test_which_speech_a_final_belongs_to():
    from kame.cascade.turns import SpeechRegions

    sr = SpeechRegions()
    words = [("yes", 3.0, 3.3)]
    sr.add([VADEvent("start", 0.5, 0.6), VADEvent("end", 1.7, 2.2)])
    # no region near the words (the VAD did not hear them): the last word's end
    assert sr.end_of(_final(words, 5.0), 1.7) == 3.3
    # a one-word answer the STT put a little before the VAD's start: that region, still open
    sr.add([VADEvent("start", 3.35, 3.4)])
    assert sr.end_of(_final(words, 5.0), 3.5) == 3.5
    # the user went on talking in the same region after the final's words: their end, not his voice
    assert sr.end_of(_final(words, 5.0), 6.0) == 3.3
    sr.add([VADEvent("end", 3.6, 4.1)])
    assert sr.end_of(_final(words, 5.0), 3.6) == 3.6
    # a last word whose end spills a little past the VAD's end: still that region
    assert sr.end_of(_final([("if", 1.4, 1.86)], 5.0), 3.6) == 1.7
    assert sr.open_start is None


async def _barge_in_after(frames_played: int):
    """A reply whose first sentence has 20 words (5 s of FakeTTS audio); the user talks over it
    once ``frames_played`` of its frames played. Returns (barge_in Meta, agent_turn Meta, session,
    the seconds of reply audio played, the first sentence)."""
    clock = FakeClock()
    first = " ".join(f"w{i}" for i in range(1, 20)) + " end."
    llm = FakeLLM(clock, [first + " ", "A second sentence here."], delay=0.1)
    agent, _ = await _agent(clock, llm, FakeTTS(clock), **{"cascade.barge_in_min_speech": 0.08})
    s = await agent.open_session()
    d = Driver(clock, s)
    s.stt.say("tell me a story", clock.now())
    for _ in range(40):
        if d.voiced():
            break
        await d.step()
    await d.step(frames=frames_played - 1)
    await d.step(speech_frame(), frames=3)
    barge, turn = d.metas("barge_in"), d.metas("agent_turn")
    assert len(barge) == 1 and len(turn) == 1
    played = sum(np.count_nonzero(a.pcm) for a in d.audio()) / 24000
    await d.close()
    return barge[0], turn[0], s, played, first


async def test_a_barge_in_counts_the_words_played_not_the_whole_segment():
    barge, turn, s, played, first = await _barge_in_after(6)
    assert 0.4 < played < 1.0
    heard = " ".join(first.split()[: int(20 * played / 5.0)])  # (0.25 s a word)
    assert heard and len(heard.split()) < 5
    assert barge["heard"] == turn["text"] == heard and turn["interrupted"]
    assert turn["reply"].startswith(first)
    # the LLM's history (the next prompt) keeps what was heard
    assert s.history[-1].speaker == "agent" and s.history[-1].text == heard


async def test_a_barge_in_right_after_the_first_sound_hears_nothing():
    barge, turn, s, played, first = await _barge_in_after(1)
    assert barge["heard"] == turn["text"] == "" and turn["interrupted"]
    assert s.history[-1].speaker == "user"  # no agent line for a reply nobody heard


def test_a_spaced_hyphen_ends_the_first_clause_like_a_dash():
    for dash in (" - ", " – ", " -- "):
        sp = SegmentSplitter(first_clause_min_words=4)
        out = sp.feed(f"The infamous old story{dash}a tale of obsession and reckless abandon. More.")
        assert out[0] == f"The infamous old story{dash.rstrip()}", (dash, out)
    sp = SegmentSplitter(first_clause_min_words=4)  # a hyphen in a word, a minus, a short first clause
    assert sp.feed("A well-known fact is -5 degrees - cold. x") == ["A well-known fact is -5 degrees -", "cold."]
    assert SegmentSplitter(4).feed("Big old town - a tale. x") == ["Big old town - a tale."]  # (a dash is no word)
