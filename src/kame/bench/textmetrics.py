"""Text normalisation and word error rate for the benchmarks that score speech recognition
(``kame bench backend`` STT table, ``kame bench codec-quality`` intelligibility).

    ref, hyp = normalize("It costs 25%."), normalize("it costs twenty five percent")
    edit_distance(ref, hyp)        # 0

``normalize``: lower case, hyphens and punctuation dropped, apostrophes removed ("don't" ->
"dont"), thousands separators removed, digits spelled out ("25" -> "twenty five"), "%" ->
"percent" — so a recognizer that writes numbers as digits (whisper) is not charged for it.
"""

from __future__ import annotations

import re

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def say_number(n: int) -> str:
    """English words of a non-negative integer below a million (larger ones stay digits)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + say_number(n % 100))
    if n < 1_000_000:
        return say_number(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + say_number(n % 1000))
    return str(n)


def normalize(text: str) -> list[str]:
    """Lower-case words; digits spelled out, % -> percent, punctuation and hyphens dropped."""
    t = text.lower().replace("%", " percent").replace("-", " ")
    t = re.sub(r"(\d),(\d{3})", r"\1\2", t)
    t = re.sub(r"\d+", lambda m: " " + say_number(int(m.group())) + " ", t)
    t = re.sub(r"[^a-z' ]+", " ", t).replace("'", "")
    return t.split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[-1]

