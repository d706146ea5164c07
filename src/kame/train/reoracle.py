"""`kame data oracle`: simulate the oracle of dialogues that already exist, keeping their audio.

    kame data synth qa.jsonl -o data/qa --llm none                # speech only (fast)
    kame data oracle data/qa --llm random                         # then KAME's randomized guidance
    kame data oracle data/qa --llm openai:gpt-4.1-nano --jobs 8   # or a simulator LLM's predictions

Speech and codes are what a training set costs (the codes cache: ~1.3 s of encoding per 7.5 s
dialogue with the embedded codec); the oracle is the part one wants to change (another simulator,
interval, delay or seed). This rewrites each dialogue's oracle events in its dialogue.json
(``kame.train.data.write_meta``): audio.wav and codes.npz stay as they are, and the manifest is
written again (its prediction counts and hint levels).

Turns come from the words. Each speaker's own words make spurts: cut at a pause of SPURT_GAP_S
or more, at a pause in which the other speaker says a whole word, and at one in which the other
speaker starts more than a backchannel (they took the turn). A backchannel ("uh-huh", "yeah",
"right" said while the other speaker talks) is a spurt of at most BACKCHANNEL_MAX_WORDS words
spanning at most BACKCHANNEL_MAX_S seconds (first word's start to last word's end) that lies
inside a spurt of the other speaker (which starts before it and ends after it). Backchannels are
left out (not a turn, not in any text); the other spurts in start order are the turns, a
speaker's spurts one after another one turn (so a turn's words stay in start order). So a user's
backchannel neither gets an oracle nor cuts the agent's reply in two, an agent's does not split
the user's turn, and a short turn the other speaker answers early, over its last words, is still
a turn. A short spurt in a pause of the other's speech (overlapping none of their words) is a
turn (timing alone cannot tell it from a short answer); the few words an interrupted speaker says
over an interruption that began in a pause between their words are left out like a backchannel.
Synthesized dialogues (`kame data synth`) never overlap, so they have no backchannels. Every
user turn answered by an agent turn gets the simulated oracle of kame.train.oracle_sim, with the
agent turn's words as the true reply and the turns before as the history (a multi-turn dialogue,
a ``kame run`` recording too, gets one oracle per answered turn, its prediction ids running on).
``--llm random`` draws the predictions before each turn's end from the set's other agent turns.
The seed and each dialogue's index (``source.index`` as `kame data synth` records it, else its
line in the manifest) draw the replies, so a rerun gives the same oracle. A dialogue that fails
(an LLM error) keeps its old oracle and is reported; the exit code is then 1. Ctrl-C, and
SIGTERM (exit 143), end the run with the manifest written; a run killed outright leaves the old
manifest, whose lines' meta_sha256 then name other dialogue.json files: kame train refuses to
resume on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from pathlib import Path
from typing import Callable

from ..cliargs import at_least, counted
from .data import DataError, Word, read_dialogue, write_meta
from .datacmd import (MAX_FAILURES_IN_A_ROW, SETTINGS, check_simulator, failures, item_index, levels_table,
                      make_simulator, oracle_config, oracle_rng, past_end_warning, read_record, recorded_tokenizer,
                      record_settings, simulator, tokenizer_of)
from .manifest import write_manifest

log = logging.getLogger(__name__)


# A backchannel (see the module's docstring): at most this many words, spanning at most this long.
BACKCHANNEL_MAX_WORDS = 3
BACKCHANNEL_MAX_S = 1.5
# A pause of one speaker at least this long ends their spurt (within a spurt: pauses between words
# and phrases).
SPURT_GAP_S = 0.5


def turns(words: list[Word]) -> list[tuple[str, list[Word]]]:
    """The dialogue's turns: (speaker, words in start order), backchannels left out. Each
    speaker's words make spurts (``_spurts``); a spurt of at most BACKCHANNEL_MAX_WORDS words
    spanning at most BACKCHANNEL_MAX_S seconds that lies inside a spurt of the other speaker
    (which starts before it and ends after it) is a backchannel. The other spurts, in start
    order, are the turns, a speaker's spurts one after another one turn."""
    by_speaker: dict[str, list[Word]] = {}
    for w in sorted(words, key=lambda w: (w.start, w.end)):
        by_speaker.setdefault(w.speaker, []).append(w)
    spurts = [(spk, ws, _span(ws)) for spk, own in by_speaker.items()
              for ws in _spurts(own, [w for w in words if w.speaker != spk])]
    out: list[tuple[str, list[Word]]] = []
    for speaker, ws, (start, end) in sorted(spurts, key=lambda s: (s[1][0].start, s[1][0].end)):
        if _short(ws) and any(spk != speaker and s < start and e > end for spk, _, (s, e) in spurts):
            continue
        if out and out[-1][0] == speaker:
            out[-1][1].extend(ws)
        else:
            out.append((speaker, list(ws)))
    return out


def _spurts(own: list[Word], others: list[Word]) -> list[list[Word]]:
    """One speaker's words (in start order) cut into spurts, at each pause [a, b] (between the end
    of their words so far and the next word's start) that is SPURT_GAP_S or longer, in which the
    other speaker says a whole word (a reply or a short answer while they were silent: so a dialogue
    without overlap gets a turn at each change of speaker, as before), or in which the other
    speaker begins a stretch longer than a backchannel (they took the turn: the first speaker's
    "mm-hm" after it is not on their question). A stretch: a speaker's words with pauses under
    SPURT_GAP_S."""
    others = sorted(others, key=lambda w: (w.start, w.end))
    starts = [w.start for w in others]
    turn_starts = [ws[0].start for ws in _stretches(others) if not _short(ws)]

    def joins(a: float, b: float) -> bool:  # the pause [a, b] does not end the spurt
        lo, hi = bisect_left(starts, a), bisect_right(starts, b)
        return (b - a < SPURT_GAP_S and not any(x.end <= b for x in others[lo:hi])
                and bisect_left(turn_starts, a) == bisect_left(turn_starts, b))
    return _cut_at_pauses(own, joins)


def _stretches(words: list[Word]) -> list[list[Word]]:
    """``words`` (one speaker's, in start order) cut at each pause of SPURT_GAP_S or longer."""
    return _cut_at_pauses(words, lambda a, b: b - a < SPURT_GAP_S)


def _cut_at_pauses(words: list[Word], joins: Callable[[float, float], bool]) -> list[list[Word]]:
    """``words`` (one speaker's, in start order) in groups: a word joins the group before it when
    ``joins(a, b)`` for the pause from the group's end so far, a, to the word's start, b."""
    out: list[list[Word]] = []
    end = 0.0
    for w in words:
        if out and joins(end, w.start):
            out[-1].append(w)
            end = max(end, w.end)
        else:
            out.append([w])
            end = w.end
    return out


def _span(ws: list[Word]) -> tuple[float, float]:
    return ws[0].start, max(w.end for w in ws)


def _short(ws: list[Word]) -> bool:
    """Backchannel-sized: at most BACKCHANNEL_MAX_WORDS words within BACKCHANNEL_MAX_S seconds."""
    start, end = _span(ws)
    return len(ws) <= BACKCHANNEL_MAX_WORDS and end - start <= BACKCHANNEL_MAX_S


def spoken_turns(words: list[Word]) -> list[tuple[str, list[Word], str]]:
    """(speaker, words, text) of each of ``turns`` (backchannels left out), in order."""
    return [(spk, ws, " ".join(w.word for w in ws)) for spk, ws in turns(words)]


def answered_turns(words: list[Word]) -> list[tuple[list[Word], str, list[tuple[str, str]]]]:
    """(user turn's words, the agent's reply to it, the turns before as (speaker, text)) for each
    user turn that an agent turn follows (oracle_sim.answered: the turns simulate_dialogue gives
    an oracle)."""
    from .oracle_sim import answered

    return answered(spoken_turns(words))


async def dialogue_oracle(d, *, llm, tokenizer, cfg, random_replies=None, rng=None) -> list:
    """The simulated oracle events of every answered user turn of ``d``, in frame order (with
    oracle_sim's ``stats``: ``stats.past_end`` the points a delay put past the dialogue's end)."""
    from .oracle_sim import simulate_dialogue

    return await simulate_dialogue(spoken_turns(d.words), llm=llm, tokenizer=tokenizer, cfg=cfg, frames=d.frames,
                                   random_replies=random_replies, rng=rng)


def reply_pool(entries, tokenizer):
    """`--llm random`'s pool: every agent turn of the set's dialogues (one that cannot be read is
    left out here; it fails on its own turn)."""
    from .oracle_sim import reply_pool

    replies = []
    for e in entries:
        try:
            replies += [reply for _, reply, _ in answered_turns(read_dialogue(e.path, audio=False).words)]
        except DataError as exc:
            log.warning("%s: left out of the pool of replies: %s", e.path, exc)
    return reply_pool(replies, tokenizer, "the set")


async def reoracle_all(entries, *, llm, tokenizer, cfg, spec: str, seed: int = 0, random_replies=None,
                       jobs: int = 1, done: list | None = None,
                       past_end: Counter | None = None) -> list[tuple[Path, str, str]]:
    """Each entry's dialogue gets its new oracle (written in place); (folder, "written"|"failed",
    error or its predictions' hint levels) per entry, in order (``done`` gets each as it ends, so
    an interrupted run's are known; ``past_end``, per folder, the prediction points a delay put
    past its end, left out). MAX_FAILURES_IN_A_ROW failures in a row stop the run with a
    DataError."""
    from .oracle_sim import points_past_end

    results: list = [None] * len(entries)
    gate = asyncio.Semaphore(jobs)
    failed_in_a_row: list[tuple[Path, BaseException]] = []

    async def one(position: int, folder: Path) -> None:
        async with gate:
            await asyncio.sleep(0)  # (where Ctrl-C or SIGTERM ends the run, an LLM that never waits too)
            if len(failed_in_a_row) >= MAX_FAILURES_IN_A_ROW:
                return
            try:
                d = read_dialogue(folder, audio=False)
                index = item_index(d, position)  # (synth's: a rerun draws what synth --llm random drew)
                d.oracle = await dialogue_oracle(d, llm=llm, tokenizer=tokenizer, cfg=cfg,
                                                 random_replies=random_replies,
                                                 rng=oracle_rng(seed, index))
                d.tokenizer_sha256 = tokenizer.sha256 if d.oracle else None
                d.source = {**d.source, "llm": spec, "oracle": {"kind": "kame data oracle", "llm": spec, "seed": seed,
                                                                "interval_s": cfg.interval_s, "delay_s": cfg.delay_s}}
                write_meta(d)
            except Exception as exc:  # noqa: BLE001 -- one dialogue's failure must not end a long run
                log.warning("%s (%s): %s", folder, type(exc).__name__, exc)
                results[position] = (folder, "failed", f"{type(exc).__name__}: {exc}")
                failed_in_a_row.append((folder, exc))
            else:
                failed_in_a_row.clear()
                results[position] = (folder, "written", [ev.hint for ev in d.oracle if ev.event == "reset"])
                dropped = points_past_end(d.oracle)
                if past_end is not None and dropped:
                    past_end[folder] = dropped
            if done is not None:
                done.append(results[position])

    async with asyncio.TaskGroup() as group:
        for position, e in enumerate(entries):
            group.create_task(one(position, e.path))
    if len(failed_in_a_row) >= MAX_FAILURES_IN_A_ROW:
        folder, exc = failed_in_a_row[-1]
        raise DataError(f"{len(failed_in_a_row)} dialogues in a row failed, so the run stops (the same cause each "
                        f"time? the LLM down, a set too small for --llm random); the last one, {folder}: {type(exc).__name__}: {exc}") from exc
    return [r for r in results if r is not None]


def summary(results, wall_s: float, past_end: Counter | None = None) -> str:
    by = Counter(status for _, status, _ in results)
    levels = Counter(h for _, status, hints in results if status == "written" for h in hints if h is not None)
    lines = ["| written | failed | predictions | wall (s) |", "|---|---|---|---|",
             f"| {by['written']} | {by['failed']} | {sum(levels.values())} | {wall_s:.0f} |"]
    lines += levels_table(levels)
    lines += past_end_warning(sum((past_end or {}).values()), len(past_end or {}))
    lines += failures([(f.name, err) for f, status, err in results if status == "failed"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# kame data oracle


def add_arguments(p) -> None:
    from ..model.config import MAX_SEED

    p.add_argument("manifest", help="the set: a manifest (train.jsonl) or the folder holding it (kame data synth's -o)")
    p.add_argument("--llm", required=True, metavar="SPEC",
                   help="what makes the predictions: 'random' (KAME's randomized guidance: the set's other "
                        "replies, then the true one), 'none' (only the true reply at each turn's end), or a "
                        "simulator LLM (openai:MODEL; 'embedded' runs offline but is mostly off-topic)")
    p.add_argument("--tokenizer", default=None, metavar="PATH",
                   help="SentencePiece model of the oracle ids (default: kame's default tokenizer)")
    from .oracle_sim import add_timing_arguments

    add_timing_arguments(p)  # --interval, --delay
    p.add_argument("--jobs", type=at_least(1), default=1,
                   help="dialogues at once (default 1): their simulator requests overlap, for a hosted LLM that "
                        "serves several at a time")
    p.add_argument("--seed", type=at_least(0, maximum=MAX_SEED), default=0,
                   help="seeds --llm random's predictions and the embedded LLM's sampling (numpy's generators; "
                        "kame data synth's --seed draws the same ones; an openai: LLM's predictions differ from run "
                        "to run): 0 to 2**64 - 1 (default 0)")


def main(args) -> int:
    from ..paths import sweep_temporaries
    from ..cli import say
    from ..runtime.interrupt import QuitAtOnce, after_stop, exit_status, run_ended_by_sigterm, stopped_by
    from .batching import manifest_entries
    from .data import DIALOGUE_FILES

    # (--jobs, --seed, --interval, --delay were range-checked as parsed: kame.cliargs' types)
    check_simulator(args.llm)  # (before the manifest and the reply pool are read)
    oracle_cfg = oracle_config(args)
    path, entries = manifest_entries(args.manifest, command="data oracle")
    settings = read_record(path.parent, "then run `kame data oracle` again")  # (a bad one: before any is rewritten)
    tokenizer = tokenizer_of(args.tokenizer)
    random_replies = reply_pool(entries, tokenizer) if args.llm == "random" else None
    results: list = []
    past_end: Counter = Counter()

    llm = make_simulator(args.llm)

    stopped: list[str] = []  # "SIGTERM" once one ended the run

    async def run():
        async with simulator(llm, oracle_cfg):  # (the simulator tried: a run now writes)
            # what a run killed outright left where this one writes: the manifest's folder, the dialogues'
            sweep_temporaries("kame data oracle", [(path.parent, (path.name, SETTINGS)),
                                                   *((e.path, DIALOGUE_FILES) for e in entries)])
            print(f"new oracles ({args.llm}) for {counted(len(entries), 'dialogue')} in {path}; the audio stays",
                  flush=True)
            await reoracle_all(entries, llm=llm, tokenizer=tokenizer, cfg=oracle_cfg, spec=args.llm,
                               seed=args.seed, random_replies=random_replies, jobs=args.jobs, done=results,
                               past_end=past_end)

    t0 = time.monotonic()
    quit_now = False
    try:
        try:  # (SIGTERM ends the run as Ctrl-C does: the work cancelled, a dialogue's write finished)
            if ended := run_ended_by_sigterm(run):
                stopped.append(ended)
        except QuitAtOnce:  # a second signal: nothing more written (kame's main says it; was: swallowed)
            quit_now = True
            raise
        except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C: said as SIGTERM is (was: nothing
            stopped.append("SIGINT")  # printed), then exit 130
        finally:  # (interrupted or stopped too: what was written is the manifest's; a SIGTERM now waits
            # for it to be written whole, a second one quits at once, as does a Ctrl-C after a stop)
            if not quit_now:
                with after_stop(bool(stopped)) as held:  # (after a stop, a SIGTERM or Ctrl-C here is the second)
                    if any(status == "written" for _, status, _ in results):
                        whole = not stopped and sum(status == "written" for _, status, _ in results) == len(entries)
                        _record_oracle(path.parent / SETTINGS, settings, args, oracle_cfg, whole=whole)
                    # a dialogue that cannot be read keeps its line, without its sha256 (the others' are new,
                    # so the manifest is another one: no resume goes on over the new oracles unnoticed)
                    write_manifest(path, [e.path for e in entries], fallback={e.path: e for e in entries})
                if held.signal and not stopped:
                    stopped.append(held.signal)
    except QuitAtOnce:
        raise
    except (KeyboardInterrupt, asyncio.CancelledError):
        if not stopped:  # Ctrl-C: said as SIGTERM is (was: nothing printed), then exit 130
            stopped.append("SIGINT")
    print(summary(results, time.monotonic() - t0, past_end))
    print(f"manifest: {path} ({counted(len(entries), 'dialogue')})")
    if stopped:
        written = sum(status == "written" for _, status, _ in results)
        rest = ": run it again to give the others theirs" if written < len(entries) else ""
        say(f"kame data oracle: {stopped_by(stopped[0])}; the manifest has {counted(written, 'dialogue')} given a "
            f"new oracle{rest}")  # (one write: was print's two)
        # (said: was raised again for exit 130, and kame's main said "kame data oracle: interrupted" too)
        return exit_status(stopped[0])
    return 1 if any(status == "failed" for _, status, _ in results) else 0


def _record_oracle(path: Path, settings: dict | None, args, oracle_cfg, whole: bool) -> None:
    """kame data synth's record of the set (``settings``: synth.json's, read by read_record;
    None: none, nothing written) says what its oracle is now: llm, tokenizer (resolved, as synth
    records it: was kept as synth's, so kame train's note named a tokenizer the oracle no longer
    used), interval and delay are the oracle's (a later synth resume with another --llm warns); the oracle's seed goes apart
    (synth's seed drew the voices and layout), "cleaning" the version of the cleaner of its text
    (kame train warns of a set of another), only when ``whole``: every dialogue got its new oracle
    in a run not stopped (was: once one had, so a run where some failed, or a Ctrl-C, silenced the
    warning over dialogues cleaned the old way; they keep the old value). Written whole or not at
    all (record_settings)."""
    from ..backend.speech_text import CLEANING_VERSION

    if settings is not None:
        cleaning = {"cleaning": CLEANING_VERSION} if whole else {}
        record_settings(path.parent, {**settings, "llm": args.llm, "tokenizer": recorded_tokenizer(args.tokenizer),
                                       "interval_s": oracle_cfg.interval_s,
                                       "delay_s": oracle_cfg.delay_s, "oracle_seed": args.seed, **cleaning})
