"""Streaming segmentation of an LLM reply into TTS-sized pieces, so speech starts early.

    sp = SegmentSplitter(first_clause_min_words=4)
    for piece in llm_stream:
        for seg in sp.feed(piece):   # complete sentences (the first may be a clause)
            tts(seg)
    for seg in sp.flush():           # whatever is left when the stream ends
        tts(seg)

Rules: a segment ends after . ! ? (followed by a space or the end of the stream), after a
full-width 。！？ (and a closing quote or bracket after it: "「はい。」") or at a newline.
The *first* segment may also end at , ; : or a dash (— or –, or a hyphen between spaces: " - ",
" -- ") once it has ``first_clause_min_words`` words (a dash is no word) — the earliest point
where a TTS can say something natural. Text with no punctuation is cut after
``max_segment_words`` words; CJK text, with no spaces, at a 、，； once the segment holds 10
characters (the first: some 5 words, as the first clause's 4) or ``max_segment_words`` characters
(the others: a clause shorter goes with its sentence; was: a CJK reply with no 。！？ was one
segment, said at its end). Decimal points ("3.14"), common abbreviations
("e.g.", "Dr.") and a list's number at a segment's start ("1. First") do not end a sentence. Each segment is cleaned for the TTS by
kame.backend.speech_text.speakable (clean_for_speech): no markdown, URLs or emoji, symbols said
("3 * 4 = 12" -> "3 times 4 is 12"); a segment with no letter or digit left ("!!!", a table rule)
is not sent. Each piece is scanned once: the splitter's work grows with the reply's length, not
its square.
Where the reply ends (the LLM writing the conversation's next ``user:`` line) is decided before
the splitter, by kame.backend.prompt.ReplyGuard (kame.cascade.reply feeds it what is kept).
"""

from __future__ import annotations

from ..backend.speech_text import (
    CJK_CLAUSE_CHARS, CJK_CLAUSE_MARKS, CJK_CLOSERS, CJK_SENTENCE_ENDS, nonspace_chars, speakable,
)

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "approx", "no", "fig", "jr", "sr"}
_CLAUSE_END = ",;:—–"
_SENT_END = ".!?…"
_WIDE_END, _CLOSE = CJK_SENTENCE_ENDS, CJK_CLOSERS  # (the oracle's text is cut at the same: one set of each)


def clean_for_speech(text: str, line_end: bool = True) -> str:
    """The text a segment sends to the TTS (kame.backend.speech_text.speakable: no markdown, URLs or
    emoji, symbols said; a clause's trailing "," kept). ``line_end=False``: the segment stops
    mid-line (a cut after a sentence, a clause or ``max_segment_words``), so a bullet or heading it
    ends in gets no "." in mid-sentence."""
    return speakable(text, keep_end=True, line_end=line_end)


class SegmentSplitter:
    def __init__(self, first_clause_min_words: int = 4, max_segment_words: int = 30) -> None:
        self.first_clause_min_words = first_clause_min_words
        self.max_segment_words = max_segment_words
        self._buf = ""
        self._emitted = 0  # segments produced so far
        self._line_start = True  # _buf starts a line (the reply's start, or after a cut at a newline)
        # the scan of _buf so far (_find_cut goes on from there: each character is looked at once)
        self._pos, self._words, self._in_word, self._text = 0, 0, False, False

    def feed(self, piece: str) -> list[str]:
        self._buf += piece
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            seg, self._buf = self._buf[:cut], self._buf[cut:]
            self._line_start = seg.endswith("\n")
            self._pos, self._words, self._in_word, self._text = 0, 0, False, False
            self._add(clean_for_speech(seg, line_end=self._line_start), out)
        return out

    def flush(self, whole_sentences: bool = False) -> list[str]:
        """The rest of the reply as segments; ``whole_sentences``: without a last piece that does
        not end a sentence (an LLM that failed mid-sentence: its unfinished words are not said)."""
        out = self.feed("")
        seg = clean_for_speech(self._buf)
        self._buf, self._line_start = "", True
        self._pos, self._words, self._in_word, self._text = 0, 0, False, False
        if whole_sentences and not seg.endswith(tuple(_SENT_END + _WIDE_END)):
            return out
        self._add(seg, out)
        return out

    def _add(self, seg: str, out: list[str]) -> None:
        if any(c.isalnum() for c in seg):  # (not "!!!", nor what cleaning left of a table rule)
            out.append(seg)
            self._emitted += 1

    def _find_cut(self) -> int | None:
        """Index just after the end of the first complete segment in the buffer, or None. The scan
        goes on where the last one stopped (its state in _pos, _words, _in_word, _text)."""
        buf = self._buf
        n = len(buf)
        i, words, in_word, text = self._pos, self._words, self._in_word, self._text
        while i < n:
            ch = buf[i]
            if ch.isspace():
                in_word = False
            elif not in_word:
                if ch in "-–—" and _dash_run_end(buf, i) == n:
                    break  # a dash run at the end: "-" or "-5"? (decided with the next piece)
                in_word = True
                words += not _is_dash(buf, i)  # (a dash between words is no word)
            if ch == "\n" and text:
                return i + 1
            if i + 1 == n:
                break  # (the last character waits: the next piece may continue it, "3." + "14")
            nxt = buf[i + 1]
            text = text or not ch.isspace()
            self._pos, self._words, self._in_word, self._text = i + 1, words, in_word, text
            i += 1
            if ch in _SENT_END and nxt.isspace():
                if ch == "." and _is_abbreviation_or_number(buf, i - 1, self._line_start):
                    continue
                return i
            if ch in _WIDE_END and nxt not in _WIDE_END + _SENT_END + _CLOSE:
                return i
            if ch in _CLOSE and nxt not in _CLOSE and _after_wide_end(buf, i - 1):
                return i
            if (
                (ch in _CLAUSE_END or (ch == "-" and _is_dash(buf, i - 1)))
                and self._emitted == 0
                and words >= self.first_clause_min_words
                and nxt.isspace()
                and not (ch == "," and _is_number_comma(buf, i - 1))
            ):
                return i
            if words >= self.max_segment_words and ch.isspace() and not in_word:
                return i
            if ch in CJK_CLAUSE_MARKS and nonspace_chars(buf[:i]) >= (
                    CJK_CLAUSE_CHARS if self._emitted == 0 else self.max_segment_words):
                return i  # (CJK has no spaces to count words by: its characters, a first clause's or a long one's)
        return None


def _is_abbreviation_or_number(buf: str, i: int, line_start: bool) -> bool:
    """The "." at ``buf[i]`` ends an abbreviation ("e.g.", "Dr.") or a single letter ("A."), or a
    list's number at a line's start ("1. First item"; ``line_start``: ``buf`` starts a line). A
    number after a sentence on its line ends a sentence ("The total is: 12. Anything else?")."""
    j = i
    while j > 0 and not buf[j - 1].isspace() and i - j < 12:  # (longer: no abbreviation)
        j -= 1
    if j == i or (j > 0 and not buf[j - 1].isspace()):
        return False
    token = buf[j:i].lower().strip("(\"'")
    return (token in _ABBREV or (len(token) == 1 and token.isalpha() and token != "i")
            or (token.isdigit() and (j == 0 or buf[:j].isspace()) and (line_start or "\n" in buf[:j])))


def _dash_run_end(buf: str, i: int) -> int:
    k = i
    while k < len(buf) and buf[k] in "-–—" and k - i < 4:
        k += 1
    return k


def _is_dash(buf: str, i: int) -> bool:
    """``buf[i]`` is in a dash between spaces: " - ", " -- ", " – ", " — " (not "well-known", "-5")."""
    j = i
    while j > 0 and buf[j - 1] in "-–—" and i - j < 3:
        j -= 1
    k = i
    while k + 1 < len(buf) and buf[k + 1] in "-–—" and k - i < 3:
        k += 1
    return (buf[i] in "-–—" and (j == 0 or buf[j - 1].isspace())
            and (k + 1 == len(buf) or buf[k + 1].isspace()) and k - j < 2)


def _after_wide_end(buf: str, i: int) -> bool:
    """``buf[i]`` closes a sentence a full-width end ended: "。」", "！）”"."""
    while i > 0 and buf[i] in _CLOSE and i > 0:
        i -= 1
    return buf[i] in _WIDE_END


def _is_number_comma(buf: str, i: int) -> bool:
    return i > 0 and buf[i - 1].isdigit() and i + 1 < len(buf) and buf[i + 1].isdigit()
