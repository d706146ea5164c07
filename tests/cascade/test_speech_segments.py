"""The cascade's TTS segments (kame.cascade.text): cleaned by the one speech cleaner
(kame.backend.speech_text.speakable), full-width sentence ends, one scan per character.
Was: emoji spoken by name, "3 * 4 = 12 and 5 > 3" said "3 4 = 12 and 5 3", link fragments,
bullet dashes, code-fence languages, table rules and a lone "!!!" sent to the TTS; a CJK reply
was one segment, spoken only when it ended."""

import random

import pytest

from kame.cascade.text import SegmentSplitter, clean_for_speech


def _split(pieces, **kw):
    sp = SegmentSplitter(**kw)
    out = []
    for p in pieces:
        out += sp.feed(p)
    return out + sp.flush()


def _pieces(text, n=7):
    return [text[i:i + n] for i in range(0, len(text), n)]


MARKDOWN = ("# Heading One\n**Bold answer**: the result is 3 * 4 = 12 and 5 > 3.\n- first item\n1. one\n2. two\n"
            "- See [the docs](https://example.com/docs) for more.\n```python\nx = 3 * 4\n```\n"
            "| col a | col b |\n|---|---|\nHave fun 👍🏽 and 👨\u200d👩\u200d👧 time ❤️... !!! ???\nDone 😀.")


def test_markdown_symbols_and_emoji_are_said_or_dropped():
    assert _split(_pieces(MARKDOWN)) == [
        "Heading One.", "Bold answer: the result is 3 times 4 is 12 and 5 is greater than 3.", "first item.",
        "1. one", "2. two",  # (was "1.", "one": a list's number ended a segment)
        "See the docs for more.", "x is 3 times 4", "col a, col b,", "Have fun and time...", "Done."]


@pytest.mark.parametrize("text, said", [
    ("6 * 7 = 42 and 5 > 3, x_max ~ 5 km", "6 times 7 is 42 and 5 is greater than 3, xmax about 5 km"),
    ("thumbs 👍🏽 up", "thumbs up"),
    ("Well, I think that,", "Well, I think that,"),  # (a clause's comma stays)
])
def test_clean_for_speech(text, said):
    assert clean_for_speech(text) == said


@pytest.mark.parametrize("pieces, segments", [
    (["你好。今天", "天气很好！明天呢？", "好的"], ["你好。", "今天天气很好!", "明天呢?", "好的"]),
    (["「はい。」次", "です。"], ["「はい。」", "次です。"]),
    (["真的吗？！", "是的。"], ["真的吗?!", "是的。"]),
])
def test_full_width_sentence_ends_end_a_segment(pieces, segments):
    assert _split(pieces) == segments
    assert _split(list("".join(pieces))) == segments


def test_a_long_cjk_clause_ends_a_segment():
    """(was: a CJK reply with no 。！？ was one segment, spoken at its end) The first segment ends at
    、，； once it holds 10 characters, a later one once it holds max_segment_words (30)."""
    text = "在这个问题上，我们需要考虑很多因素，包括成本、时间和质量；此外还有风险，" + "我们应该仔细地评估每一个方案的优点和缺点，然后再做决定" * 2
    assert _split([text]) == _split(list(text)) == [
        "在这个问题上,我们需要考虑很多因素,", "包括成本、时间和质量;此外还有风险,我们应该仔细地评估每一个方案的优点和缺点,",
        "然后再做决定我们应该仔细地评估每一个方案的优点和缺点,然后再做决定"]  # (27 characters to its ",")


def test_whole_sentences_keep_a_full_width_end():
    sp = SegmentSplitter()
    assert sp.feed("你好。今天") == ["你好。"]
    assert sp.flush(whole_sentences=True) == []  # (unfinished: not said)
    sp = SegmentSplitter()
    sp.feed("今天天气很好。")
    assert sp.flush(whole_sentences=True) == ["今天天气很好。"]


@pytest.mark.parametrize("text, segments", [
    # a sentence ending in a number ends a segment (was: "12. Anything else I can help with?", the TTS
    # waiting a whole further sentence: the "." was taken for a list's number, only spaces before it)
    ("The total you owe is: 12. Anything else I can help with?",
     ["The total you owe is:", "12.", "Anything else I can help with?"]),
    ("Sure. 3. Bring your ID card.", ["Sure.", "3.", "Bring your ID card."]),
    ("42. That is the answer.", ["42. That is the answer."]),  # (the reply's start: a list's number)
    ("Steps:\n1. one\n \n2. two", ["Steps:", "1. one", "2. two"]),  # (a line's start, after a blank line too)
])
def test_a_number_ends_a_sentence_unless_it_starts_a_line(text, segments):
    assert _split([text]) == segments
    assert _split(list(text)) == segments


def test_a_long_bullet_cut_mid_sentence_gets_no_full_stop():
    """(was: "one two three four five six." then "seven eight.": a "." in mid-sentence)"""
    text = "- one two three four five six seven eight.\n- next\n# Heading one two three four five six seven"
    segments = ["one two three four five six", "seven eight.", "next.", "Heading one two three four", "five six seven"]
    assert _split([text], max_segment_words=6) == segments
    assert _split(list(text), max_segment_words=6) == segments
    sp = SegmentSplitter()
    sp.feed("- last item")
    assert sp.flush(whole_sentences=True) == ["last item."]  # (the reply's end is its line's end)


def test_plain_segments_do_not_depend_on_the_pieces():
    """The scan goes on where it stopped (each character looked at once): any pieces give the
    segments of the whole reply."""
    rng = random.Random(1)
    words = ["Well,", "I", "think", "so.", "It", "is", "3.14", "e.g.", "Dr.", "Smith", "-", "--", "well-known",
             "1,000", "a", "b.", "yes!", "no?", "and", "then", "—", "done.\n", "\n"]
    for _ in range(30):
        text = " ".join(rng.choice(words) for _ in range(120))
        whole = _split([text], first_clause_min_words=3, max_segment_words=12)
        for n in (1, 2, 3, 5, 11):
            assert _split(_pieces(text, n), first_clause_min_words=3, max_segment_words=12) == whole
