"""An amount with its currency symbol after it ("5€", "10 €", the usual order in European text) is
said as "€5" is: "5 euros" (was: "5", the symbol dropped), streamed or whole (same
CLEANING_VERSION 3 as "€5")."""

from __future__ import annotations

import random

import pytest

from kame.backend.speech_text import SpokenStream, speakable
from kame.train.oracle_sim import clean_reply


@pytest.mark.parametrize("text, said", [
    ("It costs 5€ today.", "It costs 5 euros today."), ("About 10 € each.", "About 10 euros each."),
    ("Only 5£.", "Only 5 pounds."), ("1 € a day, 1£ a week", "1 euro a day, 1 pound a week"),
    ("5,50 € or 1.000,50 €", "5,50 euros or 1.000,50 euros"), ("1,000 € fee", "1,000 euros fee"),
    ("a 2 million € budget, a 3M€ deal, a 5k£ prize", "a 2 million euros budget, a 3 million euros deal, "
     "a 5 thousand pounds prize"),
    ("€5 and 10 € and $3", "5 euros and 10 euros and 3 dollars"),  # (before and after, one rule each)
    ("a € sign", "a sign"),  # (a lone symbol is dropped, as "$" is)
])
def test_an_amount_with_the_symbol_after_it_keeps_its_currency(text, said):
    assert speakable(text) == said


def _stream(pieces, max_words=None):
    s = SpokenStream(max_words)
    return "".join(s.feed(p) for p in pieces) + s.flush()


def test_streamed_as_whole_and_cut_at_the_same_word():
    text = "It costs 5€ today, about 10 € each, or 5,50 € with a 2 million £ budget and 3M€ more."
    whole = _stream([text]).strip()
    assert whole == clean_reply(text, 1000) and "10 euros each" in whole
    rng = random.Random(0)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(text)), 8))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        assert _stream(pieces).strip() == whole
        for n in (3, 4, 6, 7, 11):  # (the cap lands in and around the amounts as training's clean_reply does)
            assert _stream(pieces, n).strip() == clean_reply(text, n)
