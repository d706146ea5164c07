"""`kame data oracle`: simulate the oracle of dialogues that already exist, keeping their audio.

    kame data synth qa.jsonl -o data/qa --llm none                # speech only (fast)
    kame data oracle data/qa --llm random                         # then KAME's randomized guidance
    kame data oracle data/qa --llm openai:gpt-4.1-nano --jobs 8   # or a simulator LLM's predictions

Speech and codes are what a training set costs (the codes cache: ~1.3 s of encoding per 7.5 s
dialogue with the embedded codec); the oracle is the part one wants to change (another simulator,
interval, delay or seed). This rewrites each dialogue's oracle events in its dialogue.json
(``kame.train.data.write_meta``): audio.wav and codes.npz stay as they are, and the manifest is
written again (its prediction counts and hint levels).

Turns come from the words: each run of one speaker's words (in start order) is a turn, except a
backchannel ("uh-huh", "yeah", "right" said while the other speaker talks): a run of at most
BACKCHANNEL_MAX_WORDS words spanning at most BACKCHANNEL_MAX_S seconds (first word's start to
last word's end) that lies between two runs of the other speaker and overlaps one of their words
in time. A backchannel is left out of the turns (not a turn, not in any text), so the other
speaker's runs around it are one turn: a user's backchannel neither gets an oracle nor cuts the
agent's reply in two, an agent's does not split the user's turn. A short run after the other
speaker has stopped (no overlap: an answer, a "Yes.") is a turn; so is one in a pause of the other's
speech that overlaps none of their words (timing alone cannot tell it from a short answer).
Synthesized dialogues (`kame data synth`) never overlap, so they have no backchannels. Every
user turn answered by an agent turn gets the simulated oracle of kame.train.oracle_sim, with the
agent turn's words as the true reply and the turns before as the history (a multi-turn dialogue,
a ``kame run`` recording too, gets one oracle per answered turn, its prediction ids running on).
``--llm random`` draws the predictions before each turn's end from the set's other agent turns.
The seed and each dialogue's index (``source.index`` as `kame data synth` records it, else its
line in the manifest) draw the replies, so a rerun gives the same oracle. A dialogue that fails
(an LLM error) keeps its old oracle and is reported; the exit code is then 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .data import DataError, Word, read_dialogue, read_manifest, write_manifest, write_meta

log = logging.getLogger(__name__)


# A backchannel (see the module's docstring): at most this many words, spanning at most this long.
BACKCHANNEL_MAX_WORDS = 3
BACKCHANNEL_MAX_S = 1.5


def turns(words: list[Word]) -> list[tuple[str, list[Word]]]:
    """The dialogue's turns: (speaker, words) for each run of one speaker's words in start order,
    backchannels left out. A run is a backchannel when it has at most BACKCHANNEL_MAX_WORDS words
    spanning at most BACKCHANNEL_MAX_S seconds, the other speaker has a run before and after it,
    the run before is not itself a backchannel, and it overlaps in time a word of either (a short
    run after the other speaker stopped is an answer, so a turn). The other speaker's runs around
    a backchannel make one turn."""
    runs: list[tuple[str, list[Word]]] = []
    for w in sorted(words, key=lambda w: (w.start, w.end)):
        if runs and runs[-1][0] == w.speaker:
            runs[-1][1].append(w)
        else:
            runs.append((w.speaker, [w]))
    out: list[tuple[str, list[Word]]] = []
    previous_was_backchannel = False
    for i, (speaker, ws) in enumerate(runs):
        # (the run before must be real speech: a reply to a backchannel is not one itself)
        if 0 < i < len(runs) - 1 and not previous_was_backchannel and _backchannel(ws, runs[i - 1][1] + runs[i + 1][1]):
            previous_was_backchannel = True
            continue
        previous_was_backchannel = False
        if out and out[-1][0] == speaker:  # the other speaker's run after a backchannel goes on their turn
            out[-1][1].extend(ws)
        else:
            out.append((speaker, list(ws)))
    return out


def _backchannel(run: list[Word], around: list[Word]) -> bool:
    """``run`` is short and overlaps in time one of ``around`` (the other speaker's words next to it)."""
    start, end = run[0].start, max(w.end for w in run)
    return (len(run) <= BACKCHANNEL_MAX_WORDS and end - start <= BACKCHANNEL_MAX_S
            and any(w.start < end and w.end > start for w in around))


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
    """The simulated oracle events of every answered user turn of ``d``, in frame order."""
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
                       jobs: int = 1, done: list | None = None) -> list[tuple[Path, str, str]]:
    """Each entry's dialogue gets its new oracle (written in place); (folder, "written"|"failed",
    error or its predictions' hint levels) per entry, in order (``done`` gets each as it ends, so
    an interrupted run's are known). MAX_FAILURES_IN_A_ROW failures in a row stop the run with a
    DataError."""
    from .synth import MAX_FAILURES_IN_A_ROW, item_index

    results: list = [None] * len(entries)
    gate = asyncio.Semaphore(jobs)
    failed_in_a_row: list[tuple[Path, BaseException]] = []

    async def one(position: int, folder: Path) -> None:
        async with gate:
            if len(failed_in_a_row) >= MAX_FAILURES_IN_A_ROW:
                return
            try:
                d = read_dialogue(folder, audio=False)
                index = item_index(d, position)  # (synth's: a rerun draws what synth --llm random drew)
                d.oracle = await dialogue_oracle(d, llm=llm, tokenizer=tokenizer, cfg=cfg,
                                                 random_replies=random_replies,
                                                 rng=np.random.default_rng([seed, index, 2]))
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


def summary(results, wall_s: float) -> str:
    from .synth import failures, levels_table

    by = Counter(status for _, status, _ in results)
    levels = Counter(h for _, status, hints in results if status == "written" for h in hints if h is not None)
    lines = ["| written | failed | predictions | wall (s) |", "|---|---|---|---|",
             f"| {by['written']} | {by['failed']} | {sum(levels.values())} | {wall_s:.0f} |"]
    lines += levels_table(levels)
    lines += failures([(f.name, err) for f, status, err in results if status == "failed"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# kame data oracle


def add_arguments(p) -> None:
    p.add_argument("manifest", help="the set: a manifest (train.jsonl) or the folder holding it (kame data synth's -o)")
    p.add_argument("--llm", required=True, metavar="SPEC",
                   help="what makes the predictions: 'random' (KAME's randomized guidance: the set's other "
                        "replies, then the true one), 'none' (only the true reply at each turn's end), or a "
                        "simulator LLM (openai:MODEL; 'embedded' runs offline but is mostly off-topic)")
    p.add_argument("--tokenizer", default=None, metavar="PATH",
                   help="SentencePiece model of the oracle ids (default: kame's default tokenizer)")
    p.add_argument("--interval", type=float, default=None, help="seconds between predictions (default 0.5)")
    p.add_argument("--delay", type=float, default=None,
                   help="seconds each prediction arrives after its words were heard (default 0, as KAME's data)")
    p.add_argument("--jobs", type=int, default=1, help="dialogues at once (a hosted LLM's requests overlap)")
    p.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    from ..backend.tokenizer import TextTokenizer, default_tokenizer
    from .batching import manifest_path
    from .synth import SETTINGS, make_simulator, oracle_config, simulator

    if args.jobs < 1:
        raise DataError(f"--jobs must be >= 1, not {args.jobs}")
    oracle_cfg = oracle_config(args)
    path = manifest_path(args.manifest, command="data oracle")
    entries = read_manifest(path)
    if not entries:
        raise DataError(f"data oracle: manifest {path} lists no dialogues")
    tokenizer = TextTokenizer(args.tokenizer) if args.tokenizer else default_tokenizer()
    random_replies = reply_pool(entries, tokenizer) if args.llm == "random" else None
    results: list = []

    llm = make_simulator(args.llm)

    async def run():
        async with simulator(llm, oracle_cfg):
            print(f"{len(entries)} dialogues in {path} get a new oracle ({args.llm}); their audio stays", flush=True)
            await reoracle_all(entries, llm=llm, tokenizer=tokenizer, cfg=oracle_cfg, spec=args.llm, seed=args.seed,
                               random_replies=random_replies, jobs=args.jobs, done=results)

    t0 = time.monotonic()
    try:
        asyncio.run(run())
    finally:  # (interrupted or stopped too: what was written is the manifest's)
        if any(status == "written" for _, status, _ in results):
            _record_oracle(path.parent / SETTINGS, args, oracle_cfg)
        # a dialogue that cannot be read keeps its line, without its sha256 (the others' are new, so
        # the manifest is another one: no resume goes on over the new oracles unnoticed)
        write_manifest(path, [e.path for e in entries], fallback={e.path: e for e in entries})
    print(summary(results, time.monotonic() - t0))
    print(f"manifest: {path} ({len(entries)} dialogues)")
    return 1 if any(status == "failed" for _, status, _ in results) else 0


def _record_oracle(settings: Path, args, oracle_cfg) -> None:
    """kame data synth's record of the set (synth.json, when there) says what its oracle is now:
    llm, interval and delay are the oracle's (a later synth resume with another --llm warns); the
    oracle's seed goes apart (synth's seed drew the voices and layout)."""
    if settings.is_file():
        new = {**json.loads(settings.read_text()), "llm": args.llm, "interval_s": oracle_cfg.interval_s,
               "delay_s": oracle_cfg.delay_s, "oracle_seed": args.seed}
        settings.write_text(json.dumps(new, indent=1) + "\n")
