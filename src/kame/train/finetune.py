"""`kame train`: fine-tune a front-end on a manifest of dialogues (docs/training.md).

    kame train data/train.jsonl --frontend random:tiny --codec embedded -o runs/x --steps 200
    python -m torch.distributed.run --nproc_per_node 2 -m kame.cli train data/train.jsonl ...   # DDP
    kame train data/train.jsonl -o runs/x --steps 400 --resume runs/x/latest

main's work up to the loop (``train``): kame.train.launch's ``run`` (the process group, the command's checks,
the options' knobs: knobs_from, OPTION_KNOBS); here the options (add_arguments), main and the loop.
The front-end and its codec are loaded by kame run's rule (kame.train.loading, kame.runtime.frontend):
--codec auto takes the checkpoint's own codec (kame.codec, else its Mimi; embedded for random:), and
a named codec or a tokenizer that cannot be the checkpoint's is refused (kame.runtime.loading's checks).

The loop: manifest -> dialogues -> ``training_example`` (codes from each dialogue's codes.npz,
written on the first encode) -> fixed-length windows (cut from a frame drawn per epoch) -> shuffled, seeded batches (``collate``)
-> the forward -> ``frontend_loss`` (kame.train.loss) -> AdamW with a linear warmup, then a
constant or cosine learning rate, gradients clipped. OUT/step-N is a front-end checkpoint (``save_frontend``, its
config.json's ``kame.train``: the step, this config, the manifest's sha256, the front-end it
started from, what it was resumed from) plus train_state.pt (the optimizer's state, for
``--resume``, which refuses another config, manifest or global batch; a sharded run's is in
step-N/optimizer, one file per process); OUT/latest points at the newest. A checkpoint holds
the codec and tokenizer it runs with (kame's default tokenizer by name and sha256), and the
front-end it started from by its resolved path (kame.train.checkpoint).

The knobs are kame.train.config's TrainConfig; the data side (examples, codes cache, KAME's
oracle augmentation drawn per dialogue and epoch, batches) is kame.train.batching. The batches
depend only on the seed and the step, so a resumed run sees those the straight run would have.

Under torchrun (WORLD_SIZE > 1) each process takes its share of every global batch
(batch_size windows per forward, grad_accum forwards per step), gradients are averaged by
DistributedDataParallel (or the model is sharded over the processes, --shard), and rank 0 alone
logs and saves. bf16 compute, sharding and recomputed activations: kame.train.parallel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..cliargs import counted
from ..errors import ConfigError
from .batching import batches, input_dropouts, load_examples, manifest_path, slot
from .checkpoint import (check_listed, check_out, clear_out, frontend_identity, last_checkpoint, moved_back_note,
                         out_lock, remove_stale_temporaries, restart_hint, resume_note)
from .config import TrainConfig, check_resume, load_train_state, lr_at, recorded_config, schedule_warnings
from .data import DataError
from .launch import OPTION_KNOBS, run  # (main's work: kame.train.launch, which calls train)
from .parallel import PRECISIONS, ProcessLost, check_shard, lost_cause, lost_peer
from .runlog import RunLog
from .saving import SaveFailed, save_step

# (torch is imported where it is used: `kame train --help` stays fast, tests/test_cliargs.py)
if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


# --- the loop ---------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: torch.nn.Module  # the trained model (unwrapped; --shard: still sharded, the checkpoints hold it whole)
    step: int  # optimizer steps done in all
    losses: list[float]  # this process's loss at each step run here
    last_checkpoint: Path | None  # rank 0's last OUT/step-N (None elsewhere)


class Diverged(ConfigError):
    """A loss that is not finite (step_gradients); train adds what to start again from."""


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with where it stopped (main says how to resume; ``resumed``: the
    --resume given, still the one to resume before this run saves)."""

    def __init__(self, step: int, last: Path | None, out: Path | None, rank: int, resumed=None) -> None:
        super().__init__(step)
        self.step, self.last, self.out, self.rank, self.resumed = step, last, out, rank, resumed


def make_optimizer(model: torch.nn.Module, tcfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on every parameter, norms and biases too (KAME's: one group)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=tcfg.lr, betas=tuple(tcfg.betas), eps=tcfg.eps,
                             weight_decay=tcfg.weight_decay)


def check_fit(cfg, tokenizer, tcfg: TrainConfig) -> None:
    """Errors before any data is read: a tokenizer the front-end's text vocabulary cannot hold, a
    window longer than the attention context, an oracle curriculum for a front-end without one."""
    from .examples import TEXT_CARD_FIX

    if tcfg.oracle_echo[1] > 0 and not cfg.oracle:
        raise ConfigError("train: --oracle-echo teaches a front-end to read its oracle stream, and this one has "
                          "none (config oracle=False: a Moshi or Kyutai STT checkpoint); leave it out")

    if tokenizer.vocab_size > cfg.text_card:
        raise DataError(f"train: the tokenizer has {tokenizer.vocab_size} pieces, the front-end's text_card is "
                        f"{cfg.text_card}: {TEXT_CARD_FIX} (kame train --text-card N for a random: front-end)")
    if cfg.context is not None and tcfg.window_frames > cfg.context:
        raise ConfigError(f"train: --window {tcfg.window_frames} frames is longer than the front-end's attention "
                          f"context ({cfg.context} frames): at inference it never sees that far back; use "
                          f"--window {cfg.context} or less")


def train(model, codec, tokenizer, manifest: str | Path, out: str | Path | None, tcfg: TrainConfig, *,
          codec_spec: str | None = None, tokenizer_spec: str | Path | None = None,
          resume: str | Path | None = None, overwrite: bool = False, start: str | None = None,
          device: str | torch.device = "cpu", echo: Callable[[str], None] = print,
          stopped: Callable[[], bool] = lambda: False) -> TrainResult:
    """Fine-tune ``model`` (an LMModel, trained in place) on the manifest's dialogues. ``out``:
    where checkpoints go (None: none written; ``codec_spec`` and ``tokenizer_spec`` are recorded
    in them, as save_frontend takes them; ``start``: the front-end it started from); a folder
    with files is refused unless it is the resumed checkpoint's own or ``overwrite`` (its step-N
    and latest are removed: check_out).
    ``resume``: a checkpoint folder written by this loop (its weights already in ``model``): the
    run it recorded must be this one (check_resume); its optimizer state and step are restored and
    training goes on to ``tcfg.steps``. In a process group (torchrun) the model is wrapped in
    DistributedDataParallel; only rank 0 prints and saves. Ctrl-C: TrainInterrupted; so too once
    ``stopped()`` (checked before each step: a signal whose KeyboardInterrupt was lost), before the
    first step a KeyboardInterrupt."""
    import numpy as np
    import torch
    import torch.distributed as dist

    from ..paths import file_sha256
    from .parallel import load_optimizer, prepare

    tcfg.check()
    cfg = model.cfg
    check_fit(cfg, tokenizer, tcfg)
    if tcfg.semantic_emb_dropout and cfg.dep_q == 0:
        raise ConfigError("train: --semantic-emb-dropout drops the front-end's own semantic codes, but this one "
                          "generates no audio (dep_q 0): leave it at 0")
    if cfg.dep_q == 1 and tcfg.semantic_weight == 0:
        raise ConfigError("train: --semantic-weight 0 with one audio codebook (dep_q 1): its audio would not be "
                          "learned at all (--acoustic-weight weighs codebooks 1 and on); give it a weight > 0")
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if tcfg.shard:
        check_shard(world)
    device = torch.device(device)
    manifest = manifest_path(manifest)
    manifest_sha = file_sha256(manifest)
    step, state, rec, ran = 0, None, {"frontend": frontend_identity(start)}, None  # (a folder: its absolute path)
    if resume is not None:
        state = load_train_state(Path(resume))
        check_resume(state["train"], tcfg, manifest_sha, world, resume)
        step = int(state["step"])
        if step >= tcfg.steps:
            raise ConfigError(f"train: {resume} is at step {step} already, so --steps {tcfg.steps} leaves nothing to "
                              f"do: give --steps above {step}")
        rec = {"frontend": state["train"].get("frontend"), "resumed_from": str(Path(resume).resolve())}
        ran = recorded_config(state["train"])
    listed = check_listed(manifest, resume, echo if rank == 0 else None)  # (the dialogues it read: load_examples reads them no more)
    clear = out is not None and check_out(out, overwrite, resume)  # (removed once OUT is locked)
    for line in schedule_warnings(tcfg, step, ran) if rank == 0 else ():
        echo(line)
    examples = load_examples(manifest, codec, tokenizer, cfg, tcfg.use_cache, codec_spec=codec_spec, rank=rank,
                             world=world, echo=echo if rank == 0 else (lambda s: None), listed=listed)
    net = prepare(model, tcfg, device)  # (DDP, or the sharded front-end that takes model's place)
    if tcfg.shard:
        model = net  # (the optimizer is made on what it holds)
    model.train()
    opt = make_optimizer(model, tcfg)
    if state is not None:
        load_optimizer(model, opt, state["optimizer"], resume)  # (hyper-parameters: check_resume made them ours)
        del state
        if rank == 0:
            echo(f"resumed from {resume} at step {step}")
    feed = batches(examples, cfg, tcfg, rank, world, skip=step)  # (past the batches the resumed run took)
    losses, last, t0, frames, acc = [], None, time.perf_counter(), 0, []
    saved_at, resumed_at = None, Path(resume).resolve() if resume is not None else None  # (every process: the last
    # due save's step; the checkpoint resumed from, resolved now: OUT/latest later is this run's newest save)
    if stopped():
        raise KeyboardInterrupt
    with contextlib.ExitStack() as held:  # (rank 0: OUT/.lock, for the run's life, released on any error: a second
        # run into OUT is refused)
        if out is not None and rank == 0:
            held.enter_context(out_lock(Path(out)))
            if clear:
                clear_out(Path(out))
            if resume is not None and (note := moved_back_note(Path(out), Path(resume))):
                echo(f"warning: {note}")
            _sweep(Path(out), echo)
        own = resume is not None and out is not None and Path(resume).resolve().parent == Path(out).resolve()
        rows = RunLog(out if rank == 0 else None, echo, step, tcfg.log_every, own)  # (appended in the run's own OUT)
        if rank == 0:
            layout = ", sharded" if tcfg.shard else ""
            accum = f" x {tcfg.grad_accum} forwards" if tcfg.grad_accum > 1 else ""
            echo(f"training on {counted(len(examples), 'dialogue')}, {counted(world, 'process', 'processes')}{layout}, "
                 f"{counted(tcfg.batch_size, 'window')} of <= {tcfg.window_frames} frames each{accum}, "
                 f"{tcfg.precision}, steps {step}..{tcfg.steps}")
            rows.header()
        try:
            try:
                while step < tcfg.steps:
                    if stopped():
                        raise KeyboardInterrupt
                    lr = lr_at(step, tcfg)
                    for g in opt.param_groups:
                        g["lr"] = lr
                    opt.zero_grad(set_to_none=True)
                    parts, n = step_gradients(net, feed, cfg, tcfg, step, rank, device, lr)
                    if tcfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                    opt.step()
                    step += 1
                    losses.append(parts[0])
                    acc.append(parts)
                    frames += n * world
                    if step % max(1, tcfg.log_every) == 0 or step == tcfg.steps:
                        dt = max(time.perf_counter() - t0, 1e-9)
                        m = np.mean(acc, axis=0)
                        if distributed:  # (the global batch's: the mean over the processes)
                            t = torch.tensor(m, dtype=torch.float64, device=device)
                            dist.all_reduce(t)
                            m = (t / world).tolist()
                        if rank == 0:
                            rows.row(step, m, lr, frames / dt, len(acc))
                        t0, frames, acc = time.perf_counter(), 0, []
                    due = step == tcfg.steps or (tcfg.save_every and step % tcfg.save_every == 0)
                    if out is not None and due and (rank == 0 or tcfg.shard):  # (sharded: every process writes its
                        # optimizer shard; rank 0 saves the rest, the whole weights gathered to it)
                        try:
                            saved = save_step(model, opt, Path(out), step, rank, tcfg, manifest, manifest_sha,
                                              world=world, codec_spec=codec_spec, tokenizer_spec=tokenizer_spec,
                                              extra=rec, codec=codec)
                        except SaveFailed as exc:  # (a full disk: what to resume once space is freed)
                            free = "free space" if exc.full else "fix what stopped the save"
                            exc.args = (f"{exc}; {resume_note(last, out, resume, free)}",)
                            raise
                        if saved is not None:
                            last = saved
                            echo(f"saved {last}")
                            _sweep(Path(out), echo)  # (a stopped save's, once untouched long enough)
                    if out is not None and due:
                        saved_at = step
                if distributed:
                    dist.barrier()  # (every process ends here: none leaves while another still saves)
            except RuntimeError as exc:  # (inside: a Ctrl-C that comes meanwhile is the outer except's)
                if not (distributed and lost_peer(exc)):
                    raise
                if stopped():  # (a Ctrl-C reached every process: another one stopped for it first)
                    raise KeyboardInterrupt from None
                saved = last_checkpoint(last, out, saved_at)
                lost = f"another process of this run stopped at step {step} (a collective failed: {lost_cause(exc)})"
                if step < tcfg.steps or out is not None and (saved is None or saved_at != step):  # (else all saved)
                    raise ProcessLost(f"train: {lost}; {resume_note(saved, out, resume)}") from None
                from ..cli import say  # (one write: torchrun's processes share stderr)

                say(f"warning: train: {lost} after the last step's save: training ended at step {step}"
                    + (f", its last checkpoint {saved} is saved" if saved else ""))
        except KeyboardInterrupt:
            raise TrainInterrupted(step, last, Path(out) if out is not None else None, rank, resume) from None
        except Diverged as exc:  # (any rank: rank 0's last save, or the checkpoint resumed from)
            saved = last_checkpoint(last, out, saved_at) or resumed_at
            exc.args = (f"{exc}{restart_hint(saved, tcfg)}",)
            raise
    model.eval()
    return TrainResult(model, step, losses, last)


def step_gradients(net, feed, cfg, tcfg: TrainConfig, step: int, rank: int, device, lr: float):
    """The forwards and backwards of one step, this process's (tcfg.grad_accum batches from
    ``feed``, each loss over grad_accum: the gradients are those of the mean loss; under DDP they
    are reduced once, at the last backward; sharded, at each, so they stay sharded) -> ((loss,
    text loss, audio loss) means, frames read)."""
    import contextlib

    import torch

    from .loss import frontend_loss
    from .parallel import compute

    total, frames = [0.0, 0.0, 0.0], 0
    for f in range(tcfg.grad_accum):
        codes, oracle = next(feed)
        inputs = input_dropouts(codes, cfg, tcfg, step, slot(tcfg, rank, f))  # (None: the codes as they are)
        codes, oracle = codes.to(device), oracle.to(device)
        inputs = inputs.to(device) if inputs is not None else None
        last = f == tcfg.grad_accum - 1
        with net.no_sync() if not last and hasattr(net, "no_sync") else contextlib.nullcontext():
            with compute(tcfg, device):
                res = net(codes, oracle=oracle if cfg.oracle else None, inputs=inputs)
            loss, parts = frontend_loss(res, codes, cfg, tcfg)
            if not torch.isfinite(loss):  # (step counts from 0; the log and the step-N checkpoints from 1)
                raise Diverged(f"train: the loss is {float(loss.detach())} at step {step + 1} (lr {lr:.3g}): the run "
                               f"diverged")  # (a ConfigError, in a line from the CLI; train adds what to do)
            (loss / tcfg.grad_accum).backward()
        for i, v in enumerate((float(loss.detach()), parts["text"], parts["audio"])):
            total[i] += v / tcfg.grad_accum
        frames += codes.shape[0] * codes.shape[2]
    return tuple(total), frames


def _sweep(out: Path, echo: Callable[[str], None]) -> None:
    """Remove the temporary files a stopped save left in OUT (checkpoint.remove_stale_temporaries),
    saying which: they are hidden, and as large as a checkpoint."""
    for path, size in remove_stale_temporaries(out):
        echo(f"removed {path} ({size / 1e6:.1f} MB): a temporary file of a save that was stopped")


# --- the command ------------------------------------------------------------------------------
def _knob_adder(p):
    """add(FLAG, help=..., note=..., resume=..., **kw): an OPTION_KNOBS option, default None, its
    help saying the knob's default (then ``note``) and what an unset one is on --resume."""
    d = TrainConfig()

    def add(flag: str, *, help: str, note: str = "", resume: str = "the run's own", **kw) -> None:
        value = getattr(d, OPTION_KNOBS[flag[2:].replace("-", "_")])
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
        p.add_argument(flag, default=None, help=f"{help} (default {shown}{note}; with --resume {resume})", **kw)
    return add


def add_arguments(p) -> None:
    # every number is checked as it is parsed: a bad value is argparse's error naming the option, exit
    # status 2, before any import (was: --batch-size 0, --lr -1 ... exit status 1, after the imports)
    from ..cliargs import Ordered, at_least, more_than
    from .config import SEED_LIMIT

    d = TrainConfig()
    p.add_argument("manifest", help="the JSONL manifest of the dialogues (kame data synth's OUT/train.jsonl, or OUT)")
    p.add_argument("-o", "--out", required=True, help="folder for the checkpoints (OUT/step-N, OUT/latest)")
    p.add_argument("--frontend", default=None,
                   help="the front-end to start from: a checkpoint folder, hf://..., or random:PRESET, "
                        "optionally with config keys: 'random:small;depformer_dim=256,depformer_num_layers=2' "
                        "(default random:tiny; with --resume: the checkpoint)")
    p.add_argument("--codec", default="auto",
                   help="the codec whose codes it learns (default auto: the checkpoint's own, embedded for random:)")
    p.add_argument("--text-card", type=at_least(1), default=None,
                   help="a random: front-end's text vocabulary (default: the tokenizer's size when the preset's "
                        "is smaller)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="go on from OUT/step-N or OUT/latest (its weights, optimizer and settings). Resume only "
                        "checkpoints you trust: a sharded run's optimizer/.metadata is a pickle (kame reads it "
                        "with an unpickler that builds only torch's checkpoint metadata, and refuses a "
                        "train_state.pt that points elsewhere, but torch's format is not meant for untrusted "
                        "files)")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an OUT that holds a run (removes its "
                   "step-N, latest and log.jsonl; with --resume: another run's OUT)")
    p.add_argument("--steps", type=at_least(1), default=d.steps,
                   help=f"optimizer steps in all (default {d.steps}; a resumed run goes on up to it)")
    knob = _knob_adder(p)
    knob("--batch-size", type=at_least(1), help="windows per process per forward",
         resume="the run's global batch over this run's processes and --grad-accum")
    knob("--grad-accum", type=at_least(1), metavar="N", help="forwards per process per step, their gradients summed: a "
         "global batch of batch-size x processes x N windows in the memory of batch-size (kame_finetune's "
         "gradient_accumulation_steps)")
    knob("--window", type=at_least(2), help="frames of 80 ms per window, KAME: 128-512 (10-41 s)",
         note=", or the front-end's attention context when shorter")
    p.add_argument("--window-offsets", choices=("on", "off"), default=None,
                   help="on (default): a long dialogue's windows start at a frame drawn per epoch, so the cuts "
                        "move; off: at frame 0 every epoch (with --resume: the run's own)")
    knob("--lr", type=more_than(0), help="peak learning rate (AdamW)")
    knob("--warmup", type=at_least(0), help="steps of linear warmup to --lr")
    knob("--schedule", choices=("constant", "cosine"), help="after the warmup: constant, or cosine down to 0.1 x --lr")
    knob("--weight-decay", type=at_least(0, float), help="AdamW's, on every parameter")
    knob("--grad-clip", type=at_least(0, float), help="max global gradient norm, 0: no clipping")
    p.add_argument("--precision", choices=("auto",) + PRECISIONS, default="auto",
                   help="bf16: fp32 weights and optimizer, bf16 forward and backward (KAME's); auto: bf16 on "
                        "CUDA, fp32 on the CPU, the run's own with --resume (default)")
    p.add_argument("--shard", action="store_true",
                   help="under torchrun: split weights, gradients and optimizer state over the processes (FSDP2, "
                        "like KAME's ZeRO-3) instead of a whole copy in each")
    p.add_argument("--checkpoint-activations", action="store_true",
                   help="recompute each layer's activations in the backward: less memory for long windows, "
                        "about a third more compute")
    p.add_argument("--no-oracle-aug", action="store_true", help="train on the oracle events as recorded")
    knob("--skip-prob", type=at_least(0, float, maximum=1), nargs=2, action=Ordered, metavar=("A", "B"),
         help="each prediction is skipped with a per-dialogue probability ~ U[A, B]")
    knob("--shift-prob", type=at_least(0, float, maximum=1), help="chance of shifting a dialogue's oracle stream",
         note=", KAME's")
    knob("--shift-right", type=at_least(0), nargs=2, action=Ordered, metavar=("A", "B"),
         help="a right shift's frames, A..B")
    knob("--shift-left", type=at_least(0), nargs=2, action=Ordered, metavar=("A", "B"),
         help="a left shift's frames, A..B")
    knob("--hint-only", type=at_least(0), nargs=2, action=Ordered, metavar=("A", "B"),
         help="KAME's hint-only curriculum: every window shows only its true replies (the predictions marked "
              "use_hint: each turn's true reply) until step A, fewer and fewer until none from step B", note=": off")
    knob("--oracle-echo", type=at_least(0), nargs=2, action=Ordered, metavar=("A", "B"),
         help="a curriculum for a front-end trained from scratch: until step A every window's oracle gives the "
              "agent's own words at the frames it says them (copying it is then the easy thing to learn), then "
              "closer and closer to where a prediction streams them, and its oracle as recorded from step B",
         note=": off")
    knob("--jitter", type=at_least(0), metavar="FRAMES",
         help="each prediction arrives 0..FRAMES frames later, drawn per prediction (KAME's optional time "
              "jitter, e.g. 4 = 0.32 s)", note=": off")
    knob("--slow-prob", type=at_least(0, float, maximum=1), metavar="P",
         help="with probability P per dialogue, its predictions stream as from an LLM of --slow-rate tokens/s, "
              "the tokens that come after their frame skipped as the live feed skips them: for a front-end that "
              "will run behind an LLM slower than the feed's 12.5 tokens/s (part of the oracle's augmentation: "
              "not with --no-oracle-aug)", note=": off")
    knob("--slow-rate", type=more_than(0), nargs=2, action=Ordered, metavar=("A", "B"),
         help="--slow-prob's LLM speed, drawn per dialogue from U[A, B], in oracle-vocabulary tokens/s (the ids "
              "the front-end is fed, kame's llm_tokens_per_s: some 1.3-1.7 times an LLM's own tokens/s); only "
              "with --slow-prob")
    knob("--text-token-dropout", type=at_least(0, float, maximum=1), metavar="P",
         help="KAME's input dropout: each text token the model reads (its inner monologue; not pad) is "
              "read as pad with probability P; the targets stay")
    knob("--text-emb-dropout", type=at_least(0, float, maximum=1), metavar="P",
         help="KAME's: with probability P per window, the model reads none of its own text stream "
              "(the oracle still added)")
    knob("--semantic-emb-dropout", type=at_least(0, float, maximum=1), metavar="P",
         help="KAME's: with probability P per window, the model reads none of its own semantic audio "
              "codes (codebook 0), so it leans on its text and oracle")
    knob("--semantic-weight", type=at_least(0, float), metavar="W",
         help="the weight of codebook 0 in the audio loss's weighted mean, relative to --acoustic-weight (only "
              "their ratio matters; KAME's 100:1 was made for Mimi, whose first codebook carries the words)")
    knob("--acoustic-weight", type=at_least(0, float), metavar="W",
         help="the weight of each codebook after the first in the audio loss's weighted mean")
    p.add_argument("--no-cache", action="store_true", help="encode the audio even where codes.npz exists")
    knob("--seed", type=at_least(0, maximum=SEED_LIMIT - 1),
         help="seeds the batches and the augmentation: 0 to 2**32 - 1")
    knob("--log-every", type=at_least(1), help="steps between log rows")
    knob("--save-every", type=at_least(0), help="steps between checkpoints, 0: only at the end")
    p.add_argument("--device", default="auto", help="auto (cuda when there is one; default), cpu, cuda, or "
                   "cuda:N in one process (under torchrun: cuda, each process on its LOCAL_RANK's GPU); not mps yet")


def main(args) -> int:
    """0 (also after a signal that came as the last step ended: the run finished and saved);
    130 after Ctrl-C; TERMINATED_STATUS (143) after SIGTERM (docker stop, a preemption), a
    KeyboardInterrupt as Ctrl-C's once the torch op under way returns (was: killed at once, nothing
    said): the step, the last checkpoint and the --resume to give are said. A SIGTERM is also
    recorded, and the record checked before each step and at the end, since its KeyboardInterrupt
    is lost where Python only reports it (a finalizer, a weakref callback: "Exception ignored in";
    kame.runtime.signals' _Record). Not under torchrun: it sends SIGTERM to every worker when one
    fails or it is stopped itself, and one waiting in a collective for another that stopped first
    would handle it only at torchrun's SIGKILL, 30 s later. Under torchrun a Ctrl-C (SIGINT) is
    recorded too: a process whose KeyboardInterrupt a collective save took (torch.distributed.
    checkpoint catches it) or that learnt first that another process stopped for it says it as
    its own Ctrl-C. Under torchrun main does not return after a stop: once its line is said the
    process leaves with 130, or 0 after the last step (_stopped), the caller's finally blocks and the interpreter's exit
    hooks not run (a caller in the same process, kame.cli's main or a test, does not go on)."""
    from ..cli import say
    from ..runtime.interrupt import exit_status, sigterm_as_ctrl_c, stopped_by

    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    by: list[str] = []  # "SIGTERM" once one came (under torchrun: "SIGINT")

    def status() -> int:
        return exit_status(by[0] if by else None)

    try:
        with sigterm_as_ctrl_c(sigterm=not torchrun, sigint=torchrun) as by:
            result = run(args, stopped=lambda: bool(by))
    except TrainInterrupted as exc:
        if exc.rank == 0:
            saved = resume_note(exc.last, exc.out, exc.resumed)
            say(f"kame train: {stopped_by(by[0] if by else None)} at step {exc.step}; {saved}")
        return _stopped(status(), torchrun)
    except KeyboardInterrupt:  # (before the first step: loading, encoding; said as a SIGTERM is, was: nothing)
        if os.environ.get("RANK", "0") == "0":
            what = stopped_by("SIGTERM") if "SIGTERM" in by else "interrupted (Ctrl-C)"
            say(f"kame train: {what} before training began; nothing saved")
        return _stopped(status(), torchrun)
    if by and os.environ.get("RANK", "0") == "0":  # (one that came in the last step, its KeyboardInterrupt lost)
        say(f"kame train: {stopped_by(by[0])} as training ended at step {result.step}; its last checkpoint "
            f"{result.last_checkpoint} is saved")
    # 0 all the same: the run finished and saved, as kame's main keeps a finished command's status (was: 130 / 143)
    return _stopped(0, torchrun) if by else 0


def _stopped(status: int, torchrun: bool) -> int:
    """main's ``status`` after a signal stopped the run or came as it ended (its line said, OUT's
    files closed: OUT/.lock released, the process group left). Under torchrun the process leaves here, at once: the signal
    interrupted it in a collective (a step's, a --shard save's), which can leave a thread of torch's
    whose end at the interpreter's exit aborts the process after kame's line (SIGABRT, "terminate
    called without an active exception", exit -6 instead of 130, about 1 run in 10 on loaded cores).
    The log's handlers and stdout / stderr are flushed first; the interpreter's exit hooks are not
    run (torch's among them): kame.backend.childproc.leave_now, which tests patch."""
    if torchrun:
        from ..backend import childproc

        childproc.leave_now(status, exit_hooks=False)
    return status
