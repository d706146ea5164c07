"""Where a front-end's audio falls short: its audio codes at the frames the agent speaks, per
codebook, and how much of the speech each codebook carries.

    python bench/audio_codes.py DATA --frontend RUN/step-N [--frontend RUN2/step-N ...] [--limit 40]
        [--codebooks 8 4 2 1] [--repeat TRAIN [--repeat-limit N]] [--threads 2]

DATA: held-out dialogues (`kame data synth`'s layout: a folder or its manifest). Up to three tables:

1. Teacher forced (`LMModel.forward` on each dialogue, with its oracle), at the frames the agent's
   words span (kame.eval.follow.speaking_frames; silence is most frames and its codes are easy):
   per front-end and audio codebook, the share of codes ranked first and their mean cross-entropy
   in nats (a uniform guess over the codec's 2048 codes: ln 2048 = 7.62).
2. With ``--codebooks K ...`` (needs the bench extra's faster-whisper): each dialogue's own agent
   audio through the first front-end's codec told to code with K codebooks
   (``codec.set_num_codebooks``), transcribed by whisper tiny.en against the agent's words: WER /
   CER %. The audio a front-end makes can be no clearer than the codebooks it gets right allow.
3. With ``--repeat TRAIN [--repeat-limit N]``: how alike a word's codes are each time the agent
   says it, in a training set (its cached codes, `kame data encode`; else encoded): for words said
   at least 20 times, at the first three frames of each saying, the share of the most common code,
   per codebook (averaged over the words). What a model can learn of a code from the word alone;
   the rest it must get from the context (its own previous codes), or cannot.

BENCHMARKS.md, *A sixth attempt*, has a run.
"""

from __future__ import annotations

import argparse
import math
import sys
from contextlib import contextmanager

import numpy as np
import torch

from kame.bench.machine import machine_line
from kame.cliargs import at_least, naming, thread_count, usable_cores
from kame.errors import KameError
from kame.eval.follow import cer, speaking_frames, teacher_forced, wer
from kame.train.batching import manifest_path
from kame.train.data import SAMPLE_RATE, read_dialogue
from kame.train.examples import training_example
from kame.train.loading import load_for_training
from kame.train.manifest import read_manifest


def codes_table(frontend: str, dialogues) -> tuple[list[float], list[float], int]:
    """(% ranked first, mean cross-entropy in nats) per audio codebook of ``frontend``, teacher
    forced, at the frames the agent speaks in ``dialogues``; and its codes per codebook (card)."""
    model, codec, _, tok, _ = load_for_training(frontend, "auto", None, "cpu", command="audio_codes",
                                                options="--frontend")
    model.eval()
    tot = np.zeros((3, model.cfg.dep_q))  # codes ranked first, codes, summed nats; per codebook
    for d in dialogues:
        codes, oracle = training_example(d, codec, tok, model.cfg)
        tf = teacher_forced(model, codes, oracle, speaking_frames(d))
        tot += np.array([tf.speaking_ok, tf.speaking, tf.speaking_nll], dtype=np.float64).reshape(3, -1)
    ok, n, nll = tot
    if not n.any():
        raise SystemExit(f"error: {frontend}: no audio code at a frame the agent speaks (dep_q 0, or no agent word)")
    return list(100 * ok / np.maximum(n, 1)), list(nll / np.maximum(n, 1)), int(model.cfg.card)


def frontend_codec(frontend: str):
    """``frontend``'s codec (no weights of the front-end read)."""
    return load_for_training(frontend, "auto", None, "cpu", command="audio_codes", options="--frontend",
                             weights=False)[1]


@contextmanager
def codebooks_kept(codec):
    """``codec`` put back at the codebooks it codes with (the front-end's) however many are set inside."""
    k0 = codec.num_codebooks
    try:
        yield
    finally:
        codec.set_num_codebooks(k0)


def checked_codebooks(codec, ks: list[int]) -> None:
    """Each of --codebooks' K is one ``codec`` codes with, else a KameError naming --codebooks: said
    before the teacher-forced table's minutes (was: after them)."""
    with naming("--codebooks"), codebooks_kept(codec):
        for k in ks:
            codec.set_num_codebooks(k)


def recordings_table(codec, dialogues, ks: list[int]) -> list[tuple[int, float, float]]:
    """(K, WER %, CER %) of the dialogues' agent audio coded with K codebooks by ``codec`` (the
    first front-end's: ``frontend_codec``), per K."""
    from kame.bench.codec_quality import Whisper

    asr, rows = Whisper(), []
    with codebooks_kept(codec):
        for k in ks:
            codec.set_num_codebooks(k)
            we = wn = ce = cn = 0
            for d in dialogues:
                ref = " ".join(w.word for w in d.words_of("agent"))
                pcm = torch.from_numpy(np.ascontiguousarray(d.audio[:, 1]))[None]
                with torch.no_grad():
                    heard = asr(codec.decode(codec.encode(pcm)).numpy()[0], SAMPLE_RATE)
                e, r = wer(ref, heard)
                we, wn = we + e, wn + r
                e, r = cer(ref, heard)
                ce, cn = ce + e, cn + r
            rows.append((k, 100 * we / max(wn, 1), 100 * ce / max(cn, 1)))
    return rows


def repeat_entries(data: str, limit: int | None) -> list:
    """--repeat's manifest entries (its first ``limit``), read before any table: a missing manifest is
    a KameError naming --repeat (was: said after the teacher-forced table's minutes)."""
    with naming("--repeat"):
        return read_manifest(manifest_path(data, command="audio_codes"))[:limit]


def repeat_table(frontend: str, entries: list, codec=None) -> list[tuple[int, int, list[float]]]:
    """(frame after the word's start, words, mode share % per codebook) over the agent words of
    ``entries`` (``repeat_entries``) said >= 20 times, with ``frontend``'s codec: ``codec``, that
    codec already built (``frontend_codec``), else built here."""
    from collections import defaultdict

    from kame.bench.textmetrics import normalize
    from kame.train.codes import encode_dialogue, load_codes
    from kame.train.data import frame_of

    codec = codec if codec is not None else frontend_codec(frontend)
    said = defaultdict(list)  # (word, frame after its start) -> [codes [K]]
    for e in entries:
        d = read_dialogue(e.path, audio=False)
        got = load_codes(d, codec)
        if got is None:
            got = encode_dialogue(read_dialogue(e.path), codec)
        agent = got[1].numpy()  # [K, T]
        for w in d.words_of("agent"):
            s = frame_of(w.start)
            for r in range(3):
                if s + r < agent.shape[1]:
                    said[(" ".join(normalize(w.word)), r)].append(agent[:, s + r])
    rows = []
    for r in range(3):
        shares = [np.array([np.bincount(col).max() / len(col) for col in np.stack(v).T])
                  for (_, rr), v in said.items() if rr == r and len(v) >= 20]
        if shares:
            rows.append((r, len(shares), list(100 * np.mean(shares, axis=0))))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="held-out dialogues: a kame data synth folder or its manifest")
    ap.add_argument("--frontend", action="append", required=True, help="a checkpoint (repeat to compare)")
    # (numbers checked as kame bench checks its own, at parse time; was: plain int, so --threads 0 was a
    # traceback and --limit -18 measured 2 dialogues, a Python slice)
    ap.add_argument("--limit", type=at_least(1), default=None, metavar="N",
                    help="the first N dialogues (default: all)")
    ap.add_argument("--codebooks", type=at_least(1), nargs="+", default=[], metavar="K",
                    help="also: the recordings coded with K codebooks, through whisper (default: not measured)")
    ap.add_argument("--repeat", default=None, metavar="TRAIN", help="also: how alike a word's codes are across its "
                    "sayings in this training set (default: not measured)")
    ap.add_argument("--repeat-limit", type=at_least(1), default=None, metavar="N",
                    help="its first N dialogues (default: all)")
    ap.add_argument("--threads", type=thread_count, default=min(2, usable_cores()),
                    help="torch threads (default 2, or 1 on a one-core machine)")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except KameError as exc:  # (a codebook count the codec refuses, a stale codes cache, a missing file...)
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run(args) -> int:
    torch.set_num_threads(args.threads)
    entries = read_manifest(manifest_path(args.data, command="audio_codes"))[: args.limit]
    dialogues = [read_dialogue(e.path) for e in entries]
    if not dialogues:
        raise SystemExit(f"error: no dialogues in {args.data}")
    codec = frontend_codec(args.frontend[0]) if args.codebooks else None
    if codec is not None:
        checked_codebooks(codec, args.codebooks)
    repeat = repeat_entries(args.repeat, args.repeat_limit) if args.repeat else None
    print(f"# bench/audio_codes.py: {len(dialogues)} dialogues of {args.data}; {machine_line()}")
    tables = [(f, *codes_table(f, dialogues)) for f in args.frontend]
    dep_q, card = len(tables[0][1]), tables[0][3]
    print(f"\nTeacher forced, at the frames the agent speaks: codes ranked first % / mean cross-entropy (nats; "
          f"a uniform guess over {card} codes: {math.log(card):.2f})\n")
    print("| front-end | " + " | ".join(f"codebook {k}" for k in range(dep_q)) + " |")
    print("|---|" + "---|" * dep_q)
    for f, ok, nll, _ in tables:
        print(f"| {f} | " + " | ".join(f"{a:.1f} / {b:.2f}" for a, b in zip(ok, nll)) + " |")
    if args.codebooks:
        print("\nThe recordings' agent audio coded with K codebooks, whisper tiny.en: WER / CER %\n")
        print("| K | WER / CER % |\n|---|---|")
        for k, w, c in recordings_table(codec, dialogues, args.codebooks):
            print(f"| {k} | {w:.1f} / {c:.1f} |", flush=True)
    if repeat is not None:
        rows = repeat_table(args.frontend[0], repeat, codec)  # (was: the codec built a second time)
        print(f"\nHow alike a word's codes are each time it is said ({args.repeat}): the most common code's share "
              f"%, per codebook\n")
        print("| frame of the word | words | " + " | ".join(f"codebook {k}" for k in range(len(rows[0][2])))
              + " |" if rows else "(no word said 20 times)")
        if rows:
            print("|---|---|" + "---|" * len(rows[0][2]))
        for r, n, share in rows:
            print(f"| +{r} | {n} | " + " | ".join(f"{x:.1f}" for x in share) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
