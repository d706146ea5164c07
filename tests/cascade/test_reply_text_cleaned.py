"""A cascade reply whose LLM text holds a NUL, other control characters or a lone surrogate is
spoken whole, cleaned (kame.backend.llm.base.check_piece); was: piper failed on the NUL
("embedded null character") and the rest of the reply was lost."""

from kame.runtime.base import ErrorEvent
from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeTTS
from .test_session import _agent


class OddLLM:
    """A plugin's LLM (no base class): a reply with a NUL, an escape and a lone surrogate."""

    name = "odd"

    def __init__(self, clock):
        self.clock = clock

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        for piece in ["Hola señor,\x00 ctrl\x01\x1b[31m red.", " Then \ud800 lone", " and the end."]:
            await self.clock.sleep(0.1)
            yield piece


class StrictTTS(FakeTTS):
    """Refuses what piper refuses: a NUL, text UTF-8 cannot encode."""

    async def synthesize(self, text):
        if "\x00" in text:
            raise ValueError("embedded null character")
        text.encode("utf-8")
        async for chunk in super().synthesize(text):
            yield chunk


async def test_a_reply_with_control_characters_and_a_lone_surrogate_is_spoken_whole():
    clock = FakeClock()
    tts = StrictTTS(clock)
    agent, _ = await _agent(clock, OddLLM(clock), tts)
    d = Driver(clock, await agent.open_session())
    d.session.stt.say("how are you", clock.now())
    await d.step(frames=60)
    assert [o.message for o in d.out if isinstance(o, ErrorEvent)] == []
    ended = d.metas("agent_turn")[-1]
    assert ended["failed"] is False
    assert ended["text"] == "Hola señor, ctrl[31m red. Then \ufffd lone and the end."
    spoken = " ".join(tts.texts)
    assert "\x00" not in spoken and "\x1b" not in spoken and "the end." in spoken
    await d.close()
    await agent.stop()


class SplitLLM(OddLLM):
    """A plugin's LLM that yields an emoji's UTF-16 halves in two pieces."""

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        for piece in ["Sure a\ud83d", "\ude00b, done."]:
            await self.clock.sleep(0.1)
            yield piece


async def test_a_character_split_between_two_pieces_is_spoken_whole():
    """Was: "Sure a\\ufffd\\ufffdb, done." (each half cleaned alone)."""
    clock = FakeClock()
    tts = StrictTTS(clock)
    agent, _ = await _agent(clock, SplitLLM(clock), tts)
    d = Driver(clock, await agent.open_session())
    d.session.stt.say("how are you", clock.now())
    await d.step(frames=60)
    assert d.metas("agent_turn")[-1]["text"] == "Sure a\U0001F600b, done."
    assert "\ufffd" not in " ".join(tts.texts) and "a\U0001F600b" in " ".join(tts.texts)
    await d.close()
    await agent.stop()
