"""The cascade session when its parts misbehave, driven on a FakeClock: a hung LLM or TTS, a
flaky STT, unusable TTS audio, unread outputs, session ids, stop(), bad config values and bad
pushed audio. Each case is one the QA reproductions showed (see the test names)."""

import asyncio
import threading

import numpy as np
import pytest

from kame.cascade import session as cascade_session
from kame.runtime import sttloop
from kame.runtime.base import SessionIdError
from kame.config import load_config
from kame.errors import ConfigError
from kame.runtime.base import AgentAudio, ErrorEvent, Meta
from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeLLM, FakeSTT, FakeTTS, speech_frame
from .test_session import _agent

STALL_FRAMES = 140  # 11.2 s: past the oracle's first-token timeout (10 s)


def _errors(d: Driver) -> list[str]:
    return [o.message for o in d.out if isinstance(o, ErrorEvent)]


def _backend(d: Driver) -> list[tuple[str, str]]:
    return [(m["component"], m["status"]) for m in d.metas("backend")]


class HangingLLM(FakeLLM):
    """Calls in ``hang_calls`` (1-based) stream their first ``after`` pieces, then never answer."""

    def __init__(self, clock, pieces, hang_calls=(1,), after=0, **kw):
        super().__init__(clock, pieces, **kw)
        self.hang_calls, self.after = set(hang_calls), after

    async def stream_chat(self, messages, **kw):
        if len(self.calls) + 1 not in self.hang_calls:
            async for p in super().stream_chat(messages, **kw):
                yield p
            return
        self.calls.append(list(messages))
        for p in self.pieces[:self.after]:
            await self.clock.sleep(self.delay)
            yield p
        await asyncio.Event().wait()


class OddTTS(FakeTTS):
    """Call k (1-based) in ``modes`` yields: "hang" (nothing, ever), "stall" (one chunk, then
    nothing), "nan", "int16" or "stereo" audio, "empty" (nothing: its stream just ends) or
    "zerolen" (one array of 0 samples); other calls a good tone."""

    def __init__(self, clock, modes: dict):
        super().__init__(clock)
        self.modes = modes

    async def synthesize(self, text):
        mode = self.modes.get(len(self.texts) + 1)
        if mode in ("empty", "zerolen"):
            self.texts.append(text)
            await self.clock.sleep(self.delay)
            if mode == "zerolen":
                yield np.zeros(0, np.float32)
            return
        async for pcm in super().synthesize(text):
            if mode == "hang":
                await asyncio.Event().wait()
            if mode == "nan":
                pcm = pcm.copy()
                pcm[::7] = np.nan
            elif mode == "int16":
                pcm = (pcm * 32767).astype(np.int16)
            elif mode == "stereo":
                pcm = np.stack([pcm, pcm], 1)
            yield pcm
            if mode == "stall":
                await asyncio.Event().wait()


async def _ask(d: Driver, text: str, frames: int) -> None:
    d.session.stt.say(text, d.clock.now())
    await d.step(frames=frames)


def _last_turn_pair(d: Driver) -> tuple[dict, dict]:
    return d.metas("turn")[-1], d.metas("agent_turn")[-1]


# ---- 1. a hung LLM or TTS ends the turn as failed (r2_cascade_hang.py) ----------------------
async def test_an_llm_that_never_answers_fails_the_turn_and_the_next_one_works():
    clock = FakeClock()
    llm, tts = HangingLLM(clock, ["Fine, thanks."], delay=0.1), FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts)
    d = Driver(clock, await agent.open_session())
    await _ask(d, "how are you", STALL_FRAMES)
    turn, ended = _last_turn_pair(d)
    assert ended["turn"] == turn["turn"] and ended["failed"] is True and ended["text"] == ""
    assert any("llm fake-llm failed" in e and "stalled" in e for e in _errors(d))
    assert _backend(d) == [("llm", "down")]
    assert not d.voiced()
    await _ask(d, "how are you now", 30)
    assert d.voiced() and d.metas("agent_turn")[-1]["text"] == "Fine, thanks."
    assert _backend(d) == [("llm", "down"), ("llm", "up")]
    await d.close()
    await agent.stop()


async def test_an_llm_that_stalls_mid_reply_ends_it_with_what_was_said():
    clock = FakeClock()
    llm = HangingLLM(clock, ["Paris is the capital. ", "It is big."], after=1, delay=0.1)
    agent, _ = await _agent(clock, llm, FakeTTS(clock))
    d = Driver(clock, await agent.open_session())
    await _ask(d, "what is the capital of france", 100)  # 8 s: past the 5 s between pieces
    turn, ended = _last_turn_pair(d)
    assert ended["turn"] == turn["turn"] and ended["failed"] is True
    assert ended["text"] == "Paris is the capital." and d.voiced()
    assert any("LLM fake-llm stalled" in e for e in _errors(d)) and _backend(d) == [("llm", "down")]
    await d.close()
    await agent.stop()


@pytest.mark.parametrize("pieces", [
    ["Paris is the capital. ", "The capital of"],  # (was: "The capital of" spoken after the error)
    ["Paris is the capital."],  # a finished last sentence the splitter had not cut yet is spoken
    ["Paris is the capital.\n"],
])
async def test_an_llm_cut_off_mid_sentence_leaves_its_unfinished_words_unspoken(pieces):
    clock = FakeClock()
    llm = HangingLLM(clock, pieces, after=len(pieces), delay=0.1)
    tts = FakeTTS(clock)
    agent, _ = await _agent(clock, llm, tts)
    d = Driver(clock, await agent.open_session())
    await _ask(d, "what is the capital of france", 100)
    ended = d.metas("agent_turn")[-1]
    assert ended["failed"] is True and ended["text"] == "Paris is the capital."
    assert [t.strip() for t in tts.texts] == ["Paris is the capital."]
    await d.close()
    await agent.stop()


@pytest.mark.parametrize("mode", ["hang", "stall"])
async def test_a_tts_that_hangs_fails_the_turn_and_the_next_one_works(mode):
    clock = FakeClock()
    llm, tts = FakeLLM(clock, ["Fine, thanks."], delay=0.1), OddTTS(clock, {1: mode})
    agent, _ = await _agent(clock, llm, tts)
    d = Driver(clock, await agent.open_session())
    await _ask(d, "how are you", STALL_FRAMES)
    turn, ended = _last_turn_pair(d)
    assert ended["turn"] == turn["turn"] and ended["failed"] is True
    assert ended["text"] == ("" if mode == "hang" else "Fine, thanks.")
    assert any("tts fake-tts failed" in e and "TTS fake-tts stalled" in e for e in _errors(d))
    assert ("tts", "down") in _backend(d)
    await _ask(d, "and now", 30)
    assert d.metas("agent_turn")[-1]["failed"] is False and d.metas("agent_turn")[-1]["text"] == "Fine, thanks."
    assert _backend(d)[-1] == ("tts", "up")
    await d.close()
    await agent.stop()


async def test_an_llm_piece_that_is_not_text_fails_the_turn_with_the_tandems_wording():
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Well, ", 42, "no."], delay=0.1), FakeTTS(clock))
    d = Driver(clock, await agent.open_session())
    await _ask(d, "how are you", 30)
    why = "LLM fake-llm broke its interface: yielded int 42, expected str (a text piece)"  # check_piece
    assert _errors(d) == [f"llm fake-llm failed during the reply to turn 1: {why}"]
    assert d.metas("backend") and d.metas("backend")[0]["error"] == why
    assert d.metas("agent_turn")[-1]["failed"] is True
    await d.close()
    await agent.stop()


async def test_a_failure_that_is_not_kames_names_its_type_in_the_backend_meta():
    """The Meta's "error" is runtime.base._why(exc), the tandem's: the type for foreign errors."""
    clock = FakeClock()

    class BrokenTTS(FakeTTS):
        async def synthesize(self, text):
            raise RuntimeError("no voice")
            yield

    agent, _ = await _agent(clock, FakeLLM(clock, ["Fine."], delay=0.1), BrokenTTS(clock))
    d = Driver(clock, await agent.open_session())
    await _ask(d, "how are you", 30)
    assert _errors(d) == ["tts fake-tts failed during the reply to turn 1: RuntimeError: no voice"]
    assert d.metas("backend")[0]["error"] == "RuntimeError: no voice"
    await d.close()
    await agent.stop()


@pytest.mark.parametrize("debug", [False, True])
async def test_a_component_s_own_bug_is_logged_with_where_it_was_raised(caplog, debug):
    """A TTS's exception that is not kame's (a plugin's bug) is logged with its innermost frame,
    and its traceback when the log shows DEBUG (`kame -v`); was the message alone. The session's
    ErrorEvent stays as it was (test above)."""
    import logging

    clock = FakeClock()

    class BrokenTTS(FakeTTS):
        async def synthesize(self, text):
            raise RuntimeError("no voice")
            yield

    line = BrokenTTS.synthesize.__code__.co_firstlineno + 1
    agent, _ = await _agent(clock, FakeLLM(clock, ["Fine."], delay=0.1), BrokenTTS(clock))
    d = Driver(clock, await agent.open_session())
    with caplog.at_level(logging.DEBUG if debug else logging.WARNING, logger="kame.cascade.reply"):
        await _ask(d, "how are you", 30)
    said = [r for r in caplog.records if r.name == "kame.cascade.reply" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in said] == [
        f"session {d.session.id}: tts fake-tts failed during the reply to turn 1: RuntimeError: no voice "
        f"(at test_failures.py:{line})"]
    assert (said[0].exc_info is not None) is debug and (not debug or "no voice" in str(said[0].exc_info[1]))
    await d.close()
    await agent.stop()


# ---- 2. the STT is restarted for good, with back-off (r3_cascade_stt_gives_up.py) -----------
class FlakySTT(FakeSTT):
    """Streams 1..``fail`` fail at once; the others work (stream ``fail_again`` fails after its
    first transcript)."""

    def __init__(self, fail: int, fail_again: int | None = None):
        super().__init__()
        self.fail, self.fail_again, self.streams = fail, fail_again, 0

    async def stream(self, frames):
        self.streams += 1
        if self.streams <= self.fail:
            raise RuntimeError(f"connection lost ({self.streams})")
        n = self.streams
        async for tr in super().stream(frames):
            yield tr
            if n == self.fail_again:
                raise RuntimeError("connection lost again")


async def test_the_stt_is_restarted_with_back_off_for_as_long_as_it_fails():
    clock = FakeClock()
    stt = FlakySTT(fail=6, fail_again=7)
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."], delay=0.1), FakeTTS(clock), stt=stt,
                            **{"backend.retry_s": 0.5})
    d = Driver(clock, await agent.open_session())
    await d.step(frames=420)  # 33.6 s: 0.5 + 1 + 2 + 4 + 8 + 16 s of back-off
    waits = [e.rsplit("restarting the stream in ", 1)[1] for e in _errors(d)]
    assert waits == ["0.5 s", "1 s", "2 s", "4 s", "8 s", "16 s"]  # backend.retry_s doubling (up to 30 s)
    assert stt.streams == 7 and _backend(d) == [("stt", "down")]
    await _ask(d, "hello", 20)  # the 7th stream works (a turn), then fails: the back-off starts over
    assert len(d.metas("turn")) == 1 and _backend(d) == [("stt", "down"), ("stt", "up"), ("stt", "down")]
    assert _errors(d)[-1].endswith("restarting the stream in 0.5 s") and stt.streams == 8
    await _ask(d, "still there", 20)
    assert len(d.metas("turn")) == 2 and _backend(d)[-1] == ("stt", "up")
    await d.close()
    await agent.stop()


async def test_an_stt_stream_that_ends_by_itself_is_restarted():
    clock = FakeClock()

    class EndingSTT(FakeSTT):
        streams = 0

        async def stream(self, frames):
            self.streams += 1
            if self.streams > 1:
                async for tr in super().stream(frames):
                    yield tr

    stt = EndingSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."], delay=0.1), FakeTTS(clock), stt=stt)
    d = Driver(clock, await agent.open_session())
    await d.step(frames=20)
    assert "ended by itself" in _errors(d)[0] and stt.streams == 2
    await _ask(d, "hello", 20)
    assert d.metas("agent_turn")[-1]["text"] == "Hi."
    await d.close()
    await agent.stop()


class DeafSTT(FakeSTT):
    """Streams in ``deaf`` (1-based) take no audio, ever; the others work."""

    def __init__(self, deaf=(1,)):
        super().__init__()
        self.deaf, self.streams = set(deaf), 0

    async def stream(self, frames):
        self.streams += 1
        if self.streams in self.deaf:
            await asyncio.Event().wait()
        async for tr in super().stream(frames):
            yield tr


async def test_an_stt_that_takes_no_audio_is_restarted_after_the_tandems_stall_time(monkeypatch):
    """As the tandem's bridge: no audio taken for STALL_S (5 s) while frames wait -> reported
    and its stream restarted (was: reported after 250 frames, never restarted)."""
    monkeypatch.setattr(sttloop, "MAX_QUEUED_FRAMES", 20)
    clock = FakeClock()
    stt = DeafSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."], delay=0.1), FakeTTS(clock), stt=stt)
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(frames=60)  # 4.8 s: not stalled yet; the queue is bounded, the oldest dropped
    assert s._stt._frames.qsize() == 20 and s._stt.dropped_frames == 40 and not _errors(d)
    live = [m for m in d.metas("stats") if not m["final"]]  # said while the session runs (was: 0 until close)
    assert live and 0 < live[-1]["dropped_frames"] <= 40 and live[-1]["t"] >= live[0]["t"] + 1.0 * (len(live) - 1)
    await d.step(frames=20)  # past 5 s
    (err,) = _errors(d)
    assert err.startswith("stt fake-stt failed: STT fake-stt stalled: it has taken no audio for 5.0 s")
    assert err.endswith("restarting the stream in 1 s") and _backend(d) == [("stt", "down")]
    assert stt.streams == 2 and s.stats.backend_failures == 1
    await _ask(d, "hello", 20)  # the new stream works
    assert d.metas("agent_turn")[-1]["text"] == "Hi." and _backend(d) == [("stt", "down"), ("stt", "up")]
    await d.close()
    assert d.metas("stats")[-1]["dropped_frames"] == s.stats.dropped_frames > 40
    await agent.stop()


class DictSTT(FakeSTT):
    """Yields a dict instead of a Transcript (a broken STT plugin)."""

    streams = 0

    async def stream(self, frames):
        self.streams += 1
        yield {"final": True, "text": "hello"}


async def test_an_stt_that_yields_no_transcript_stays_down_and_backs_off():
    """check_transcript before "up" (as the tandem): was an AttributeError, status flapping
    down/up and the back-off never growing."""
    clock = FakeClock()
    stt = DictSTT()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt, **{"backend.retry_s": 0.5})
    d = Driver(clock, await agent.open_session())
    await d.step(frames=60)  # 4.8 s: 0.5 + 1 + 2 s of back-off, the 4th stream fails too
    why = ("STT fake-stt broke its interface: yielded dict {'final': True, 'text': 'hello'}, expected "
           "Transcript (kame.backend.types)")
    assert _errors(d) == [f"stt fake-stt failed: {why}; restarting the stream in {w}" for w in ("0.5 s", "1 s", "2 s", "4 s")]
    assert _backend(d) == [("stt", "down")] and d.metas("backend")[0]["error"] == why  # kame's error: no type
    assert not d.metas("transcript") and stt.streams == 4
    await d.close()
    await agent.stop()


async def test_audio_while_the_stt_is_down_is_dropped_not_queued():
    """As the tandem: a 30 s back-off (375 frames) queued nothing, so no false second failure
    (was: "takes no audio" after 250 queued frames)."""
    clock = FakeClock()
    stt = FlakySTT(fail=100)
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt, **{"backend.retry_s": 0.5})
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(frames=1000)  # 80 s: 0.5 + 1 + ... + 16 + 30 + 30 s of back-off
    assert all("connection lost" in e for e in _errors(d)) and len(_errors(d)) == stt.streams == 8
    assert s._stt._frames is None and s._stt.dropped_frames == 1000  # none waits for the dead STT
    assert _backend(d) == [("stt", "down")] and d.metas("backend")[0]["error"] == "RuntimeError: connection lost (1)"
    await d.close()
    await agent.stop()


async def test_close_cancels_a_down_stt_at_once(monkeypatch):
    """No stream runs (the STT waits to restart): close() does not wait CLOSE_GRACE_S for it."""
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)
    clock = FakeClock()
    stt = FlakySTT(fail=100)
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=stt, **{"backend.retry_s": 0.5})
    s = await agent.open_session()
    d = Driver(clock, s)
    await d.step(frames=3)  # the first stream failed: 0.5 s back-off
    assert not s._stt.running and stt.streams == 1
    closing = asyncio.create_task(d.close())
    for _ in range(50):  # a few turns of the event loop, no time passing (was: waited the grace)
        await asyncio.sleep(0)
    assert closing.done() and all(t.done() for t in s._tasks) and d.metas("stats")[-1]["final"]
    await agent.stop()


# ---- 3. TTS audio is checked like user audio (r4_tts_output_unchecked.py) -------------------
@pytest.mark.parametrize("mode, why", [("nan", "NaN"), ("int16", "dtype int16"), ("stereo", "shape (12000, 2)")])
async def test_unusable_tts_audio_fails_the_turn_and_never_plays(mode, why):
    clock = FakeClock()
    tts = OddTTS(clock, {1: mode})
    agent, _ = await _agent(clock, FakeLLM(clock, ["Fine, thanks."], delay=0.1), tts)
    d = Driver(clock, await agent.open_session())
    await _ask(d, "how are you", 30)
    pcm = np.concatenate([a.pcm for a in d.audio()])
    assert np.isfinite(pcm).all() and not d.voiced() and pcm.ndim == 1
    (err,) = _errors(d)
    assert err.startswith("tts fake-tts failed") and "audio is unusable" in err and why in err
    turn, ended = _last_turn_pair(d)
    assert ended["turn"] == turn["turn"] and ended["failed"] is True and ended["text"] == ""
    await _ask(d, "and now", 30)  # a good chunk: the next turn plays, the TTS is up again
    assert d.voiced() and _backend(d) == [("tts", "down"), ("tts", "up")]
    await d.close()
    await agent.stop()


@pytest.mark.parametrize("mode", ["empty", "zerolen"])
async def test_a_tts_that_gives_no_audio_fails_the_turn(mode):
    """A TTS whose stream ends without a sample for words to say has failed (was: a success, the
    turn's text "heard", no error, and kame run advised --max-tail for a reply never played)."""
    clock = FakeClock()
    tts = OddTTS(clock, {1: mode})
    agent, _ = await _agent(clock, FakeLLM(clock, ["Fine, thanks."], delay=0.1), tts)
    d = Driver(clock, await agent.open_session())
    await _ask(d, "how are you", 30)
    assert not d.voiced()
    (err,) = _errors(d)
    assert err == ("tts fake-tts failed during the reply to turn 1: it gave no audio for 'Fine, thanks.' (its "
                   "stream ended without a sample); the rest of the reply is not spoken")
    turn, ended = _last_turn_pair(d)
    assert ended["turn"] == turn["turn"] and ended["failed"] is True and ended["text"] == ""
    assert _backend(d) == [("tts", "down")]
    await _ask(d, "and now", 30)  # the next turn's TTS speaks: up again
    assert d.voiced() and _backend(d) == [("tts", "down"), ("tts", "up")]
    await d.close()
    await agent.stop()


async def test_digits_a_tts_cannot_say_are_no_failure():
    """piper gives no audio for some digits ('١٢٣'): only a segment with letters needs audio (was:
    such a segment failed the reply and the rest went unspoken)."""
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["١٢٣."], delay=0.1), OddTTS(clock, {1: "empty"}))
    d = Driver(clock, await agent.open_session())
    await _ask(d, "how many", 30)
    assert _errors(d) == [] and _last_turn_pair(d)[1]["failed"] is False
    await d.close()
    await agent.stop()


# ---- 4. session ids, stop(), outputs() after the end (r7_session_ids_and_outputs.py) --------
async def test_an_id_in_use_is_refused_and_stop_ends_every_session():
    earlier = set(threading.enumerate())  # (another test's agent, not stopped yet, is not this one's)

    def vad_threads():
        return [t for t in threading.enumerate() if t.name.startswith("kame-cascade-vad") and t not in earlier]

    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), **{"runtime.max_sessions": 2})
    alice = await agent.open_session("alice")
    with pytest.raises(SessionIdError, match="'alice' is in use"):
        await agent.open_session("alice")
    other = await agent.open_session()
    assert other.id != "alice" and set(agent.sessions) == {"alice", other.id}
    readers = [asyncio.create_task(_drain(s)) for s in (alice, other)]
    await alice.push_audio(np.zeros(1920, np.float32))  # (the VAD thread starts)
    assert vad_threads()
    await agent.stop()
    assert alice._closed and other._closed and not agent.sessions
    for r in readers:
        await asyncio.wait_for(r, 5)
    again = await asyncio.wait_for(_drain(alice), 5)  # outputs() after the end: ends at once
    assert again == []
    assert not vad_threads()
    reopened = await agent.open_session("alice")  # a closed session's id is free again
    assert reopened.id == "alice"
    await agent.stop()


async def _drain(s) -> list:
    return [o async for o in s.outputs()]


async def test_stop_closes_the_sessions_at_once(monkeypatch):
    """Each close waits (CLOSE_GRACE_S) for an STT that never finishes (each session has a reader:
    else nobody would get what it flushes, and close() does not wait): every session's STT sees
    the end of its audio before any of those waits is over."""
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 0.2)
    clock, events = FakeClock(), []

    class StuckSTT(FakeSTT):
        async def stream(self, frames):
            async for _ in frames:
                pass
            events.append("input ended")
            try:
                await asyncio.Event().wait()
            finally:
                events.append("cancelled")
            yield

    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=StuckSTT())
    readers = [asyncio.create_task(_drain(await agent.open_session())) for _ in range(3)]
    await asyncio.sleep(0)
    await agent.stop()
    assert events == ["input ended"] * 3 + ["cancelled"] * 3
    await asyncio.gather(*readers)


# ---- 5. unread outputs are capped, counted ---------------------------------------------------
async def test_unread_outputs_are_capped_and_counted(monkeypatch):
    monkeypatch.setattr(cascade_session, "MAX_PENDING_OUTPUTS", 50)
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock))
    s = await agent.open_session()
    for _ in range(200):  # nobody reads
        clock.advance(0.08)
        await s.push_audio(np.zeros(1920, np.float32))
        for _ in range(10):
            await asyncio.sleep(0)
    assert s._out.qsize() == 50 and s.stats.dropped_outputs > 100
    await s.close()
    out = await _drain(s)
    stats = [o.data for o in out if isinstance(o, Meta) and o.data["type"] == "stats"]
    assert stats and stats[-1]["final"] and stats[-1]["dropped_outputs"] == s.stats.dropped_outputs
    assert isinstance(out[0], AgentAudio) and out[0].t > 10  # the oldest were dropped
    await agent.stop()


# ---- 7. config values and pushed audio ------------------------------------------------------
@pytest.mark.parametrize("setting, message", [
    ("temperature=-1.0", "cascade.temperature: must be >= 0, got -1.0"),
    ("silence_threshold=-3", "cascade.silence_threshold: a sample level (|x| of float audio) in [0, 1), got -3.0"),
    ("silence_threshold=5", "cascade.silence_threshold: a sample level (|x| of float audio) in [0, 1), got 5.0"),
    ("max_segment_words=1", "cascade.max_segment_words: must be >= 2, got 1"),
    ("first_clause_min_words=0", "cascade.first_clause_min_words: must be >= 1, got 0"),
    ("max_tokens=0", "cascade.max_tokens: must be >= 1, got 0"),
    ("barge_in_min_speech=-0.1", "cascade.barge_in_min_speech: must be >= 0, got -0.1"),
    ("end_of_turn_silence=0", "cascade.end_of_turn_silence: must be > 0, got 0.0")])
def test_a_bad_cascade_value_names_its_key_and_value(setting, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"cascade.{setting}"])
    assert str(e.value) == message


@pytest.mark.parametrize("pcm, why", [
    ([0.0] * 1920, "expected a float32 numpy array (mono, 24 kHz, in [-1, 1]), got list"),
    ("hello", "expected a float32 numpy array (mono, 24 kHz, in [-1, 1]), got str"),
    (np.float32(0.5), "expected a float32 numpy array (mono, 24 kHz, in [-1, 1]), got a numpy scalar (float32)"),
    (np.zeros((1920, 2), np.float32), "expected mono audio (1-D), got shape (1920, 2)")])
async def test_pushed_audio_must_be_a_float_numpy_array(pcm, why):
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock))
    s = await agent.open_session()
    d = Driver(clock, s)
    await s.push_audio(pcm)
    await d.step(speech_frame(), frames=1)  # the session goes on: good audio is taken
    assert _errors(d) == [f"bad audio dropped: {why}"] and s.stats.bad_audio == 1
    assert s.stt.frames == 1
    await d.close()
    await agent.stop()


def test_the_reply_parts_name_a_component_by_its_spec():
    from kame.cascade.reply import ReplyParts

    clock = FakeClock()
    parts = ReplyParts(FakeLLM(clock, []), FakeTTS(clock), None, clock, lambda o: None, names={"tts": "piper"})
    assert (parts.name("tts"), parts.name("llm")) == ("piper", "fake-llm")


async def test_cancelling_close_still_closes_and_is_not_swallowed(monkeypatch):
    """A caller that cancels close() (e.g. through wait_for) gets its CancelledError (was: swallowed),
    and the session is closed all the same (final stats, its STT stream cancelled)."""
    monkeypatch.setattr(cascade_session, "CLOSE_GRACE_S", 3600.0)
    clock = FakeClock()

    class StuckSTT(FakeSTT):
        async def stream(self, frames):
            async for _ in frames:
                pass
            await asyncio.Event().wait()  # never flushes
            yield

    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=StuckSTT())
    s = await agent.open_session()
    reader = asyncio.create_task(_drain(s))
    await asyncio.sleep(0)
    closing = asyncio.create_task(s.close())
    for _ in range(5):
        await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    outs = await asyncio.wait_for(reader, 5)
    assert any(isinstance(o, Meta) and o.data.get("type") == "stats" and o.data.get("final") for o in outs)
    assert all(t.done() for t in s._tasks) and not agent.sessions
    await agent.stop()


async def test_audio_queued_for_the_stt_at_close_is_counted():
    """A session closed with no reader stops its STT stream at once: the frames still waiting for
    it are counted in the final stats' dropped_frames (was: lost uncounted)."""
    clock = FakeClock()
    agent, _ = await _agent(clock, FakeLLM(clock, ["Hi."]), FakeTTS(clock), stt=DeafSTT())
    s = await agent.open_session()
    for _ in range(10):  # 0.8 s: not stalled; all of it waits for the deaf stream
        clock.advance(0.08)
        await s.push_audio(np.zeros(1920, np.float32))
    assert s._stt.dropped_frames == 0
    await s.close()
    final = [o.data for o in [o async for o in s.outputs()] if isinstance(o, Meta) and o.data.get("type") == "stats"]
    assert final[-1]["final"] and final[-1]["dropped_frames"] == 10
    await agent.stop()
