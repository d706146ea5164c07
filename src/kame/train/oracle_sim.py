"""The simulated oracle of KAME's training data: a user turn's words -> the oracle events of a
training dialogue (kame.train.data.OracleEvent), as KAME made them (arXiv 2510.02327, "Training").

Every ``interval_s`` of the user's turn, once ``min_words`` words were heard, a simulator LLM
predicts the agent's next turn (10-30 words, spoken style) from the conversation so far and the
completeness r = words heard / words in the turn, with the true next turn (``reference``) as a
hint whose use grows with r (``HINT_LEVELS``; level 0 does not show it). At level 5 the true turn
is used as is, with no LLM call: that is always the case at the turn's end (r = 1).

    from kame import registry
    from kame.backend.tokenizer import default_tokenizer
    from kame.train.oracle_sim import SimOracleConfig, simulate_oracle

    llm = registry.create("llm", "openai:gpt-4.1-nano")
    events = await simulate_oracle(user_words=turn, reference="Paris is the capital of France.",
                                   llm=llm, tokenizer=default_tokenizer(),
                                   history=[("user", "Hi."), ("agent", "Hello! What can I do?")],
                                   first_prediction=n, frames=dialogue_frames)
    events.stats.empty, events.next_prediction   # predictions skipped (empty); the next free id
    Dialogue(audio, words, oracle=earlier + events, tokenizer_sha256=default_tokenizer().sha256)

Each kept prediction is a ``reset`` (frame = frame_of(t + delay_s), ``prediction`` a running
id from ``first_prediction``, ``hint`` its level) and one ``append`` at the same frame with the
whole text's ids (``tokenizer.encode(text)``) and the text. The events' frames do not decrease,
so several turns' events concatenated in turn order make a dialogue's oracle.

Without an LLM, ``random_replies`` (RandomReplies; `kame data synth --llm random`) is KAME's
*randomized guidance* (SakanaAI/kame_finetune's ``random`` strategy): every point before the
turn's end gets a reply drawn from other items' true replies (0.5-2x the true reply's tokens, no
two alike in a turn, none of the dialogue's own texts), the turn's end the true reply. A drawn reply's reset says ``hint`` 0 (it
shows nothing of the true one). The front-end learns from it that the newest
prediction is what to say, whatever came before; no LLM call is made, so a set of thousands of
dialogues costs only its speech.

Every reset says ``use_hint``: True for the true reply used as is (the turn's end, level 5),
False for a prediction (an LLM's, or drawn). The training augmentation never skips a true reply,
so each turn of a multi-turn dialogue keeps its own (KAME's data marks each turn's last event so).

Choices (and why):
- Points with the same heard count (a pause in the turn) are all kept, each a fresh prediction:
  KAME's schedule (SakanaAI/kame_finetune's OracleGenerator) polls on time, not on new words.
- The turn-end point is kept even when the turn has fewer than ``min_words`` words: the true
  reply at the end of a one-word turn ("Hello?") is what the oracle should give there.
- Two points at the same frame (the last poll within 80 ms of the turn's end, or a large
  ``delay_s``): only the later (more heard) is kept. oracle_timeline (the stepper's rule) applies
  a reset at the same frame before any token of the earlier one is fed, so the earlier is never
  seen: keeping it would only cost an LLM call and inflate the manifest's prediction and hint
  counts. If the later one comes out empty, the earlier is tried instead.
- Points whose frame is >= ``frames`` are dropped before any LLM call. ``llm=None`` makes only
  the level-5 predictions (the true reply at the turn's end): a dialogue with no simulator.
- The LLM's reply is cleaned to one spoken line (``clean_reply``) and cut to ``max_reply_words``;
  a shorter reply than ``min_reply_words`` is kept (the number is asked for in the prompt). The
  level-5 reference is used as is (not cut: it is the true turn).
- An empty reply after cleaning is skipped with a logged warning, counted in the returned list's
  ``stats.empty``. LLM failures (kame.errors.BackendError, no complete reply within
  ``timeout_s``) raise SimOracleError (a BackendError) naming the prediction's time and level:
  the caller decides per dialogue (retry it, or leave it out).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

from ..backend.llm.base import collect_reply, describe
from ..backend.prompt import LABEL_CLOSE, LABEL_DECOR
from ..backend.speech_text import CLEANING_VERSION, SpokenStream
from ..backend.types import ChatMessage
from ..errors import BackendError, ConfigError
from .data import DataError, OracleEvent, Word, frame_of

log = logging.getLogger(__name__)

# (max r, level, instruction): the first row whose max r >= r gives the level (KAME's table).
# Level 0 shows no hint; level 5 uses the true turn as is (no LLM call).
HINT_LEVELS: tuple[tuple[float, int, str], ...] = (
    (0.5, 0, "No hint: predict the reply from the conversation alone."),
    (0.65, 1, "Use the hint's keywords, but do not follow it closely."),
    (0.8, 2, "Use the hint, but include content different from it."),
    (0.95, 3, "Follow the hint's content, but do not copy it verbatim."),
    (0.99, 4, "Use the hint more directly: stay close to its content and wording."),
    (1.0, 5, "The reply may match the hint exactly."),
)
REFERENCE_LEVEL = HINT_LEVELS[-1][1]  # the true turn is used as is


def hint_level(r: float) -> int:
    """The hint level of completeness ``r`` (words heard / words in the turn, in [0, 1])."""
    if not 0.0 <= r <= 1.0:  # (NaN too)
        raise ValueError(f"completeness r must be in [0, 1] (words heard / words in the turn), got {r!r}")
    return next(level for max_r, level, _ in HINT_LEVELS if r <= max_r)


def instruction(level: int) -> str:
    for _, lv, text in HINT_LEVELS:
        if lv == level:
            return text
    raise ValueError(f"hint level {level!r} is not one of {[lv for _, lv, _ in HINT_LEVELS]}")


LATEST_S = 1e12  # a prediction's time is cut to this: past any dialogue's end (was: --delay 1e308, an OverflowError)


def add_timing_arguments(p) -> None:
    """--interval and --delay, kame data synth's and kame data oracle's: at least a frame between two
    predictions (two on one frame keep only the later; was: 1e-6 ran for minutes, 700 MB)."""
    import argparse

    from ..backend.types import FRAME_S
    from ..cliargs import at_least, more_than

    def interval(text: str) -> float:
        value = more_than(0)(text)  # ("must be > 0, got 0", as before)
        if value < FRAME_S:
            raise argparse.ArgumentTypeError(f"must be >= {FRAME_S:g} (a frame), got {text}")
        return value

    p.add_argument("--interval", type=interval, default=None,
                   help=f"seconds between predictions: {FRAME_S:g} (a frame) or more (default "
                        f"{SimOracleConfig.interval_s:g})")
    p.add_argument("--delay", type=at_least(0, float), default=None,
                   help="seconds each prediction arrives after its words were heard (default 0, as KAME's data)")


@dataclass
class SimOracleConfig:
    interval_s: float = 0.5  # a prediction every this much of the user's turn (from its first word's start)
    min_words: int = 2  # ... once this many words were heard (the turn-end point is always kept)
    min_reply_words: int = 10  # the reply's length asked of the simulator (a shorter one is kept)
    max_reply_words: int = 30  # ... and the cut applied to its reply (not to the level-5 reference)
    delay_s: float = 0.0  # added to each prediction's time (a real back-end's STT + LLM lag); KAME's data uses 0
    temperature: float = 0.7  # the simulator's sampling temperature (repeated points get different replies)
    max_tokens: int = 96  # LLM tokens per reply (30 words with room for a label the cleaning drops)
    timeout_s: float | None = 60.0  # per LLM call, for its whole reply; None = no limit (the LLM's own)

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ConfigError:
            return ConfigError(f"SimOracleConfig.{name} must be {want}, got {getattr(self, name)!r}")

        if not (self.interval_s > 0 and math.isfinite(self.interval_s)):
            raise bad("interval_s", "> 0 seconds and finite")
        if not (self.delay_s >= 0 and math.isfinite(self.delay_s)):
            raise bad("delay_s", ">= 0 seconds and finite")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise bad("timeout_s", "> 0 seconds or None")
        if not self.temperature >= 0:
            raise bad("temperature", ">= 0")
        for name in ("min_words", "min_reply_words", "max_reply_words", "max_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "an int >= 1")
        if self.min_reply_words > self.max_reply_words:
            raise bad("min_reply_words", f"<= max_reply_words ({self.max_reply_words})")


@dataclass
class SimOracleStats:
    points: int = 0  # prediction points in the turn
    past_end: int = 0  # points dropped: their frame >= frames
    superseded: int = 0  # points dropped: a later point has the same frame
    llm_calls: int = 0
    empty: int = 0  # LLM replies empty after cleaning (skipped, warned)
    no_llm: int = 0  # points below level 5 left out: no LLM was given (llm=None)
    kept: int = 0  # predictions made into events
    levels: dict[int, int] = field(default_factory=dict)  # kept predictions per hint level

    def add(self, other: SimOracleStats) -> None:
        """Count ``other``'s in too (a dialogue's turns, summed)."""
        for f in fields(self):
            if f.name == "levels":
                for level, n in other.levels.items():
                    self.levels[level] = self.levels.get(level, 0) + n
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class SimOracleEvents(list):
    """simulate_oracle's events (a list of OracleEvent) with ``stats`` (SimOracleStats) and
    ``next_prediction`` (the first prediction id free for the next turn)."""

    def __init__(self, events=(), stats: SimOracleStats | None = None, next_prediction: int = 0) -> None:
        super().__init__(events)
        self.stats = stats or SimOracleStats()
        self.next_prediction = next_prediction


def points_past_end(events) -> int:
    """The prediction points simulate_dialogue's ``events`` left out at or past the dialogue's end
    (a --delay longer than what follows them); 0 for events without stats (a plain list)."""
    stats = getattr(events, "stats", None)
    return stats.past_end if stats is not None else 0


class SimOracleError(BackendError):
    """The simulator LLM failed on one prediction (the message names its time and level)."""


class RandomReplies:
    """The pool of KAME's randomized guidance: true replies of a set's items, drawn as the
    predictions before a turn's end. ``replies``: the texts (duplicates by token ids, empty ones
    dropped), kept sorted, so the same replies in any order draw the same (kame data oracle's pool,
    in manifest order, draws what kame data synth's, in QA-file order, drew); ``draw`` picks,
    without replacement, replies whose token count is within [min_ratio, max_ratio] x the true
    reply's, never the true reply nor a text in ``exclude``.
    The pool must hold training replies only (a held-out set's replies would leak into training
    as oracle text)."""

    def __init__(self, replies: Sequence[str], tokenizer, *, min_ratio: float = 0.5, max_ratio: float = 2.0) -> None:
        import numpy as np

        if not 0 < min_ratio <= 1 <= max_ratio:
            raise ConfigError(f"RandomReplies: need 0 < min_ratio <= 1 <= max_ratio, got {min_ratio}, {max_ratio}")
        self.tokenizer, self.min_ratio, self.max_ratio = tokenizer, min_ratio, max_ratio
        seen: set[tuple[int, ...]] = set()
        self.texts: list[str] = []
        lengths: list[int] = []
        for text in sorted({" ".join(str(text).split()) for text in replies}):  # (was: in the order given)
            ids = tuple(tokenizer.encode(text)) if text else ()
            if ids and ids not in seen:
                seen.add(ids)
                self.texts.append(text)
                lengths.append(len(ids))
        self.lengths = np.asarray(lengths, np.int64)

    def __len__(self) -> int:
        return len(self.texts)

    def draw(self, n: int, *, reference: str, rng, exclude: Sequence[str] = ()) -> list[str]:
        """``n`` distinct replies for the predictions of a turn whose true reply is ``reference``
        (``rng``: a numpy Generator). DataError when fewer than ``n`` are eligible."""
        import numpy as np

        if n <= 0:
            return []
        length = len(self.tokenizer.encode(reference))
        lo, hi = self.min_ratio * length, self.max_ratio * length
        banned = {" ".join(t.split()) for t in (reference, *exclude)}
        eligible = [i for i in np.flatnonzero((self.lengths >= lo) & (self.lengths <= hi))
                    if self.texts[i] not in banned]
        if len(eligible) < n:
            raise DataError(f"randomized oracle: this turn has {n} prediction points before its end, but only "
                            f"{len(eligible)} of the pool's {len(self)} replies are eligible ({lo:g}-{hi:g} tokens, as "
                            f"the true reply's {length} x {self.min_ratio:g}-{self.max_ratio:g}; none of the "
                            f"dialogue's own texts): a bigger set gives a bigger pool, a longer --interval "
                            f"fewer points")
        return [self.texts[i] for i in rng.choice(eligible, size=n, replace=False)]


def reply_pool(replies: Sequence[str], tokenizer, source: str) -> RandomReplies:
    """`--llm random`'s pool of ``replies`` (``source`` names where they come from), refused
    when it cannot give a turn even one reply."""
    pool = RandomReplies(replies, tokenizer)
    if len(pool) < 2:
        raise DataError(f"--llm random draws the predictions from the other replies of {source}, but it has "
                        f"{len(pool)} distinct one(s): use a bigger set, or --llm none")
    return pool


# ---------------------------------------------------------------------------------------------
# when


def prediction_points(user_words: list[Word], cfg: SimOracleConfig) -> list[tuple[float, int]]:
    """(time in s, words heard by then) of one user turn: times turn_start + k * interval_s
    before the turn's end at which >= min_words were heard (a word is heard once its end <= t,
    and the ones before it are), then the turn's end (its last word's end: all heard, r = 1).
    Points with the same count are all kept (KAME's schedule polls on time)."""
    words = list(user_words)
    if not words:
        return []
    for i in range(1, len(words)):
        if words[i].start < words[i - 1].start:
            raise ValueError(f"user word {i} ({words[i].word!r}) starts at {words[i].start:g} s, before the word "
                             f"before it ({words[i - 1].start:g} s): sort the turn's words by start")
    start, end = words[0].start, max(w.end for w in words)
    out: list[tuple[float, int]] = []
    k, heard = 0, 0
    while (t := start + k * cfg.interval_s) < end:  # (a product, not a running sum: no drift)
        while heard < len(words) and words[heard].end <= t + 1e-9:
            heard += 1
        if heard >= cfg.min_words:
            out.append((t, heard))
        k += 1
    out.append((end, len(words)))
    return out


# ---------------------------------------------------------------------------------------------
# what


SYSTEM_PROMPT = (
    "You simulate a voice assistant that thinks ahead in a live spoken conversation. The user is "
    "still speaking: you get the conversation so far and the part of the user's current turn heard "
    "so far. Predict the assistant's next reply: {min_words} to {max_words} words, natural spoken "
    "English on one line, with no lists, markdown, symbols or emoji. Reply with the predicted reply "
    "only, without a speaker label."
)
LABELS = {"user": "User", "agent": "Assistant"}


def simulator_messages(history: Sequence[tuple[str, str]], heard: list[str], reference: str, r: float, level: int,
                       cfg: SimOracleConfig) -> list[ChatMessage]:
    """The simulator's prompt: a system message (the task, the reply's length) and a user message
    with the earlier turns (``history``: (speaker "user"|"agent", text)), the words heard of the
    current turn with r, and at levels > 0 the reference as a hint with the level's instruction
    (level 0: no reference at all)."""
    lines = history_lines(history)
    parts = ["Conversation so far:\n" + ("\n".join(lines) if lines else "(nothing yet: this is the first turn)"),
             f"The user's current turn, heard so far ({round(100 * r)}% of its words; they may not be done):\n"
             f"User: {' '.join(heard)}"]
    if level > 0:
        hint = " ".join(reference.split())
        parts.append(f"Hint, the assistant's actual next reply (the user does not know it):\n{hint}")
    parts.append(f"{instruction(level)} Write the assistant's next reply now, {cfg.min_reply_words} to "
                 f"{cfg.max_reply_words} words.")
    system = SYSTEM_PROMPT.format(min_words=cfg.min_reply_words, max_words=cfg.max_reply_words)
    return [ChatMessage("system", system), ChatMessage("user", "\n\n".join(parts))]


def history_lines(history: Sequence[tuple[str, str]]) -> list[str]:
    """``history`` as prompt lines ("User: ...", "Assistant: ..."; empty turns left out), checked."""
    lines = []
    for i, turn in enumerate(history):
        if not (isinstance(turn, (tuple, list)) and len(turn) == 2 and turn[0] in LABELS and isinstance(turn[1], str)):
            raise ValueError(f"history turn {i} must be (speaker 'user' or 'agent', text), got {turn!r}")
        if turn[1].strip():
            lines.append(f"{LABELS[turn[0]]}: {' '.join(turn[1].split())}")
    return lines


_AGENT = r"assistant|agent|moshi|kame|ai|bot|response|reply|answer|prediction|predicted reply"
_USER = r"user|human|customer|caller|system|hint"
_DECOR, _CLOSE = re.escape(LABEL_DECOR), re.escape(LABEL_CLOSE)  # (the live ReplyGuard's label markup)
_LABEL = re.compile(rf"^[{_DECOR}\s]*({_AGENT}|{_USER})\s*[{_CLOSE}]*\s*:\s*[{_CLOSE}]*\s*", re.IGNORECASE)
_USER_LABEL = re.compile(rf"^({_USER})$", re.IGNORECASE)


def clean_reply(raw: str, max_words: int) -> str:
    """An LLM's reply as one spoken line: the first line's speaker label dropped ("assistant:",
    "Moshi:", "**Assistant:**"), cut where a new labelled line starts (the model writing the
    conversation on: "User:", "- user:"), then as the live oracle's text is cleaned
    (kame.backend.speech_text.SpokenStream: speakable, bullets and newlines, double quotes, emoji,
    a single quote opening the reply and the one closing it, at most ``max_words`` words). "" if
    nothing is left."""
    stream = SpokenStream(max_words)
    return (stream.feed(_reply_lines(raw)[0]) + stream.flush()).strip()


def _reply_lines(raw: str) -> tuple[str, bool]:
    """clean_reply's lines of ``raw`` before the spoken cleaning (labels dropped, cut at a further
    labelled line), and whether such a line came (the reply is over: more text changes nothing)."""
    kept: list[str] = []
    for line in raw.splitlines():
        m = _LABEL.match(line)
        if m:
            if kept or _USER_LABEL.match(m.group(1)):  # a further turn, or the user's: the reply is over
                return "\n".join(kept), True
            line = line[m.end():]
        if line.strip():
            kept.append(line)
    return "\n".join(kept), False


def _read_enough(text: str, max_words: int) -> bool:
    """Whether clean_reply(``text`` + anything, max_words) is clean_reply(``text``, max_words): the
    reply is over, or the streamed SpokenStream (the live oracle's, not flushed: an unfinished last
    word is not counted, "€1" of "€1" "2") has said max_words words."""
    lines, over = _reply_lines(text)
    spoken = SpokenStream(max_words)
    spoken.feed(lines)
    return over or spoken.done


def stale_cleaning(manifest: Path) -> str | None:
    """What to tell a user whose set (``manifest``; its synth.json, kame data synth's record) was
    cleaned otherwise than this kame cleans (CLEANING_VERSION, the record's "cleaning"; a record
    without one was made before it was recorded): its front-end would learn oracle text the live
    oracle no longer sends. One line naming the `kame data oracle` run that cleans it anew, with
    the record's oracle settings and seed (the oracle's, else synth's: with --llm random, another
    seed drew other predictions), and saying that it makes the predictions anew (an LLM is asked
    again); None: the same cleaning, or no record (a set made otherwise). A damaged record
    (datacmd.read_record's rule): what it says, to remove or fix it (was: nothing said, so a set
    cleaned otherwise trained unwarned)."""
    import shlex

    from .. import registry
    from .datacmd import SETTINGS, read_record

    try:
        doc = read_record(Path(manifest).parent, "so kame train can tell whether its oracle text is cleaned as the "
                                                 "live oracle's is now")
    except DataError as exc:
        return str(exc)
    if doc is None or doc.get("cleaning") == CLEANING_VERSION:
        return None
    made = ("records no cleaning version (made before kame recorded it, or a `kame data oracle` run over it did "
            "not finish)" if "cleaning" not in doc else f"records cleaning version {doc['cleaning']!r}")
    run = ["kame", "data", "oracle", str(manifest)]
    for key, flag in (("llm", "--llm"), ("tokenizer", "--tokenizer"), ("interval_s", "--interval"),
                      ("delay_s", "--delay")):
        if doc.get(key) is not None:
            run += [flag, str(doc[key])]
    seed = doc.get("oracle_seed", doc.get("seed"))
    if seed is not None:
        run += ["--seed", str(seed)]
    # An LLM no built-in scheme makes (a plugin's, or a built-in one a plugin replaced): the record
    # names no plugin, so the command needs the user's --plugin (was: it failed, "unknown llm spec").
    llm, plugin = doc.get("llm"), ""
    if isinstance(llm, str) and llm.strip() and llm not in ("none", "random"):
        scheme = registry.parse_spec(llm)[0]
        if scheme not in registry.schemes("llm") or registry.plugin_scheme("llm", llm):
            plugin = f" (with the --plugin that provides LLM {scheme!r})"
    return (f"{manifest}: its oracle text is not cleaned as the live oracle's is now (its {SETTINGS} {made}; "
            f"this kame's is {CLEANING_VERSION}), so the front-end learns text it will not be sent; run "
            f"`{shlex.join(run)}`{plugin} to clean it anew (it makes the predictions anew, asking the LLM again)")


# ---------------------------------------------------------------------------------------------
# the events


async def simulate_oracle(*, user_words: list[Word], reference: str, llm, tokenizer,
                          history: Sequence[tuple[str, str]] = (), cfg: SimOracleConfig | None = None,
                          first_prediction: int = 0, frames: int | None = None,
                          random_replies: RandomReplies | None = None, rng=None,
                          exclude: Sequence[str] = ()) -> SimOracleEvents:
    """The oracle events of one user turn (module docstring): a reset + append per kept
    prediction, frames not decreasing, each < ``frames`` when given. ``reference`` is the agent's
    true next turn; ``history`` the turns before this one. ``llm=None``: no simulator, only the
    level-5 points (the turn's end: the true reply) make predictions; with ``random_replies``
    (and ``rng``, a numpy Generator) instead of an LLM, the other points get drawn replies
    (randomized guidance), never the history's texts, the turn's own or those in ``exclude``
    (the dialogue's later turns). With ``rng`` and an LLM that takes a seed (``seedable``: the
    embedded one), each point's request is sampled with a seed of its own drawn from ``rng`` (kame
    data synth / oracle: the seed and the dialogue's index), so a rerun gives the same predictions;
    another LLM's (openai:) differ from run to run. Returns a list of OracleEvent with ``stats`` and
    ``next_prediction``. LLM failures raise SimOracleError naming the point."""
    cfg = cfg or SimOracleConfig()
    if random_replies is not None and (llm is not None or rng is None):
        raise ValueError("simulate_oracle: random_replies replaces the LLM (llm=None) and needs rng")
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"reference must be the agent's true next turn (non-empty text), got {reference!r}")
    history_lines(history)  # (checked now, not at the first LLM call)
    words = list(user_words)
    spoken = [w.word for w in words]
    points = prediction_points(words, cfg)
    stats = SimOracleStats(points=len(points))
    # each point's request seed (a seedable LLM), drawn for every point first: the same whatever the replies
    seeds = rng.integers(0, 2**63, len(points)).tolist() if rng is not None and getattr(llm, "seedable", False) \
        else [None] * len(points)
    # (frame, [points at it]) in time order, past-the-end points dropped before any LLM call
    groups: list[tuple[int, list[tuple[float, int, int | None]]]] = []
    for (t, heard), seed in zip(points, seeds):
        f = frame_of(min(t + cfg.delay_s, LATEST_S))
        if frames is not None and f >= frames:
            stats.past_end += 1
        elif groups and groups[-1][0] == f:
            groups[-1][1].append((t, heard, seed))
        else:
            groups.append((f, [(t, heard, seed)]))
    events = SimOracleEvents(stats=stats, next_prediction=first_prediction)
    drawn: list[str] = []
    if random_replies is not None:  # one reply per frame below level 5, drawn at once: no two alike
        n = sum(hint_level(g[-1][1] / len(words)) != REFERENCE_LEVEL for _, g in groups)
        drawn = random_replies.draw(n, reference=reference, rng=rng,
                                    exclude=[t for _, t in history] + [" ".join(spoken), *exclude])
    for f, group in groups:
        text, level = "", 0
        for i, (t, heard, seed) in enumerate(reversed(group)):  # the latest first: it supersedes the others
            r = heard / len(words)
            level = hint_level(r)
            if level == REFERENCE_LEVEL:
                text = reference.strip()
            elif drawn:  # randomized guidance: another item's true reply, showing nothing of this one
                text, level = drawn.pop(0), 0
            elif llm is None:  # no simulator: the true reply at the turn's end only
                stats.no_llm += 1
                continue
            else:
                messages = simulator_messages(history, spoken[:heard], reference, r, level, cfg)
                text = await _predict(llm, messages, cfg, t, level, stats, seed)
            if text and tokenizer.encode(text):
                stats.superseded += len(group) - 1 - i
                break
            stats.empty += 1
            log.warning("simulated oracle: the prediction at %.2f s (hint level %d, %d/%d words heard) is empty "
                        "after cleaning: skipped", t, level, heard, len(words))
            text = ""
        if not text:
            continue
        p = events.next_prediction
        use_hint = level == REFERENCE_LEVEL  # (the true reply as is: never skipped by the augmentation)
        events.append(OracleEvent(f, "reset", prediction=p, hint=level, use_hint=use_hint))
        events.append(OracleEvent(f, "append", ids=list(tokenizer.encode(text)), text=text))
        events.next_prediction = p + 1
        stats.kept += 1
        stats.levels[level] = stats.levels.get(level, 0) + 1
    return events


def answered(turns: Sequence[tuple[str, list[Word], str]]) -> list[tuple[list[Word], str, list[tuple[str, str]]]]:
    """(user turn's words, the agent's reply text, the turns before as (speaker, text)) of each user
    turn of ``turns`` ((speaker, words, text) in order) that an agent turn follows: what gets an
    oracle, and its true reply."""
    return [(words, turns[i + 1][2], [(spk, text) for spk, _, text in turns[:i]])
            for i, (speaker, words, _) in enumerate(turns[:-1]) if speaker == "user" and turns[i + 1][0] == "agent"]


async def simulate_dialogue(turns: Sequence[tuple[str, list[Word], str]], *, llm, tokenizer,
                            cfg: SimOracleConfig | None = None, frames: int | None = None,
                            random_replies: RandomReplies | None = None, rng=None) -> SimOracleEvents:
    """The oracle of a whole dialogue: ``turns`` are (speaker "user"|"agent", words, text) in
    order; every user turn that an agent turn follows gets ``simulate_oracle`` with that agent
    turn's text as the true reply and the turns before as history, prediction ids running on,
    and none of the dialogue's texts among its drawn replies (a later turn's answer would tell
    the front-end what is not asked yet). The events in frame order, with the turns' ``stats``
    summed (``stats.past_end``: the points a delay put at or past the dialogue's end, left out)."""
    texts = [text for _, _, text in turns]
    events: list[OracleEvent] = []
    stats = SimOracleStats()
    next_id = 0
    for words, reply, history in answered(turns):
        sim = await simulate_oracle(user_words=words, reference=reply, llm=llm, tokenizer=tokenizer,
                                    history=history, cfg=cfg, first_prediction=next_id, frames=frames,
                                    random_replies=random_replies, rng=rng, exclude=texts)
        events += sim
        next_id = sim.next_prediction
        stats.add(sim.stats)
    # (stable: with a delay, a turn's may reach past the next's start)
    return SimOracleEvents(sorted(events, key=lambda ev: ev.frame), stats=stats, next_prediction=next_id)


async def _predict(llm, messages: list[ChatMessage], cfg: SimOracleConfig, t: float, level: int,
                   stats: SimOracleStats, seed: int | None = None) -> str:
    """The LLM's cleaned reply; SimOracleError naming the point if it fails or times out."""
    where = f"simulated oracle: the prediction at {t:.2f} s (hint level {level})"
    stats.llm_calls += 1
    try:
        # (reading stops on the live oracle's rule: once its streamed SpokenStream is done, max_reply_words
        # words said, or the reply is over; was: at the raw reply's 35th word, which could cut a kept word in
        # half, "gre" of " gre" "at", then at more cleaned words than kept, the unfinished last piece cleaned
        # as finished: "costs 1" of " €1" "2", live "costs 12"; "visit" of " visit" " https", live "visit.")
        raw = await collect_reply(llm, messages, timeout_s=cfg.timeout_s, max_tokens=cfg.max_tokens,
                                  temperature=cfg.temperature, seed=seed,
                                  enough=lambda text: _read_enough(text, cfg.max_reply_words))
    except asyncio.TimeoutError:
        raise SimOracleError(f"{where}: LLM {describe(llm)} gave no complete reply within {cfg.timeout_s:g} s "
                             f"(SimOracleConfig.timeout_s); retry the dialogue or raise the timeout") from None
    except BackendError as exc:
        raise SimOracleError(f"{where} failed: {exc}") from exc
    return clean_reply(raw, cfg.max_reply_words)
