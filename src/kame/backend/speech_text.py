"""Text to be spoken, or fed to the front-end as the oracle's words: one cleaner for all of it.

An LLM (or a QA set) writes markdown, LaTeX, symbols, URLs and emoji that a TTS reads aloud ("grinning
face", "asterisk") or drops ("3 * 4" -> "3 4"). ``speakable`` turns such text into words a person
says; every path that makes speech or oracle text from written text uses it:

- the cascade's TTS segments (kame.cascade.text.clean_for_speech: ``speakable(seg, keep_end=True,
  line_end=...)``, ``line_end=False`` for a segment cut mid-line);
- `kame data synth`'s spoken turns (kame.train.qa.spoken_turns);
- the oracle's text, live (kame.backend.oracle, streamed through ``SpokenStream``) and simulated for
  training (kame.train.oracle_sim.clean_reply, the same ``SpokenStream`` over the whole reply): what
  the front-end is trained on is what it gets live.

It lives in kame.backend (beside kame.backend.llm.base.without_controls, which it uses) as the
cascade, the oracle and kame.train all import from kame.backend, and none of them from each other.

``speakable`` writes no markdown (headings and bullets become sentences, links their text, code
fences and table rules nothing), no LaTeX (\\frac{a}{b} -> "a over b", x^2 -> "x squared"), no
URLs, no emoji (with their skin-tone modifiers, zero-width joiners, variation selectors and
keycaps; ``without_emoji``), no calculator annotations (<<48/2=24>>), no "####", no control
characters or terminal escapes, and says simple symbols: "48 / 2 = 24" -> "48 divided by 2 is 24",
"5 > 3" -> "5 is greater than 3", "$5" -> "5 dollars" ("€5", "5€", "10 £": euros, pounds),
"$5M" -> "5 million dollars", "20%" -> "20 percent". "/", "-", "<", ">" are operators only in an
equation ("... = 24") or between numbers or single letters ("x - 3", "5 > 3"): a date "12/25/2024",
"24/7", "1/2 cup", a range "9 - 5" or "10:30 - 11:00" stay as written (the TTS reads them),
"Settings > Privacy" is "Settings, Privacy", "10~20" is "10 to 20". Numbers stay digits (the TTS reads them).
"""

from __future__ import annotations

import re
import unicodedata

from .llm.base import without_controls

# the version of the cleaner's output, bumped whenever the text it makes of some reply changes: a set's
# synth.json records the one its oracle text was cleaned with ("cleaning"), and kame train warns when it
# is not this one (kame.train.oracle_sim.stale_cleaning). 1: a set recording none (made before 2);
# 2: "day 😊." -> "day." (was "day ."), "C#" -> "C sharp" (was "C"), CJK cut at its marks; 3: "€5" / "5€" ->
# "5 euros" (£: pounds) (were "5" after an <unk>), and the embedded tokenizer folds Latin accents ("café" ->
# the ids of "cafe"; were <unk>, id 0: kame.backend.tokenizer): the ids of such replies changed; also "Bye <br>." ->
# "Bye." (was "Bye ."), "C#7" / "C#m" -> "C sharp 7" / "C sharp m" (were "Cnumber 7" / "C m"), a CJK part ends at "｡";
# 4: the simulated oracle stops reading the LLM on the live rule, past max_reply_words cleaned words (was: at
# the 35th raw word, so a long reply could end in half a word, "really gre", or with fewer words than the live
# oracle's when the cleaning dropped bullets, emoji or URLs: kame.train.oracle_sim._predict)
CLEANING_VERSION = 4

_CALC = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations
_TAG = re.compile(r"</?(?:br|p|div|span|sup|sub|b|i|em|strong|u|img|a|hr|code|pre|li|ul|ol|table|tr|td|th)"
                  r"(?:\s+[^<>]*=[^<>]*)?\s*/?>")  # HTML tags (<br>, <sup>)
_OPEN = re.compile(r"<<[^<>]*>?\Z|</?[A-Za-z]*(?:\s[^<>]*)?/?\Z")  # one of them, or an annotation, not yet closed
# terminal escapes (colours: "\x1b[31m") whole, then control characters (kame.backend.llm.base.without_controls:
# the separating ones are spaces, the others nothing; was: "is\x07" and "\x1b[31mred" went into the training
# dialogues as they were)
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")
_NUM = r"\$?\d+(?:,\d{3})*(?:\.\d+)?%?"
_OP = r"\s*(?:[-+*/×÷]|(?<=\s)x(?=\s))\s*"
_EQUATION = re.compile(rf"{_NUM}(?:{_OP}{_NUM})+\s*=\s*{_NUM}")
_OP_WORDS = {"+": "plus", "-": "minus", "*": "times", "×": "times", "x": "times", "/": "divided by", "÷": "divided by"}
_LATEX = {"times": "×", "cdot": "×", "div": "÷", "pm": "±", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠",
          "ne": "≠", "approx": "≈", "infty": "infinity", "circ": "°", "degree": "°", "ldots": "...", "cdots": "...",
          "dots": "...", "rightarrow": "→"}
# an operand either side of "-", "<", ">" said as an operator: a number or a single letter ("x - 3", "5 > 3",
# "a < b"); between words or ranges of numbers they are no operator: "10:30 - 11:00", "9 - 5", "Monday - 5pm",
# "Settings > Privacy" (a menu path: a pause), "<3" (dropped); "/" outside an equation stays as written
# (a date "12/25/2024", "24/7", "1/2 cup", "4.5/5": the TTS reads it), "10~20" is "10 to 20"
_LEFT = r"((?<![\w.'’])[A-Za-z]|\d)"  # (its last character)
_LETTER = r"[A-Za-z](?![\w'’])"
_SYMBOLS = [(r"\s*(?:<=|=<)\s*", " ≤ "), (r"\s*>=\s*", " ≥ "), (r"\s*(?:->|→|=>)\s*", " to "),
            (rf"−(?=\d)|(?<![\w.'’])([A-Za-z]) - (?=\d|{_LETTER})|(\d) - (?={_LETTER})", r"\1\2 minus "),
            (r"\s*≤\s*", " is at most "), (r"\s*≥\s*", " is at least "),
            (r"\s*≠\s*", " is not equal to "), (r"\s*≈\s*", " approximately "), (r"\s*±\s*", " plus or minus "),
            (r"(?<=\d)\s*\*\s*(?=\d)", " times "), (r"\s*×\s*", " times "),
            (r"\s*÷\s*", " divided by "), (r"\s*\+\s*", " plus "), (r"\s*=\s*", " is "),
            (r"\s*%", " percent"), (r"\s*°\s*", " degrees "),
            (rf"{_LEFT}\s*<\s*(?=-?\d|{_LETTER})", r"\1 is less than "),
            (rf"{_LEFT}\s*>\s*(?=-?\d|{_LETTER})", r"\1 is greater than "), (r"(?<=\w)\s*>\s*(?=\w)", ", "),
            (r"(?<!\S)<3+(?!\S)", " "), (r"\s*&\s*", " and "),
            (r"(?<=\d)\s*~\s*(?=\d)", " to "), (r"(?<!\S)~\s*(?=\d)|~(?=\d)", "about "),
            (r"(?<![\w#])([A-Za-z])#(?![\w#])", r"\1 sharp"),
            (r"(?<![\w#])([A-Za-z])#(?=\d|m(?![A-Za-z]))", r"\1 sharp "),
            (r"(?<![A-Za-z])#(?=\d)", "number ")]  # "C#", "F#", "A#"; "C#7", "C#m" (chords): "C sharp 7", "C sharp m"
# a URL (a TTS spells it out letter by letter), with the "](...)" of a link whose text was cut off
# before it; its last character is no sentence's end ("see https://x.org." keeps the ".")
_URL_BODY = r"(?:https?://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"]"
_URL = re.compile(rf"\]?\(\s*{_URL_BODY}\s*\)|{_URL_BODY}", re.I)
# parts of an emoji that are no symbol themselves: variation selectors, the keycap, skin tones, tags
_EMOJI_PARTS = re.compile("[\ufe0e\ufe0f\u20e3\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f]")


def without_emoji(text: str) -> str:
    """``text`` without emoji and other pictographs (Unicode category So: "😀", "👍", "❤", "★",
    "✓", flags), private-use and surrogate characters, with the parts of an emoji sequence:
    skin-tone modifiers, zero-width joiners between emoji ("👨‍👩‍👧"), variation selectors
    (U+FE0F), keycaps and tags. A zero-width joiner between letters (Indic, Persian) stays."""
    out: list[str] = []
    after_emoji = False
    text = _EMOJI_PARTS.sub("", text)
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in ("So", "Co", "Cs"):
            after_emoji = True
            continue
        if ch == "\u200d" and (after_emoji or unicodedata.category(text[i + 1:i + 2] or " ") == "So"):
            continue
        after_emoji = False
        out.append(ch)
    return "".join(out)


def _say_equation(m: re.Match) -> str:  # "48/2 = 24" -> "48 divided by 2 is 24"
    said = re.sub(_OP, lambda o: f" {_OP_WORDS[o.group().strip()]} ", m.group())
    return re.sub(r"\s*=\s*", " is ", said)


_SCALES = {"k": "thousand", "K": "thousand", "M": "million", "B": "billion"}  # "$5k", "$5M", "$2.5B"


_CURRENCIES = {"$": "dollar", "€": "euro", "£": "pound"}  # "$5" -> "5 dollars", "€5" -> "5 euros", "£1" -> "1 pound"


def _money(m: re.Match) -> str:
    return _say_money(_CURRENCIES[m.group(1)], m.group(2), m.group(3) or _SCALES.get(m.group(4)))


def _money_after(m: re.Match) -> str:
    """An amount with its symbol after it ("5€", "10 €"), said as "€5" is."""
    return _say_money(_CURRENCIES[m.group(3)], m.group(1), _SCALES.get(m.group(2), m.group(2)))


def _say_money(unit: str, amount: str, scale: str | None) -> str:
    if scale:
        return f"{amount} {scale} {unit}s"
    return f"{amount} {unit}" if amount == "1" else f"{amount} {unit}s"


def _latex(s: str) -> str:
    s = re.sub(r"\$\$(.+?)\$\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", lambda m: next(g for g in m.groups() if g is not None),
               s, flags=re.DOTALL)
    # a $...$ span is math when it holds LaTeX or is one symbol ("$x$"); "$5 and $3" is money
    s = re.sub(r"\$([^$\s](?:[^$\n]*?[^$\s])?)\$", lambda m: m.group(1) if re.search(r"[\\^_{}]", m.group(1))
               or re.fullmatch(r"[A-Za-z]\w*'?", m.group(1)) else m.group(0), s)
    s = re.sub(r"\^\s*\{?\\circ\}?", "°", s)
    for _ in range(4):  # nested fractions and roots, innermost first
        s = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r" \1 over \2 ", s)
        s = re.sub(r"\\sqrt\s*\{([^{}]*)\}", r" the square root of \1 ", s)
        s = re.sub(r"\\(?:text|mathrm|mathbf|mathit|textbf|textit|operatorname|boxed)\s*\{([^{}]*)\}", r"\1", s)
    # not x^2.5 nor x^23; and the space after the exponent stays ("x^2 when")
    s = re.sub(r"\^\s*(?:\{\s*2\s*\}|2)(?!\d|\.\d)", " squared", s)
    s = re.sub(r"\^\s*(?:\{\s*3\s*\}|3)(?!\d|\.\d)", " cubed", s)
    s = re.sub(r"\^\s*(?:\{([^{}]*)\}|(-?\w+))", lambda m: f" to the power of {m.group(1) or m.group(2)}", s)
    s = re.sub(r"(?<=\w)_\s*(?:\{([^{}]*)\}|(\w))", lambda m: m.group(1) or m.group(2), s)
    s = re.sub(r"\\(left|right|displaystyle|quad|qquad|[,;!: ])", " ", s)
    s = re.sub(r"\\([%$&#_])", r"\1", s)
    s = re.sub(r"\\([A-Za-z]+)", lambda m: f" {_LATEX.get(m.group(1), m.group(1))} ", s)
    return s.replace("{", "").replace("}", "").replace("\\", " ")


def _markdown(s: str, line_end: bool) -> str:
    s = re.sub(r"```[^\n]*|`", "", s)
    s = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", s)
    s = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", s)
    s = _TAG.sub(" ", s)
    s = re.sub(r"(?m)(?<=[\w)])[ \t]*\n(?=\s*[-*+•]\s)", ".\n", s)   # the line before a list ends
    s = re.sub(r"(?m)^\s{0,3}#{1,6}\s*$", "", s)                 # GSM8K's "####" (its number stays)
    # headings and bullets: one sentence each, at their line's end (not line_end: the text stops mid-line)
    s = re.sub(r"(?m)^(?:\s{0,3}#{1,6}|\s*[-*+•])\s+(.*?)[ \t]*$", lambda m: m.group(1) + (
        "" if m.group(1)[-1:] in ".!?:;" or (not line_end and m.end() == len(s)) else "."), s)
    s = re.sub(r"#{2,}", " ", s)
    s = re.sub(r"(?m)^\s*\|?[\s:|-]*-{3,}[\s:|-]*$", "", s)       # table rules
    s = re.sub(r"\s*\|\s*", ", ", s)
    s = re.sub(r"(\*\*|__)(.+?)\1", r"\2", s)
    return re.sub(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])", r"\1", s)


def speakable(text: str, *, lines: bool = False, keep_end: bool = False, line_end: bool = True) -> str:
    """`text` as one line a TTS can speak (module docstring), without control characters or
    terminal escapes. `lines=True`: each line is a sentence (GSM8K's solutions); otherwise a line
    break inside a sentence is a space. `keep_end=True`: a trailing "," or ";" stays (a clause's
    end: the cascade's first segment, a piece of a streamed reply); otherwise it is stripped.
    `line_end=False`: `text` stops mid-line (a cascade segment cut after its 30th word), so a bullet
    or heading there is not made a sentence (no "." in mid-sentence)."""
    s = without_controls(_ESCAPE.sub("", text))
    s = _CALC.sub("", s)
    s = s.replace("²", "^2").replace("³", "^3")
    s = re.sub("[\u2460-\u2473]", lambda m: f" {ord(m.group()) - 0x245F},", s)  # ①② (statements) -> "1, 2,"
    s = re.sub(r"_{3,}|(?<![\w)\]])\(\s*\)|（\s*）", " blank ", s)   # fill-in blanks: "encourage ____" (not "len()")
    s = unicodedata.normalize("NFKC", s).replace("⁄", "/").replace("\r", "")
    s = _latex(_URL.sub("", _markdown(s, line_end)))
    if lines:
        s = "\n".join(x if re.search(r"[.!?:;]\s*$", x) or not x.strip() else x.rstrip() + "."
                      for x in s.split("\n"))
    s = re.sub(r"(?<=\w)-\n(?=[a-z])", "-", s)                   # "ball-\npoint" -> "ball-point"
    s = re.sub(r"(?<=[\w)\"'])[ \t]*\n\s*(?=[A-Z])", ". ", s)    # a title line before a sentence
    s = re.sub(r"\s*\n\s*", " ", s)
    s = re.sub(r"(?<![\w'])\((\s*[\d.,$%]+(?:\s*[-+*/×÷^]\s*[\d.,$%]+)*\s*)\)", r"\1", s)  # "(215/180) × 100"
    s = _EQUATION.sub(_say_equation, s)
    for pattern, words in _SYMBOLS:
        s = re.sub(pattern, words, s)
    s = re.sub(r"([$€£])\s?(\d+(?:,\d{3})*(?:\.\d+)?)(?:\s+(thousand|million|billion|trillion)\b|([kKMB])\b)?",
               _money, s)
    s = re.sub(r"(?<![\d.,])(\d+(?:[.,]\d+)*)(?:\s?(thousand|million|billion|trillion|[kKMB]))?\s?([€£])",
               _money_after, s)  # "5€", "10 €", "5,50 €", "2 million £" (the usual order in European text)
    s = without_emoji(s)
    s = re.sub(r"[*_^$€£#\\{}<>\[\]~]", " ", s)
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    s = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", s)
    s = re.sub(r"[,;:]\s*([.!?])", r"\1", s)
    s = re.sub(r"(?<!\.)\.\.(?!\.)", ".", s)
    s = s.lstrip(" ,;")
    return s.rstrip() if keep_end else s.rstrip(" ,;")


# -- the oracle's text, streamed -----------------------------------------------------------------

# a word a reply can be cut after (once a space and a word that says something follow it): letters and digits with a letter (an
# apostrophe inside, a mark after), not a number ("3 * 4 = 12", "$5 million" stay whole) nor a lone
# "x" ("3 x 4 = 12"); what follows is cleaned after it ("x = 3" -> "x" + "is 3")
_PLAIN = re.compile(r"(?![xX]\Z)(?=[^\W_]*[^\W\d_])[^\W_]+(?:['’][^\W_]+)?[,.;:!?]?")
# CJK's marks (the cascade's segmenter, kame.cascade.text, cuts at the same: one set of each)
CJK_CLAUSE_MARKS = "、，；"
CJK_SENTENCE_ENDS = "。！？｡"  # (no space follows them; "｡" is the half-width "。")
CJK_CLOSERS = "」』）】〕》〉”’\"')"  # what may close a sentence after one: "はい。」"
_CJK_MARKS = CJK_CLAUSE_MARKS + CJK_SENTENCE_ENDS
# a word: what lies between spaces, or a CJK run to its mark, "因素，", "はい。」" (CJK has no spaces)
_WORD = re.compile(rf"[^\s{_CJK_MARKS}]*(?:[{CJK_CLAUSE_MARKS}]|[{CJK_SENTENCE_ENDS}]+[{re.escape(CJK_CLOSERS)}]*)"
                   rf"|[^\s{_CJK_MARKS}]+")
_CJK_END = re.compile(f"[{CJK_SENTENCE_ENDS}]")


def nonspace_chars(text: str) -> int:
    """How many characters ``text`` holds, spaces not counted, whatever its script (a CJK part's length:
    CJK has no words to count)."""
    return len("".join(text.split()))


# a CJK part goes out at a clause mark once it holds this many characters (not spaces): a part of 10
# characters is some 5 words, about the 4 words after which the cascade's first segment may end at a
# clause; a shorter one is a list's item ("成本、时间") or a lead-in ("但是，"), said with what follows
CJK_CLAUSE_CHARS = 10
_URL_START = re.compile(r"[\](]*(?:https?:|www\.)", re.I)
_BULLET = re.compile(r"^\s*(?:[-*+•>#]+|\d+[.)])\s+")  # a line's bullet, heading mark or number ("1.")
_QUOTES = str.maketrans("", "", "\"“”„«»")


def _says(word: str, whole: bool) -> bool | None:
    """Whether ``word`` says something: a letter or digit outside a URL, an HTML tag or a calculator
    annotation (cleaning drops them: "Bye <br>." is "Bye.", was "Bye ."); ``whole``: the
    word ended (None: not known yet, "http" may go on to a URL, "-<b" to a tag: the answer is the
    same whatever follows, as the whole reply's)."""
    url = _URL_START.match(word)
    if not whole and not url:
        bare = word.lstrip("](").lower()
        url = bare and ("https://".startswith(bare) or "www.".startswith(bare))
    if url:
        return any(c.isalnum() for c in _URL.sub("", word)) if whole else None
    rest = _TAG.sub("", _CALC.sub("", word))
    if not whole and (still := _OPEN.search(rest)):  # (what follows may close it: "<b" + "r>")
        rest = rest[:still.start()]
    return True if any(c.isalnum() for c in rest) else (False if whole else None)


class SpokenStream:
    """A reply streamed as one spoken line (``speakable``), as the oracle's text: pieces in, text
    out as soon as it is decided. Each line's bullet, heading mark or number is dropped, lines are
    joined with a space, double quotes dropped, a single quote opening the reply dropped (and the
    one closing it: 'Paris.' -> Paris.), at most ``max_words`` words (``done`` then; None: no cap).
    A line is cleaned in parts, cut after a word with letters (_PLAIN: "the", "that,", not "3",
    "$5", "**bold") once a space and a word that says something (a letter or digit outside a URL)
    follow it: an LLM's piece brings its space with its word (" day"), so a word goes out about
    when the words alone would (the incremental tokenizer's), and a sentence's end after an emoji
    or URL stays on its word ("day 😊." -> "day.", was "day ."; "day 😊 see" -> "day see"). A CJK
    line, with no spaces, is cut after 。！？ (and a closing quote) and after 、，； once its part
    holds CJK_CLAUSE_CHARS characters, with a space after the part (was: said whole at its line's
    end). A part is cleaned after the word before it ("x" + " = 3" -> "is 3"). The parts depend on
    the text alone, never on how it was streamed: a reply fed in any pieces gives the same text as
    fed whole (the simulated oracle does: kame.train.oracle_sim.clean_reply), but for whitespace at
    its end. Each word is looked at once (a reply with no space, CJK, is not rescanned on every
    piece, nor is the text after a word that waits on what follows, an emoji run, a URL, nor a run
    after a closer that ends no sentence, "a)" "「あ」")."""

    def __init__(self, max_words: int | None = None) -> None:
        self.max_words = max_words
        self.done = False
        self._buf = ""  # the current line from the last cut on
        self._closers = 0  # how many CJK_CLOSERS end _buf (the closer check looks at its end only)
        self._scan = 0  # where in _buf the words not yet looked at start (each is looked at once)
        self._before = None  # the word before _buf on its line (None: _buf starts the line)
        self._words = 0
        self._started = False  # some text went out
        self._quoted = False  # the reply started with a single quote (dropped)
        self._quote = ""  # a closing quote held back: the reply's end (dropped) or not (said)
        # a word waits for the next to begin or say something: "" not; "url" (a URL's start: decided when it
        # ends), "silent" (nothing said yet, no "<": decided when it ends or says something), "any" (any
        # piece may decide it)
        self._waiting = ""

    def feed(self, piece: str) -> str:
        if self.done:
            return ""
        ended = self._buf[-1:] + piece  # (a CJK mark the piece's first character follows ends a word)
        # (a closer after a sentence's end, "。」" + "と", ends a word; one after anything else, "a)" + "b", not:
        # was rescanned on every piece, the run after "a)" too)
        # (the character before _buf's closing run, "" if none: was _buf.rstrip(CJK_CLOSERS), the whole
        # buffer on every piece after a closer, quadratic on a run: "はい。" + "」" * 20 000)
        k = len(self._buf) - self._closers
        closed = ended[:1] != "" and ended[0] in CJK_CLOSERS and self._buf[k - 1:k] in CJK_SENTENCE_ENDS
        self._buf += piece
        body = piece.rstrip(CJK_CLOSERS)
        self._closers = len(piece) - len(body) + (0 if body else self._closers)
        if not any(c.isspace() or c in _CJK_MARKS for c in ended) and not closed \
                and (not self._waiting or self._waiting == "url"
                     or (self._waiting == "silent" and not any(c.isalnum() for c in piece))):
            # (no word ended, no line: nothing to cut; nor was what a word waits on decided: the text after
            # it is not rescanned on every piece of an emoji run)
            return ""
        out: list[str] = []
        self._waiting = ""
        while not self.done:
            nl = self._buf.find("\n", self._scan)
            end = len(self._buf) if nl < 0 else nl  # (the current line is _buf[:end])
            start = 0
            for m in _WORD.finditer(self._buf, self._scan, end):
                if m.end() == end:
                    break  # (the line's last word: it may go on, or is said with the line's end)
                cut = self._cuts_after(m, start, end, nl >= 0)
                if cut is None:  # (the next word may say something or not: decided with more text)
                    break
                self._scan = m.end()
                if cut:
                    out.append(self._say(self._buf[start:m.end()]))
                    start, self._before = m.end(), m.group()
                    if self.done:
                        break
            if nl < 0 or self.done:
                self._buf, self._scan = self._buf[start:], self._scan - start
                self._closers = min(self._closers, len(self._buf))
                break
            out.append(self._say(self._buf[start:nl]))
            self._buf, self._before, self._scan = self._buf[nl + 1:], None, 0
            self._closers = min(self._closers, len(self._buf))
        return "".join(out)

    def _cuts_after(self, m: re.Match, start: int, end: int, line_ended: bool) -> bool | None:
        """Whether the part goes out after the word ``m`` (something follows it on its line): after
        a plain word (_PLAIN) or a CJK run to a sentence end, or to a clause mark once the part is
        CJK_CLAUSE_CHARS characters long, and only once the next word says something (a letter or digit
        outside a URL): "day 😊." and "see https://x.org." go out whole, their mark after the word
        (was: "day ."); None: not known yet (the next word has not begun, or may still)."""
        word = m.group()
        if word[-1] in CJK_CLAUSE_MARKS:
            if nonspace_chars(self._buf[start:m.end()]) < CJK_CLAUSE_CHARS:
                return False
        elif not (_PLAIN.fullmatch(word) or _CJK_END.search(word)):
            return False
        nxt = _WORD.search(self._buf, m.end(), end)
        if nxt is None:  # (only spaces after it on its line)
            self._waiting = "" if line_ended else "any"
            return True if line_ended else None
        says = _says(nxt.group(), nxt.end() < end or line_ended)
        if says is None:  # (what decides it: feed skips the pieces that cannot)
            word = nxt.group()
            self._waiting = ("url" if _URL_START.match(word) else
                             "silent" if not any(c.isalnum() or c == "<" for c in word) else "any")
        return says

    def flush(self) -> str:
        """The rest, at the reply's end (a quote closing a quoted reply dropped)."""
        said = "" if self.done else self._say(self._buf, last=True)
        self._buf, self._quote, self.done, self._closers = "", "", True, 0  # (a quote held only to be dropped)
        return said

    def _say(self, part: str, last: bool = False) -> str:
        if self._before is None:
            text = speakable(_BULLET.sub("", part), keep_end=True)
        else:  # (cleaned after the word before it, then that word's own text taken off)
            before = speakable(self._before, keep_end=True)
            text = speakable(self._before + part, keep_end=True)
            text = text[len(before):] if text.startswith(before) else speakable(part, keep_end=True)
            text = text.lstrip(" ,;:")  # (what went out ended with a space: "a | b" -> "a" + "b", not "a , b")
        text = text.translate(_QUOTES).strip()
        if not any(c.isalnum() for c in text):  # (a sentence's end after the word before it is kept: "a <br>.")
            mark = "".join(c for c in text if c in ".!?") if self._started and self._before is not None else ""
            if not mark:
                return ""
            held, self._quote = ("" if last else self._quote.rstrip()), ""  # ("'Paris' 😊." ends "Paris.")
            return held + mark + ("" if last else " ")
        if not self._started and text[0] in "'‘":
            self._quoted, text = True, text[1:].lstrip()
        words = text.split()
        if self.max_words is not None and self._words + len(words) >= self.max_words:
            words, self.done = words[:self.max_words - self._words], True
        self._words += len(words)
        text, held = " ".join(words), self._quote
        self._started, self._quote = True, ""
        if self._quoted and text[-1] in "'’":  # (said if more follows: "'here' and" ...)
            text, self._quote = text[:-1], text[-1] + " "
        return held + text + ("" if self._quote or last or self.done else " ")
