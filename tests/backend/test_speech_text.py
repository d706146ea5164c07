"""One cleaner for text that is spoken or fed to the oracle (kame.backend.speech_text): the cascade's
TTS segments, `kame data synth`'s spoken turns and the oracle's text, live and simulated for training.
Was: the cascade spoke emoji by name and ate arithmetic ("3 * 4 = 12" -> "3 4 = 12"), the live
oracle was fed raw markdown and emoji (as <unk>) while training's simulated oracle stripped them,
and that one left skin tones, joiners and U+FE0F behind."""

import asyncio
import random

import pytest

from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.speech_text import SpokenStream, speakable, without_emoji
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import OracleAppend, Transcript, Word
from kame.runtime.clock import FakeClock
from kame.runtime.metrics import MetricsLog
from kame.train.oracle_sim import clean_reply

from .scripted_llm import ScriptedLLM

EMOJI = "Have fun 👍🏽 and 👨\u200d👩\u200d👧 family time ❤️ ok 1️⃣ 🇫🇷."
MARKDOWN = ("**Bold answer**: 3 * 4 = 12 and 5 > 3.\n- first item\n- See [the docs](https://example.com/a_b) now\n"
            "```python\nx = 3 * 4\n```\n| col a | col b |\n|---|---|\nDone 😀.")


@pytest.mark.parametrize("text, said", [
    (EMOJI, "Have fun and family time ok 1."),
    ("3 * 4 = 12 and 5 > 3", "3 times 4 is 12 and 5 is greater than 3"),
    ("x = 3 * 4, x_max ~ 5 km", "x is 3 times 4, xmax about 5 km"),
    ("See [the docs](https://example.com/docs) for more.", "See the docs for more."),
    ("docs](https://example.com/docs) for more.", "docs for more."),  # (a link cut before its text ended)
    ("Read it (https://x.org/a) or at https://x.org.", "Read it or at."),
    ("- first item", "first item."),
    ("```python", ""),
    ("|---|---|", ""),
    ("Call len() on it", "Call len() on it"),  # (not a fill-in blank)
])
def test_speakable_llm_text(text, said):
    assert speakable(text) == said


def test_without_emoji_keeps_a_joiner_between_letters():
    assert without_emoji("क्\u200dष 👍🏽\u200d ok") == "क्\u200dष  ok"


def _stream(pieces, max_words=None):
    s = SpokenStream(max_words)
    return "".join(s.feed(p) for p in pieces) + s.flush()


@pytest.mark.parametrize("text", [MARKDOWN, EMOJI, "'Paris is the capital.'", "The students' books are 'here'",
                                  "Well, I think that, on balance, 3 x 4 = 12 costs $5 million; 20% more"])
def test_a_streamed_reply_is_cleaned_as_the_whole_one(text):
    whole = _stream([text]).strip()
    rng = random.Random(0)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(text)), 6))
        assert _stream([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]).strip() == whole
    assert _stream(list(text)).strip() == whole
    assert whole == clean_reply(text, 1000)


def test_spoken_stream_a_word_goes_out_once_a_space_follows_it_and_words_are_capped():
    s = SpokenStream(6)
    assert s.feed("Sure,") == "" and s.feed(" ") == "Sure, "  # (as the incremental tokenizer would)
    assert s.feed("x = 3 * 4") == "" and s.feed(" and") == ""  # ("x", "3", "4": what follows may join them)
    assert s.feed(" more") == "x is 3 times 4" and s.done and s.flush() == ""  # (6 words)
    assert _stream(["3 * 4 = 12"]) == "3 times 4 is 12"


def test_clean_reply_drops_every_part_of_an_emoji_and_says_symbols():
    assert clean_reply(EMOJI, 30) == "Have fun and family time ok 1."  # (was "Have fun 🏽 and \u200d\u200d ...")
    assert clean_reply("assistant: x = 3 * 4\n- user: and?", 30) == "x is 3 times 4"  # (was "x = 3 4 user: and?")


async def _settle(n=200):
    for _ in range(n):
        await asyncio.sleep(0)


async def test_the_live_oracle_is_fed_what_training_feeds():
    """The producer's OracleAppend text and ids are those of clean_reply (the simulated oracle's
    text the front-end is trained on): no markdown, no emoji as <unk> (id 0)."""
    tok, clock, events = default_tokenizer(), FakeClock(), []
    llm = ScriptedLLM()
    p = OracleProducer(llm, tok, OraclePolicy(), clock=clock, metrics=MetricsLog(), on_event=events.append)
    words = tuple(Word(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate("what is three times four".split()))
    await p.on_transcript(Transcript(words, True, 2.0))
    await _settle()
    raw = MARKDOWN + "\n" + EMOJI
    for i in range(0, len(raw), 7):
        llm.calls[0].send(raw[i:i + 7])
        await _settle(20)
    llm.calls[0].end()
    await _settle()
    ids = [i for e in events if isinstance(e, OracleAppend) for i in e.token_ids]
    assert ids == tok.encode(clean_reply(raw, 1000)) and 0 not in ids
    text = "".join(e.text for e in events if isinstance(e, OracleAppend))
    assert "3 times 4 is 12" in text and not set("*#|`😀👍") & set(text)
    await p.aclose()
