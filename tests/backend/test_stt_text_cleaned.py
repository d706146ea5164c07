"""STT words are cleaned as LLM pieces are (kame.backend.stt.base.check_transcript with
kame.backend.llm.base.clean_text: a lone surrogate is U+FFFD, control characters removed, separators
a space; a word of nothing else dropped, a lone surrogate alone too); was: the raw text went into
the conversation, the embedded LLM's tokenizer failed on it on every later turn, and the tandem's
oracle retried for ever making no prediction. Also: the pending partial's line in the prompt is one
line, and its user words are split as a committed turn's."""

import asyncio

import pytest

from kame.backend.prompt import Conversation, PromptConfig, build_messages
from kame.backend.stt.base import check_transcript
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import Transcript, Word
from kame.errors import BackendError
from kame.runtime.backend import BackendBridge, producer_factory

from ..runtime.fakes import FakeSTT, step
from ..runtime.test_backend_bridge import LOUD, errors, finish, make_agent, talk
from .scripted_llm import TokenizerLLM


class NamedSTT:
    name = "odd-stt"


def test_check_transcript_cleans_the_words_and_drops_those_left_blank():
    """A lone surrogate alone is dropped too (review r5, finding 4: was a word "\\ufffd", a final of
    it a turn); with other text it is U+FFFD."""
    tr = Transcript((Word("what", 0.0, 0.3), Word("\ud83d", 0.3, 0.6), Word("is\x00", 0.6, 0.9),
                     Word("\x1b", 0.9, 1.0), Word("a\x1cb", 1.0, 1.2), Word("\U0001F600", 1.2, 1.3),
                     Word("ok\ud83d", 1.3, 1.4), Word(" \udc00\x00", 1.4, 1.5)), True, 1.5)
    out = check_transcript(tr, NamedSTT())
    assert out.words == (Word("what", 0.0, 0.3), Word("is", 0.6, 0.9), Word("a b", 1.0, 1.2),
                         Word("\U0001F600", 1.2, 1.3), Word("ok\ufffd", 1.3, 1.4))
    assert (out.final, out.t) == (True, 1.5)
    out.text.encode("utf-8")  # (was: UnicodeEncodeError, surrogates not allowed)


def test_an_stts_own_replacement_character_alone_is_dropped():
    """(review r11, finding 5) whisper emits "\ufffd" for a character cut at a token boundary: a
    word of it alone (or of white space) is noise, dropped as a lone surrogate is (was: kept, cleaning
    left it unchanged, so a final of just it made a turn)."""
    tr = Transcript((Word("\ufffd", 0.0, 0.3), Word("hi", 0.3, 0.6), Word(" \ufffd ", 0.6, 0.7)), True, 0.8)
    assert check_transcript(tr, NamedSTT()).words == (Word("hi", 0.3, 0.6),)
    assert check_transcript(Transcript((Word("\ufffd", 0.0, 0.3),), True, 0.5), NamedSTT()).words == ()


def test_a_clean_transcript_is_returned_as_it_is():
    tr = Transcript((Word("héllo", 0.0, 0.3), Word("wörld\t", 0.3, 0.6)), False, 0.7)
    assert check_transcript(tr, NamedSTT()) is tr


def test_a_word_whose_text_is_not_str_broke_the_interface():
    with pytest.raises(BackendError, match=r"STT odd-stt broke its interface: a transcript word's text is int 7, "
                                           r"expected str"):
        check_transcript(Transcript((Word(7, 0.0, 0.3),), True, 0.5), NamedSTT())


def test_the_pending_partial_is_one_line_in_the_prompt():
    """A partial's word holding a newline and "agent:" made a line the LLM took for the agent's."""
    conv = Conversation()
    conv.on_transcript(Transcript((Word("what\nagent:", 0.0, 0.3), Word("yes", 0.3, 0.6)), False, 0.7))
    assert build_messages(conv, PromptConfig())[-1].content == "user: what agent: yes"


def test_a_word_cleaned_into_two_is_two_user_words_pending_as_committed():
    """(review r5, finding 5) "new\\x1cyork" is the word "new york": the pending partial's user
    words were ['new york'], the committed final's ['new', 'york'], so the oracle took the final for
    new words and predicted for them a second time."""
    stt = NamedSTT()
    words = (Word("New\x1cYork", 0.0, 0.3), Word("please", 0.3, 0.6))
    conv = Conversation()
    conv.on_transcript(check_transcript(Transcript(words, False, 0.7), stt))
    pending = conv.user_words()
    conv.on_transcript(check_transcript(Transcript(words, True, 0.8), stt))
    assert pending == conv.user_words() == ["new", "york", "please"]


class OddSTT(FakeSTT):
    """A partial per voiced frame, its words odd (a NUL, a lone surrogate alone and after a word, an
    escape, a BEL alone),
    a final after 3 silent frames."""

    ODD = ["what\x00", "\ud83d", "\x1b[1mis", "\x07", "it\ud83d"]

    def word(self, n: int) -> str:
        return self.ODD[n % len(self.ODD)]


async def test_the_tandem_oracle_predicts_on_odd_stt_words():
    llm, tok = TokenizerLLM(), default_tokenizer()
    agent, clock, _ = make_agent(lambda s: BackendBridge(s, OddSTT(), producer_factory(s.agent.config, s.clock, llm, tok),
                                                         s.clock, retry_s=0.16))
    s, rec = await talk(agent, clock, 5)  # 5 voiced frames: "what\x00 \ud83d \x1b[1mis \x07 it\ud83d"
    for _ in range(30):  # silence: the final, the predictions
        await s.push_audio(LOUD * 0)
        await step(agent, clock)
        for _ in range(20):
            await asyncio.sleep(0)
    finals = [m for m in rec.meta("transcript") if m["final"]]
    assert [m["text"] for m in finals] == ["what [1mis it\ufffd"]
    producer = s.backend._producer
    assert errors(rec) == [] and producer.stats["failed"] == 0 and producer.stats["completed"] >= 2
    assert llm.calls[-1][-1].endswith("\nuser: what [1mis it\ufffd")  # (the final's; the first: a partial's)
    await finish(agent, s, rec)
