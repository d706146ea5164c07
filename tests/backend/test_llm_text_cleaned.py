"""LLM text a tokenizer or TTS cannot take, cleaned at the one gate every piece passes
(kame.backend.llm.base.check_piece): a lone surrogate (an openai stream's "\\ud83d" escape split
from its pair) failed every tandem oracle prediction with SentencePiece's "TypeError: List
elements must be str or bytes"; a NUL failed piper ("embedded null character"). A character whose
halves come in two pieces is joined (kame.backend.llm.base.join_split_char)."""

import asyncio

import pytest

from kame.backend.llm.base import check_piece, collect_reply
from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import ChatMessage, OracleAppend
from kame.runtime.backend import WatchedLLM
from kame.runtime.clock import FakeClock
from kame.runtime.metrics import MetricsLog

from .test_oracle import settle, tr

ODD = ["Paris ", "\ud83d", "\ude00 is ", "the\x00 capital\x01\x1b[0m ", "\ud800 of\x85 France.\r\n"]


class OddLLM:
    """A plugin's LLM (no base class) whose pieces (ODD unless given) hold lone surrogates and
    control characters."""

    name = "odd"

    def __init__(self, pieces=ODD):
        self.pieces = pieces

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        for piece in self.pieces:
            yield piece


@pytest.mark.parametrize("piece, clean", [
    ("plain text, ünïcödé 你好 🎉\n\t\r", "plain text, ünïcödé 你好 🎉\n\t\r"),
    ("ok \ud800 then \udfff fine.", "ok \ufffd then \ufffd fine."),
    ("a pair \ud83d\ude00 joined", "a pair \U0001F600 joined"),
    ("ctrl\x00\x01\x07\x1b[31m\x7f\x9f.", "ctrl[31m."),
    ("one\x0btwo\x0cthree\x1cfour\x85five", "one two three four five"),  # (separators: a space, as speakable)
    ("\x00", ""),
])
def test_check_piece_returns_the_text_cleaned(piece, clean):
    assert check_piece(piece, OddLLM()) == clean
    plain = "nothing to clean"
    assert check_piece(plain, OddLLM()) is plain  # the fast path: the same object


async def test_the_oracle_predicts_from_a_reply_with_lone_surrogates_and_control_characters():
    events = []
    p = OracleProducer(OddLLM(), default_tokenizer(), OraclePolicy(), clock=FakeClock(), metrics=MetricsLog(),
                       on_event=events.append, session="s")
    await p.on_transcript(tr(2))
    await settle()
    assert p.stats["failed"] == 0 and p.stats["completed"] == 1
    text = "".join(e.text for e in events if isinstance(e, OracleAppend))
    assert "Paris" in text and "capital" in text and "France." in text
    await p.aclose()


async def test_the_health_watcher_and_collect_reply_hand_on_the_cleaned_text():
    statuses = []
    watched = WatchedLLM(OddLLM(), lambda ok, err: statuses.append((ok, err)))
    pieces = [x async for x in watched.stream_chat([ChatMessage("user", "hi")])]
    cleaned = "Paris \U0001F600 is the capital[0m \ufffd of  France.\r\n"  # (the pair split: joined)
    assert pieces == ["Paris ", "\U0001F600 is ", *[check_piece(x, None) for x in ODD[3:]]]
    assert "".join(pieces) == cleaned and statuses == [(True, None)]
    reply = await asyncio.wait_for(collect_reply(OddLLM(), [ChatMessage("user", "hi")], timeout_s=5), 5)
    assert reply == cleaned
    reply.encode("utf-8")  # (was: UnicodeEncodeError, surrogates not allowed)


@pytest.mark.parametrize("pieces, reply", [
    (["a\ud83d", "\ude00b"], "a\U0001F600b"),
    (["a\ud83d", "", "\ude00"], "a\U0001F600"),  # (an empty piece between the halves)
    (["a\ud83d", "\ud83d", "\ude00"], "a\ufffd\U0001F600"),  # (a first half without its second)
    (["end\ud83d"], "end\ufffd"),  # (held to the end: handed on, cleaned)
    (["\ude00", "b"], "\ufffdb"),
])
async def test_collect_reply_joins_a_character_split_between_two_pieces(pieces, reply):
    """(was: "a\\ud83d" + "\\ude00b" -> "a\\ufffd\\ufffdb")"""
    assert await asyncio.wait_for(collect_reply(OddLLM(pieces), [ChatMessage("user", "hi")], timeout_s=5), 5) == reply


SPLIT = ["a\ud83d", "\ude00b"]  # a plugin's LLM yielding an emoji's UTF-16 halves as they come


async def test_a_split_character_is_joined_for_the_oracle_and_the_health_watcher():
    """Was: the oracle and WatchedLLM cleaned each piece alone: "a\\ufffd" + "\\ufffdb" (only the
    openai adapter and collect_reply joined them; a plugin's LLM does not)."""
    tok = default_tokenizer()
    # (a split ideograph, U+20000: the oracle's text has no emoji, kame.backend.speech_text, nor U+FFFD)
    split = ["a\ud840", "\udc00b"]
    for llm in (OddLLM(split), WatchedLLM(OddLLM(split), lambda ok, err: None)):
        events = []
        p = OracleProducer(llm, tok, OraclePolicy(), clock=FakeClock(), on_event=events.append, session="s")
        await p.on_transcript(tr(2))
        await settle()
        assert p.stats["completed"] == 1
        ids = [i for e in events if isinstance(e, OracleAppend) for i in e.token_ids]
        assert ids == tok.encode("a\U00020000b") != tok.encode("ab")
        await p.aclose()


async def test_kame_bench_backend_joins_a_split_character(capsys):
    import argparse

    from kame.bench.backend import _bench_llm, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    await _bench_llm(OddLLM(SPLIT), parser.parse_args(["--no-stt", "--prompts", "1"]), default_tokenizer())
    assert "sample reply: 'a\U0001F600b'" in capsys.readouterr().out
