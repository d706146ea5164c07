"""Shared pieces of word-timed synthesis (``TTS.synth_words``): the text's tokens, filling in
tokens a synthesizer gave no timing of, trimming silence off word edges, and the final checks.

A token is a whitespace-separated piece of the text (``text.split()``, punctuation attached);
every token gets exactly one TimedWord, whatever the synthesizer made of it ("18" said as one
word, "1,234" as five, two tokens merged into one).
"""

from __future__ import annotations

import difflib
from typing import Sequence

import numpy as np

from .base import TimedWord

_FRAME = 0.010  # seconds per energy frame
_REL_THRESHOLD = 0.02  # a frame is speech above this fraction of the loud frames' RMS (-34 dB)
_ABS_THRESHOLD = 1e-4  # and above this RMS (silence that is not exactly zero)
_MIN_PAUSE = 0.10  # a silence this long is a pause (stop closures are shorter)
_SNAP = 0.05  # a word boundary this close to a pause moves to it


def token_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of ``text.split()``'s tokens, in order."""
    spans, start = [], None
    for i, ch in enumerate(text):
        if ch.isspace():
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans


def fill_starts(starts: Sequence[float | None], weights: Sequence[float], end: float) -> list[float]:
    """Give every token a start time. Tokens without one (the synthesizer reported none) share
    the time between the previous known start and the next one (or ``end``) with the token
    before them, in proportion to ``weights`` (their lengths in characters)."""
    out = [s for s in starts]
    n = len(out)
    i = 0
    while i < n:
        if out[i] is not None:
            i += 1
            continue
        j = i
        while j < n and out[j] is None:
            j += 1
        # tokens i..j-1 have none: they share the span of the known token k before them
        k = i - 1
        t0 = out[k] if k >= 0 else 0.0
        t1 = out[j] if j < n else end
        group = list(range(max(k, 0), j))
        w = np.array([max(float(weights[g]), 1.0) for g in group])
        edges = t0 + (max(t1, t0) - t0) * np.concatenate([[0.0], np.cumsum(w) / w.sum()])
        for g, e in zip(group, edges[:-1]):
            if g >= i:
                out[g] = float(e)
        i = j
    return [float(s) for s in out]  # type: ignore[arg-type]


def speech_frames(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Which 10 ms frames of ``audio`` hold speech (RMS over a threshold relative to the loud
    frames, so a quiet voice is judged like a loud one), and the frame length in samples."""
    hop = max(1, int(round(_FRAME * sample_rate)))
    n = len(audio) // hop + (1 if len(audio) % hop else 0)
    if n == 0:
        return np.zeros(0, bool), hop
    padded = np.zeros(n * hop, np.float32)
    padded[: len(audio)] = audio
    rms = np.sqrt(np.mean(padded.reshape(n, hop).astype(np.float64) ** 2, axis=1))
    loud = float(np.percentile(rms, 95))
    return rms > max(_ABS_THRESHOLD, _REL_THRESHOLD * loud), hop


def pauses(audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """(start, end) seconds of the silences of at least 100 ms in ``audio``."""
    voiced, hop = speech_frames(audio, sample_rate)
    out, i = [], 0
    while i < len(voiced):
        if voiced[i]:
            i += 1
            continue
        j = i
        while j < len(voiced) and not voiced[j]:
            j += 1
        if (j - i) * hop >= _MIN_PAUSE * sample_rate:
            out.append((i * hop / sample_rate, min(j * hop, len(audio)) / sample_rate))
        i = j
    return out


def refine(spans: list[tuple[float, float]], audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """Fit rough (start, end) spans to the audio: a word boundary within 50 ms of a pause moves
    to it (the word before ends where the pause starts, the next starts where it ends: a
    synthesizer's word event can sit a little before or after its pause), then each span loses
    the silence at its edges. Pauses so fall between words, not inside them."""
    spans = list(spans)
    gaps = pauses(audio, sample_rate)
    for i in range(len(spans) - 1):
        (s0, e0), (s1, e1) = spans[i], spans[i + 1]
        if s0 >= e0 or s1 >= e1:  # a token with no sound of its own stays where it is
            continue
        near = [(p0, p1) for p0, p1 in gaps if p0 - _SNAP <= s1 and e0 <= p1 + _SNAP and s0 <= p0 and p1 <= e1]
        if near:
            p0, p1 = max(near, key=lambda p: p[1] - p[0])
            spans[i], spans[i + 1] = (s0, p0), (p1, e1)
    return trim_silence(spans, audio, sample_rate)


def trim_silence(spans: list[tuple[float, float]], audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """Shrink each (start, end) span to its first and last speech frame. A span with no speech
    frame is kept as it is."""
    voiced, hop = speech_frames(audio, sample_rate)
    out = []
    for start, end in spans:
        f0, f1 = int(start * sample_rate) // hop, -(-int(np.ceil(end * sample_rate)) // hop)
        idx = np.flatnonzero(voiced[f0:f1])
        if idx.size == 0:
            out.append((start, end))
            continue
        out.append((max(start, (f0 + idx[0]) * hop / sample_rate), min(end, (f0 + idx[-1] + 1) * hop / sample_rate)))
    return out


def finish(tokens: Sequence[str], spans: Sequence[tuple[float, float]], duration: float) -> list[TimedWord]:
    """TimedWords from spans, clamped to [0, duration], starts non-decreasing and no word past
    the next one's start (float rounding and resampling can leave tiny overlaps)."""
    words: list[TimedWord] = []
    prev = 0.0
    for tok, (start, end) in zip(tokens, spans):
        start = min(max(float(start), prev), duration)
        words.append(TimedWord(tok, start, min(max(float(end), start), duration)))
        prev = start
    for i in range(len(words) - 1):
        if words[i].end > words[i + 1].start:
            words[i] = TimedWord(words[i].word, words[i].start, words[i + 1].start)
    return words


def label_units(units: Sequence[str], token_units: Sequence[Sequence[str]], groups: Sequence[int]) -> list[int]:
    """Which token each spoken unit (a phoneme of the whole utterance) belongs to.

    ``token_units[k]``: the units of token k said on its own; ``groups[i]``: the spoken word
    (between spaces or pauses) unit i is in. The utterance's units are aligned with the tokens'
    concatenated units (a longest-match diff, so context changes such as a lost stress mark or
    two merged words only leave small gaps); an unmatched unit takes the token of a matched
    neighbour in the same spoken word (the one before first), and a spoken word with no match
    at all goes to the token after the one before it (a token said differently in context).
    Labels never decrease."""
    flat, owner = [], []
    for k, tu in enumerate(token_units):
        flat.extend(tu)
        owner.extend([k] * len(tu))
    labels: list[int | None] = [None] * len(units)
    sm = difflib.SequenceMatcher(None, list(units), flat, autojunk=False)
    for a, b, size in sm.get_matching_blocks():
        for d in range(size):
            labels[a + d] = owner[b + d]
    n_tok = len(token_units)
    i = 0
    while i < len(units):
        if labels[i] is not None:
            i += 1
            continue
        j = i
        while j < len(units) and labels[j] is None:
            j += 1
        left = labels[i - 1] if i > 0 else None
        right = labels[j] if j < len(units) else None
        for u in range(i, j):
            if left is not None and groups[u] == groups[i - 1]:
                labels[u] = left
            elif right is not None and groups[u] == groups[j]:
                labels[u] = right
            elif u > i and groups[u] == groups[u - 1]:
                labels[u] = labels[u - 1]  # the rest of an unmatched spoken word
            else:  # an unmatched spoken word: the token after the one before it
                guess = labels[u - 1] + 1 if u > 0 else 0  # type: ignore[operator]
                labels[u] = min(guess, right if right is not None else n_tok - 1, n_tok - 1)
        i = j
    # keep them monotonic (a stray match must not send time backwards)
    out, low = [], 0
    for lab in labels:
        low = max(low, int(lab))  # type: ignore[arg-type]
        out.append(low)
    return out
