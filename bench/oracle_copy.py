"""How fast a front-end trained from scratch learns to copy its oracle, by how oracle_emb starts.

    python bench/oracle_copy.py DATA [--frontend random:small] [--steps 200] [--every 25]

DATA: a `kame data synth` set (its folder or manifest; its codes cached by `kame data encode`
makes the start fast). Each window's oracle is the agent's own words at the frames it says them
(``kame train --oracle-echo``'s first stage: alpha 0), so a model that reads its oracle has only
to copy the frame's token. Two runs from the same seed, one process, KAME's loss, AdamW at 1e-3
(50 warm-up steps), batches of 8 windows of 96 frames: oracle_emb copy-ready (kame's random init,
kame.model.lm.LMModel.init_weights) and oracle_emb a copy of text_emb (KAME's start from Moshi,
and kame's before). The table: the share of the agent's word tokens (not padding) that the model
ranks first, teacher-forced, on 16 windows the runs do not train on, at step 0 and every
--every steps.
BENCHMARKS.md, *A fourth attempt*, has a run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from kame.bench.machine import machine_line
from kame.train.batching import batches, echo_oracle, load_examples
from kame.train.config import TrainConfig
from kame.train.examples import collate
from kame.train.finetune import load_for_training, make_optimizer
from kame.train.loss import frontend_loss

HELD_OUT = 16  # windows (the set's last dialogues), never trained on


def word_top1(model, codes: torch.Tensor, oracle: torch.Tensor) -> float:
    """The share of word tokens (text targets but the padding ids) ranked first, teacher-forced."""
    cfg = model.cfg
    model.eval()
    with torch.no_grad():
        out = model(codes, oracle=oracle)
    model.train()
    mask = out.text_mask[:, 0]
    target, best = codes[:, 0][mask], out.text_logits[:, 0][mask].argmax(-1)
    words = (target != cfg.existing_text_padding_id) & (target != cfg.existing_text_end_padding_id)
    return float((best[words] == target[words]).float().mean())


def run(data: str, frontend: str, init: str, steps: int, every: int) -> list[float]:
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
    tcfg = TrainConfig(batch_size=8, window_frames=96, lr=1e-3, oracle_echo=(steps + 1, steps + 1))
    codes, oracle = collate([(ex.codes[:, :96].long(), echo_oracle(ex.codes[0].long(), ex.recorded, 0.0, cfg)[:96])
                             for ex in held], cfg)
    opt = make_optimizer(model, tcfg)
    feed = batches(train, cfg, tcfg)
    out = [word_top1(model, codes, oracle)]  # step 0
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = tcfg.lr * min(1.0, step / 50)
        c, o = next(feed)
        loss, _ = frontend_loss(model(c, oracle=o), c, cfg, tcfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0:
            out.append(word_top1(model, codes, oracle))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a kame data synth folder or manifest")
    p.add_argument("--frontend", default="random:small")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--every", type=int, default=25)
    args = p.parse_args()
    if args.steps < 1 or args.every < 1:
        p.error(f"--steps and --every must be >= 1 (got {args.steps}, {args.every})")
    torch.set_num_threads(2)
    print(f"command: python {shlex.join(sys.argv)}\n{machine_line()}", flush=True)
    t0 = time.perf_counter()
    cols = {init: run(args.data, args.frontend, init, args.steps, args.every) for init in ("copy-ready", "text_emb")}
    print(f"# {args.frontend} from scratch, oracle echoed at the frames spoken; held-out word tokens ranked first, %")
    print("| step | copy-ready oracle_emb | oracle_emb = text_emb |")
    print("|---|---|---|")
    for n in range(len(cols["copy-ready"])):
        print(f"| {n * args.every} | {100 * cols['copy-ready'][n]:.1f} | {100 * cols['text_emb'][n]:.1f} |")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
