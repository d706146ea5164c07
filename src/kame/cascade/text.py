"""Streaming segmentation of an LLM reply into TTS-sized pieces, so speech starts early.

    sp = SegmentSplitter(first_clause_min_words=4)
    for piece in llm_stream:
        for seg in sp.feed(piece):   # complete sentences (the first may be a clause)
            tts(seg)
    for seg in sp.flush():           # whatever is left when the stream ends
        tts(seg)

Rules: a segment ends after . ! ? (followed by a space or the end of the stream) or a newline.
The *first* segment may also end at , ; : or a dash (— or –, or a hyphen between spaces: " - ",
" -- ") once it has ``first_clause_min_words`` words (a dash is no word) — the earliest point
where a TTS can say something natural. Text with no punctuation is cut after
``max_segment_words`` words. Decimal points ("3.14") and common abbreviations
("e.g.", "Dr.") do not end a sentence. Markdown symbols and URLs that a TTS would read aloud are dropped.
Where the reply ends (the LLM writing the conversation's next ``user:`` line) is decided before
the splitter, by kame.backend.prompt.ReplyGuard (kame.cascade.reply feeds it what is kept).
"""

from __future__ import annotations

import re

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "approx", "no", "fig", "jr", "sr"}
_CLAUSE_END = ",;:—–"
_SENT_END = ".!?…"
_MARKDOWN = re.compile(r"[*_#`>|~]+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)  # a TTS would spell these out letter by letter


def clean_for_speech(text: str) -> str:
    """Remove URLs and markdown symbols, collapse whitespace (what is left is sent to the TTS)."""
    return re.sub(r"\s+", " ", _MARKDOWN.sub("", _URL.sub("", text))).strip()


class SegmentSplitter:
    def __init__(self, first_clause_min_words: int = 4, max_segment_words: int = 30) -> None:
        self.first_clause_min_words = first_clause_min_words
        self.max_segment_words = max_segment_words
        self._buf = ""
        self._emitted = 0  # segments produced so far

    def feed(self, piece: str) -> list[str]:
        self._buf += piece
        out: list[str] = []
        while True:
            cut = self._find_cut(final=False)
            if cut is None:
                break
            seg, self._buf = self._buf[:cut], self._buf[cut:]
            seg = clean_for_speech(seg)
            if seg:
                out.append(seg)
                self._emitted += 1
        return out

    def flush(self, whole_sentences: bool = False) -> list[str]:
        """The rest of the reply as segments; ``whole_sentences``: without a last piece that does
        not end a sentence (an LLM that failed mid-sentence: its unfinished words are not said)."""
        out = self.feed("")
        seg = clean_for_speech(self._buf)
        self._buf = ""
        if whole_sentences and not seg.endswith(tuple(_SENT_END)):
            return out
        if seg and re.search(r"\w", seg):
            out.append(seg)
            self._emitted += 1
        return out

    def _find_cut(self, final: bool) -> int | None:
        """Index just after the end of the first complete segment in the buffer, or None."""
        buf = self._buf
        words = 0
        in_word = False
        for i, ch in enumerate(buf):
            if ch.isspace():
                in_word = False
            elif not in_word:
                in_word = True
                words += not _is_dash(buf, i)  # (a dash between words is no word)
            if ch == "\n" and buf[:i].strip():
                return i + 1
            nxt = buf[i + 1] if i + 1 < len(buf) else None
            if nxt is None:
                return None  # the next piece may continue this token ("3." + "14")
            if ch in _SENT_END and nxt.isspace():
                if ch == "." and _is_abbreviation_or_number(buf[: i + 1]):
                    continue
                return i + 1
            if (
                (ch in _CLAUSE_END or (ch == "-" and _is_dash(buf, i)))
                and self._emitted == 0
                and words >= self.first_clause_min_words
                and nxt.isspace()
                and not (ch == "," and _is_number_comma(buf, i))
            ):
                return i + 1
            if words >= self.max_segment_words and ch.isspace() and not in_word:
                return i + 1
        return None


def _is_abbreviation_or_number(text: str) -> bool:
    m = re.search(r"(\S+)\.$", text)
    if not m:
        return False
    token = m.group(1).lower().strip("(\"'")
    return token in _ABBREV or (len(token) == 1 and token.isalpha() and token != "i")


def _is_dash(buf: str, i: int) -> bool:
    """``buf[i]`` is in a dash between spaces: " - ", " -- ", " – ", " — " (not "well-known", "-5")."""
    j = i
    while j > 0 and buf[j - 1] in "-–—":
        j -= 1
    k = i
    while k + 1 < len(buf) and buf[k + 1] in "-–—":
        k += 1
    return (buf[i] in "-–—" and (j == 0 or buf[j - 1].isspace())
            and (k + 1 == len(buf) or buf[k + 1].isspace()) and k - j < 2)


def _is_number_comma(buf: str, i: int) -> bool:
    return i > 0 and buf[i - 1].isdigit() and i + 1 < len(buf) and buf[i + 1].isdigit()
