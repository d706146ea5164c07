"""A cascade reply whose LLM text holds a NUL, other control characters or a lone surrogate is
spoken whole, cleaned (kame.backend.llm.base.check_piece); was: piper failed on the NUL
("embedded null character") and the rest of the reply was lost."""

import pytest

from kame.runtime.base import ErrorEvent
from kame.runtime.clock import FakeClock

from .fakes import Driver, FakeTTS
from .test_session import _agent


class PiecesLLM:
    """A plugin's LLM (no base class) that yields the reply ``pieces``."""

    name = "odd"

    def __init__(self, clock, pieces: list[str]):
        self.clock, self.pieces = clock, pieces

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        for piece in self.pieces:
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


# (the LLM's pieces, the reply's text, what the TTS must not get, what it must get)
REPLIES = {
    # a NUL, an escape and a lone surrogate
    "control characters and a lone surrogate": (
        ["Hola señor,\x00 ctrl\x01\x1b[31m red.", " Then \ud800 lone", " and the end."],
        "Hola señor, ctrl[31m red. Then \ufffd lone and the end.", ["\x00", "\x1b"], "the end."),
    # an emoji's UTF-16 halves in two pieces (was: "Sure a\ufffd\ufffdb, done.", each half cleaned alone);
    # the text has the emoji, the TTS gets none (it would say its name: kame.backend.speech_text)
    "a character split between two pieces": (
        ["Sure a\ud83d", "\ude00b, done."], "Sure a\U0001F600b, done.", ["\ufffd", "\U0001F600"], "Sure ab, done."),
}


@pytest.mark.parametrize("pieces, text, absent, present", REPLIES.values(), ids=REPLIES.keys())
async def test_a_reply_is_spoken_whole_and_cleaned(pieces, text, absent, present):
    clock = FakeClock()
    tts = StrictTTS(clock)
    agent, _ = await _agent(clock, PiecesLLM(clock, pieces), tts)
    d = Driver(clock, await agent.open_session())
    d.session.stt.say("how are you", clock.now())
    await d.step(frames=60)
    assert [o.message for o in d.out if isinstance(o, ErrorEvent)] == []
    ended = d.metas("agent_turn")[-1]
    assert ended["failed"] is False
    assert ended["text"] == text
    spoken = " ".join(tts.texts)
    assert not [bad for bad in absent if bad in spoken] and present in spoken
    await d.close()
    await agent.stop()
