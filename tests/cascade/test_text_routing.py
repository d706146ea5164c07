"""Reply segmentation for streaming TTS, and the hybrid-routing classifier."""

import pytest

from kame.cascade.routing import classify_turn, explain_turn
from kame.cascade.text import SegmentSplitter, clean_for_speech


def _split(pieces, **kw):
    sp = SegmentSplitter(**kw)
    out = []
    for p in pieces:
        out += sp.feed(p)
    return out, sp.flush()


def test_sentences_stream_out_as_soon_as_complete():
    sp = SegmentSplitter()
    assert sp.feed("Hello there") == []
    assert sp.feed(".") == []  # "." at the end of a piece may be "3." + "14": wait
    assert sp.feed(" How are") == ["Hello there."]
    assert sp.feed(" you today? Fine") == ["How are you today?"]
    assert sp.flush() == ["Fine"]


def test_first_segment_may_end_at_a_clause_later_ones_do_not():
    out, rest = _split(["Well, I think that, on balance, ", "it is fine, really, yes. ", "Okay, so, next one."],
                       first_clause_min_words=4)
    assert out == ["Well, I think that,", "on balance, it is fine, really, yes."]
    assert rest == ["Okay, so, next one."]


def test_numbers_abbreviations_and_markdown():
    out, rest = _split(["Pi is 3.", "14 roughly, e.g. in Dr. Smith's notes. **Bold** text"], first_clause_min_words=10)
    assert out == ["Pi is 3.14 roughly, e.g. in Dr. Smith's notes."]
    assert rest == ["Bold text"]
    assert clean_for_speech("# Title\n* item `x`") == "Title. item x."  # (headings and bullets: sentences)
    assert clean_for_speech("Find it here: https://example.com/a_b?c=1 or www.x.org/y today.") == "Find it here: or today."


def test_run_on_text_is_cut():
    out, rest = _split(["word " * 25], max_segment_words=10)
    assert [len(s.split()) for s in out] == [10, 10]
    assert rest == ["word word word word word"]


def test_symbol_only_tail_is_dropped():
    assert _split(["Done. ***"])[1] == []


@pytest.mark.parametrize("text,route", [
    ("what is seventeen times twenty three", "structured"),
    ("what's 12 + 5", "structured"),
    ("can you calculate my monthly payment", "structured"),
    ("please spell the word necessary", "structured"),
    ("read back my phone number", "structured"),
    ("write a python function that sorts a list", "structured"),
    ("give me the sql for that", "structured"),
    ("extract the names from this email", "structured"),
    ("convert ten miles to kilometers", "structured"),
    ("tell me about the roman empire", "open"),
    ("what is the function of the liver", "open"),
    ("I take it three times a day", "open"),
    ("my favourite band is twenty-one pilots", "open"),
    ("how was your weekend", "open"),
    ("", "open"),
])
def test_classify_turn(text, route):
    assert classify_turn(text) == route


def test_explain_names_the_rules():
    route, rules = explain_turn("Calculate 3 x 4 and show it in a table")
    assert route == "structured"
    assert set(rules) == {"arithmetic: expression", "arithmetic: verb", "extraction"}

