"""How fast a front-end trained from scratch learns to copy its oracle, by how oracle_emb starts.

    python bench/oracle_copy.py DATA [--frontend random:small] [--steps 200] [--every 25]

DATA: a `kame data synth` set (its folder or manifest; its codes cached by `kame data encode`
makes the start fast). Each window's oracle is the agent's own words at the frames it says them
(``kame train --oracle-echo``'s first stage: alpha 0), so a model that reads its oracle has only
to copy the frame's token. Two runs from the same seed, one process, KAME's loss, AdamW at 1e-3
(50 warm-up steps), batches of 8 windows of 96 frames: oracle_emb copy-ready (kame's random init,
kame.model.lm.LMModel.init_weights) and oracle_emb a copy of text_emb (KAME's start from Moshi,
and kame's before). The table: the share of the agent's word tokens (not padding) that the model
ranks first, teacher-forced, on the set's last 16 dialogues (never trained on; 96 frames each,
ending with the agent's last word), at step 0, every --every steps and at the last.
BENCHMARKS.md, *A fourth attempt*, has a run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from kame.bench.machine import machine_line
from kame.train.batching import batches, echo_oracle, load_examples, manifest_path
from kame.train.data import DataError
from kame.train.manifest import read_manifest
from kame.eval.follow import teacher_forced
from kame.train.config import TrainConfig, lr_at
from kame.train.examples import stream_ids
from kame.train.finetune import make_optimizer
from kame.train.loading import load_for_training
from kame.train.loss import frontend_loss

HELD_OUT = 16  # windows (the set's last dialogues), never trained on
WINDOW = 96  # frames a window


def word_top1(model, held: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, int]:
    """(the share of word tokens (text targets but the padding ids) ranked first, teacher-forced,
    over the ``held`` windows (codes [K, T], oracle [T]); how many word tokens there are)."""
    model.eval()
    counts = [teacher_forced(model, codes, oracle) for codes, oracle in held]
    model.train()
    ok, words = sum(c.words_ok for c in counts), sum(c.words for c in counts)
    return (ok / words if words else float("nan")), words


def held_out_window(ex, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """The WINDOW frames of a held-out dialogue that end with its agent's last word (or its first
    WINDOW), the oracle echoed at the frames spoken."""
    text, ids = ex.codes[0].long(), stream_ids(cfg)
    oracle = echo_oracle(text, ex.recorded, 0.0, cfg)
    said = [f for f, t in enumerate(text.tolist()) if ids.is_word(t)]
    end = max(WINDOW, said[-1] + 1) if said else WINDOW
    start = max(0, end - WINDOW)
    return ex.codes[:, start:end].long(), oracle[start:end]


def run(data: str, frontend: str, init: str, steps: int, every: int) -> tuple[list[float], int]:
    torch.manual_seed(0)
    model, codec, _, tokenizer, _ = load_for_training(frontend, "auto", None, "cpu")
    cfg = model.cfg
    if init == "text_emb":
        with torch.no_grad():
            model.oracle_emb.load_state_dict(model.text_emb.state_dict())
    examples = load_examples(data, codec, tokenizer, cfg)
    if len(examples) <= HELD_OUT:
        raise SystemExit(f"error: {data} has {len(examples)} dialogues; this needs more than {HELD_OUT}")
    train, held = examples[:-HELD_OUT], examples[-HELD_OUT:]
    tcfg = TrainConfig(batch_size=8, window_frames=WINDOW, lr=1e-3, warmup_steps=50,
                       oracle_echo=(steps + 1, steps + 1))
    windows = [held_out_window(ex, cfg) for ex in held]
    opt = make_optimizer(model, tcfg)
    feed = batches(train, cfg, tcfg)
    first, words = word_top1(model, windows)  # step 0
    if words == 0:
        raise SystemExit(f"error: the held-out windows of {data} hold no word of the agent's")
    out = [first]
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, tcfg)
        c, o = next(feed)
        loss, _ = frontend_loss(model(c, oracle=o), c, cfg, tcfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            out.append(word_top1(model, windows)[0])
    return out, words


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a kame data synth folder or manifest")
    # (each with its default said: was, no help text, so --help hid them)
    p.add_argument("--frontend", default="random:small",
                   help="the random front-end built from scratch, random:NAME (default random:small)")
    p.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    p.add_argument("--every", type=int, default=25, help="held-out measure every N steps (default 25)")
    args = p.parse_args()
    if args.steps < 1 or args.every < 1:
        p.error(f"--steps and --every must be >= 1 (got {args.steps}, {args.every})")
    if not args.frontend.startswith("random:"):
        p.error(f"--frontend {args.frontend}: this probe builds a front-end from scratch (random:NAME)")
    try:  # (before any model is built)
        n = len(read_manifest(manifest_path(args.data, command="oracle_copy")))
    except DataError as e:
        p.error(str(e))
    if n <= HELD_OUT:
        p.error(f"{args.data} has {n} dialogues; this needs more than {HELD_OUT} (the last {HELD_OUT} are held out)")
    torch.set_num_threads(2)
    print(f"command: python {shlex.join(sys.argv)}\n{machine_line()}", flush=True)
    t0 = time.perf_counter()
    runs = {init: run(args.data, args.frontend, init, args.steps, args.every) for init in ("copy-ready", "text_emb")}
    ready, before = runs["copy-ready"][0], runs["text_emb"][0]
    steps = [n * args.every for n in range(len(ready))]
    steps[-1] = args.steps
    print(f"# {args.frontend} from scratch, oracle echoed at the frames spoken; held-out word tokens ranked first, %")
    print("| step | copy-ready oracle_emb | oracle_emb = text_emb |")
    print("|---|---|---|")
    for n, step in enumerate(steps):
        print(f"| {step} | {100 * ready[n]:.1f} | {100 * before[n]:.1f} |")
    print(f"({runs['copy-ready'][1]} word tokens in {HELD_OUT} held-out windows; {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
