"""A copy-task QA set: "please repeat after me" and a reply of random words, for training probes.

    python bench/copy_task.py -o qa_train.jsonl --items 3200 [--vocab 100] [--seed 0]
    kame data synth qa_train.jsonl -o train --llm none      # then the usual: encode, train, eval

Each record is {"question": one of REQUESTS, "answer": 4-7 words drawn at random, then "."}.
The words come from kame's default tokenizer: its whole-word pieces (one token each, lower-case
letters only, 3+ letters) that pocketsphinx's CMU dictionary lists (1 774 with kame's 4k
tokenizer; a few are fragments such as "dis" or "pre", which the voices spell out or say as
written), in the tokenizer's order; ``--vocab N`` keeps N of them, drawn with ``--vocab-seed``, in
alphabetical order (default: all). Nothing in a reply can be said without reading the oracle, so
a front-end that says it has read its oracle. BENCHMARKS.md's *A fifth attempt* trained on a set made with this
script (the held-out set: another ``--seed``); the third and fourth attempts' sets were made by
an earlier form of it (1 717 words, not kept).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from kame.cliargs import counted
from kame.errors import KameError
from kame.paths import check_output_file, write_replacing

REQUESTS = ("Please repeat after me.", "Say these words back to me.", "Can you repeat this?",
            "Repeat what I say.", "Say this after me.", "Listen and repeat.")


def word_list() -> list[str]:
    """The default tokenizer's one-token words that the CMU dictionary knows, in token order."""
    import pocketsphinx

    from kame.backend.tokenizer import default_tokenizer

    tok = default_tokenizer()
    cmu = Path(pocketsphinx.__file__).parent / "model" / "en-us" / "cmudict-en-us.dict"
    known = {line.split(" ", 1)[0] for line in cmu.read_text(encoding="utf-8").splitlines()}
    words = []
    for i in range(tok.vocab_size):
        piece = tok.piece(i)
        w = piece[1:] if piece.startswith("\u2581") else ""
        if len(w) >= 3 and w.isalpha() and w.islower() and w in known and tok.encode_words([w]) == [i]:
            words.append(w)
    return words


def items(n: int, words: list[str], seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"question": rng.choice(REQUESTS), "answer": " ".join(rng.sample(words, rng.randint(4, 7))) + "."}
            for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True, help="the QA set to write (.jsonl)")
    ap.add_argument("--items", type=int, default=3200, help="question-answer items to write (default 3200)")
    ap.add_argument("--vocab", type=int, default=None, help="keep N of the words (default: all)")
    ap.add_argument("--vocab-seed", type=int, default=0, help="which N words --vocab keeps (default 0)")
    ap.add_argument("--seed", type=int, default=0, help="the replies' draw (another one for a held-out set; default 0)")
    args = ap.parse_args(argv)
    if args.items < 1:
        ap.error("--items must be 1 or more")
    try:  # (a folder, /proc, a file in the way: one line, before the words are read)
        args.out = check_output_file(args.out, flag="-o")
    except KameError as exc:
        ap.error(str(exc))
    words = word_list()
    if args.vocab is not None:
        if not 7 <= args.vocab <= len(words):
            ap.error(f"--vocab must be 7..{len(words)} (a reply has up to 7 distinct words)")
        words = sorted(random.Random(args.vocab_seed).sample(words, args.vocab))
    recs = items(args.items, words, args.seed)
    text = "".join(json.dumps(r) + "\n" for r in recs)
    try:
        write_replacing(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"), what="QA set")
    except KameError as exc:
        ap.error(str(exc))
    # (was: "5 items, 1774 words", the vocabulary's size read as the words written)
    print(f"{args.out}: {counted(len(recs), 'item')}, from a vocabulary of {len(words)} words", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
