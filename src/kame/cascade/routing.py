"""Hybrid routing: which user turns should be answered by the cascade instead of the tandem.

KAME's tandem speaks while it is still predicting, which is right for open conversation but
wrong for answers that must be exact: digits to dictate, code, extracted fields, arithmetic
(the paper leaves these out of its evaluation; the cascade wins there). This classifier looks at
the *final* transcript of the user's turn with keyword and pattern rules — no model, so it is
instant, deterministic and easy to audit:

    from kame.cascade.routing import classify_turn, explain_turn
    classify_turn("what is 17 times 23")                  -> "structured"
    classify_turn("tell me about the roman empire")       -> "open"
    explain_turn("spell your email address")              -> ("structured", ["dictation: spell"])

Rules (a turn is "structured" if any rule fires; the patterns below are the reference):
  arithmetic   number + operator word + number ("17 times 23", "fifteen percent of eighty"),
               digits around + - * / x ^ ("12+5"), "N squared", or calculate/compute/solve/
               square root/sum of/average of/how much is
  numbers      phone/account/order/serial number, zip/postal code, digits, decimal places,
               coordinates, convert/conversion, exchange rate, "how many X are in"
  dictation    spell, dictate, read (it) back, repeat after me, word for word, letter by letter, verbatim
  code         a language name (python, sql, regex, ...) or write/show/give/fix ... code/function/
               script/program/query ("what is the function of the liver" stays open)
  extraction   extract, list all/every, in a table, table of, JSON/CSV/YAML/XML, bullet points,
               format as, itemize

How the tandem runtime uses it (config ``[cascade] hybrid_routing = true``): through
kame.cascade.hybrid.HybridRouter, which calls ``explain_turn`` on each *final* user transcript and,
for "structured", speaks the reply through the cascade path (kame.cascade.reply.ReplyPipeline)
instead of the front-end's output frames; barge-in cancels it. See docs/cascade.md.
"""

from __future__ import annotations

import re
from typing import Literal

Route = Literal["structured", "open"]

_NUM = (r"(?:\d[\d,.]*|zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
        r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|"
        r"fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|billion)")
_WORD_OP = r"(?:plus|minus|times|multiplied by|divided by|over|to the power of|percent of)"
_LANG = r"(?:python|javascript|typescript|java|c\+\+|rust|golang|bash|sql|html|css|regex|regular expression)"

# (rule name, compiled pattern). Patterns run on the lower-cased, whitespace-normalised transcript.
_RULES: list[tuple[str, re.Pattern]] = [
    ("arithmetic: expression", re.compile(rf"\b{_NUM}\s+{_WORD_OP}\s+{_NUM}\b|\d\s*[-+*/x×÷^]\s*\d|"
                                          rf"\b{_NUM}\s+(?:squared|cubed)\b")),
    ("arithmetic: verb", re.compile(r"\b(calculate|compute|solve|evaluate|square root|cube root|"
                                    r"factorial|sum of|product of|average of|how much is)\b")),
    ("numbers: exact value", re.compile(r"\b(phone number|account number|order number|zip code|postal code|"
                                        r"serial number|digits|decimal places|coordinates|"
                                        r"convert|conversion|exchange rate|how many \w+ are in)\b")),
    ("dictation: spell", re.compile(r"\b(spell|spelling|dictate|dictation|read (?:it |that )?back|"
                                    r"repeat after me|word for word|letter by letter|verbatim)\b")),
    ("code", re.compile(rf"\b{_LANG}\b|\b(?:write|show|give|generate|fix|debug)\b.{{0,40}}"
                        r"\b(?:code|function|script|program|query|class|method)\b|\bsource code\b")),
    ("extraction", re.compile(r"\b(extract|list (?:all|every)|in a table|table of|json|csv|yaml|xml|"
                              r"bullet points?|format (?:it |this |that )?as|itemi[sz]e)\b")),
]


def explain_turn(text: str) -> tuple[Route, list[str]]:
    """Classify a final user transcript; also return the names of the rules that fired."""
    t = " ".join(text.lower().split())
    fired = [name for name, pat in _RULES if pat.search(t)]
    return ("structured" if fired else "open"), fired


def classify_turn(text: str) -> Route:
    """"structured" if the expected answer is exact (numbers, code, extraction), else "open"."""
    return explain_turn(text)[0]
