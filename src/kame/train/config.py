"""The training config of `kame train` (one dataclass, every knob commented) and the rules that
tie a resumed run to the run it continues.

    tcfg = TrainConfig(steps=400, lr=1e-4, grad_accum=4).check()
    check_resume(record, tcfg, manifest_sha, world, "runs/x/latest")   # ConfigError naming each change
    lr_at(step, tcfg)                                                   # warmup, then constant or cosine
    resume_record(ckpt), load_train_state(ckpt)                         # config.json's kame.train record; train_state.pt
                                                                        # (a newer kame's: "upgrade kame" first)
    check_known(record, path)                                           # ConfigError: a setting of a newer kame

A checkpoint records its TrainConfig in config.json (``kame.train.config``, kame.train.finetune);
``recorded_config`` reads one back, knobs added since taking the behaviour that run had.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..numeric import is_finite_number
from ..errors import CheckpointError, ConfigError
from .parallel import PRECISIONS

# TrainConfig.seed is below this (a 32-bit seed): the batch order's torch generator is seeded with
# seed * 100_003 + epoch (kame.train.batching.batches), which torch takes only below 2**64
SEED_LIMIT = 2**32
# the TrainConfig fields whose kame train option is named otherwise (kame.train.launch.OPTION_KNOBS);
# every other field's option is --FIELD, "_" written "-"
OTHER_OPTIONS = {"warmup_steps": "warmup", "window_frames": "window", "jitter_frames": "jitter"}
SLOW_RATE = (2.0, 12.5)  # slow_rate's default
STATE = "train_state.pt"  # beside a checkpoint's config.json: the optimizer's state and the step


@dataclass
class TrainConfig:
    # optimizer (KAME's: AdamW, lr 3e-5, warmup 100)
    lr: float = 3e-5  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    eps: float = 1e-5  # AdamW eps
    weight_decay: float = 0.1  # on every parameter, norms and biases too (as KAME's AdamW)
    warmup_steps: int = 100  # linear warmup from lr / warmup_steps to lr
    schedule: str = "constant"  # after warmup: "constant", or "cosine" down to min_lr_ratio * lr at `steps`
    min_lr_ratio: float = 0.1  # cosine's floor, as a share of lr
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    # layout (kame.train.parallel): what a large front-end needs; none changes the loss
    precision: str = "fp32"  # "fp32", or "bf16": fp32 weights and optimizer, bf16 forward/backward (KAME's)
    shard: bool = False  # split weights, gradients and optimizer state over torchrun's processes (FSDP2, ZeRO-3)
    checkpoint_activations: bool = False  # recompute each layer's activations in the backward
    # data
    steps: int = 1000  # optimizer steps in all (a resumed run continues up to this)
    batch_size: int = 4  # windows per process per forward (the global batch: batch_size * world size * grad_accum)
    grad_accum: int = 1  # forwards per process per step, their gradients summed (a larger batch in the same memory)
    window_frames: int = 256  # frames per window (KAME: 128-512; at most the model's context)
    window_offsets: bool = True  # a long dialogue's windows start at a frame drawn per epoch (off: at frame 0)
    use_cache: bool = True  # read each dialogue's codes.npz when it has one
    # loss (kame.train.loss)
    text_pad_weight: float = 0.5  # text targets equal to the padding id
    semantic_weight: float = 100.0  # audio codebook 0
    acoustic_weight: float = 1.0  # audio codebooks 1..dep_q-1
    # oracle augmentation (KAME's), on the dialogue's events before oracle_timeline
    oracle_aug: bool = True  # off: the events as recorded (skip, shift, jitter ignored; slow_prob refused)
    skip_prob: tuple[float, float] = (0.1, 0.7)  # per-dialogue prediction-skip probability ~ U[a, b]
    shift_prob: float = 1.0  # chance of a whole-stream shift, then right or left at even odds (KAME: 1.0)
    shift_right: tuple[int, int] = (1, 10)  # frames, inclusive
    shift_left: tuple[int, int] = (1, 15)  # frames, inclusive
    hint_only: tuple[int, int] = (0, 0)  # KAME's hint-only curriculum: (A, B) steps, below (kame.train.batching)
    # a curriculum for a front-end trained from scratch (not KAME's, which starts from Moshi): (A, B) steps,
    # the oracle gives the agent's own words at the frames it says them until step A, then ever closer
    # to where a prediction streams them, and as recorded from step B (kame.train.batching.echo_oracle)
    oracle_echo: tuple[int, int] = (0, 0)
    jitter_frames: int = 0  # each prediction arrives 0..this many frames later (KAME's optional time jitter; 0: off)
    # kame's, for a front-end fed live by an LLM slower than the feed's 12.5 tokens/s: with this chance
    # per dialogue its predictions stream at r ~ U[slow_rate] tokens/s, and the tokens that come after
    # their frame are skipped, as live (kame.train.batching.streamed; 0: off, the data's own timing; part
    # of the augmentation: oracle_aug False refuses it). r is in oracle-vocabulary tokens/s (the ids the
    # front-end is fed: kame's llm_tokens_per_s), some 1.3-1.7 times an LLM's own tokens/s
    slow_prob: float = 0.0
    slow_rate: tuple[float, float] = SLOW_RATE  # oracle tokens/s, A <= r <= B (only with slow_prob > 0)
    # input dropouts (KAME's fine-tune; 0 = off, its default): what the temporal transformer reads,
    # never the targets (kame.train.batching.input_dropouts)
    text_token_dropout: float = 0.0  # each of the model's text tokens but pad, read as pad
    text_emb_dropout: float = 0.0  # per window: the model's whole text stream read as nothing
    semantic_emb_dropout: float = 0.0  # per window: the model's own semantic audio codes read as nothing
    # bookkeeping
    seed: int = 0  # batches and augmentation: 0 <= seed < SEED_LIMIT (2**32)
    log_every: int = 10  # steps between log rows
    save_every: int = 500  # steps between checkpoints (0: only at the end)

    def check(self) -> "TrainConfig":
        """ConfigError naming every wrong knob, only those, by its kame train option (and the
        TrainConfig field where the two differ): "train: --window (window_frames) must be an int >= 2
        frames, got 1; --lr must be ..." (kame train range-checks its options as they are parsed: what
        is refused here is mostly a TrainConfig made in code; was: "TrainConfig.batch_size" for three
        knobs, an option or a bare word for the rest, and the first wrong one only)."""
        bad = []

        def need(ok, field: str, what: str) -> None:
            if not ok:
                flag = "--" + OTHER_OPTIONS.get(field, field).replace("_", "-")
                name = f"{flag} ({field})" if field in OTHER_OPTIONS else flag
                bad.append(f"{name} {what}")

        def whole(v, least: int) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= least

        for field, least in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("log_every", 1)):
            need(whole(getattr(self, field), least), field, f"must be an int >= {least}, got {getattr(self, field)!r}")
        need(whole(self.save_every, 0), "save_every", f"must be an int >= 0 (0: only at the end), got {self.save_every!r}")
        need(whole(self.seed, 0) and self.seed < SEED_LIMIT, "seed", f"must be an int >= 0 and < 2**32, got {self.seed!r}")
        for field, least in (("lr", "> 0"), ("weight_decay", ">= 0"), ("grad_clip", ">= 0 (0: no clipping)")):
            v = getattr(self, field)  # (a bool is refused)
            need(is_finite_number(v) and (v > 0 if field == "lr" else v >= 0), field,
                 f"must be a finite number {least}, got {v!r}")
        need(whole(self.grad_accum, 1), "grad_accum", f"must be an int >= 1 forwards per step, got {self.grad_accum!r}")
        need(whole(self.window_frames, 2), "window_frames", f"must be an int >= 2 frames, got {self.window_frames!r}")
        need(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        need(self.schedule in ("constant", "cosine"), "schedule", f"must be 'constant' or 'cosine', got {self.schedule!r}")
        need(0 <= self.skip_prob[0] <= self.skip_prob[1] <= 1, "skip_prob",
             f"A B must be 0 <= A <= B <= 1, got {self.skip_prob}")
        need(0 <= self.shift_prob <= 1, "shift_prob", f"must be in [0, 1], got {self.shift_prob}")
        for field in ("hint_only", "oracle_echo"):
            v = getattr(self, field)
            need(len(v) == 2 and 0 <= v[0] <= v[1], field, f"A B must be steps 0 <= A <= B, got {v}")
        need(whole(self.jitter_frames, 0), "jitter_frames", f"must be an int >= 0 frames, got {self.jitter_frames!r}")
        need(is_finite_number(self.slow_prob) and 0 <= self.slow_prob <= 1, "slow_prob",
             f"must be in [0, 1], got {self.slow_prob!r}")
        need(len(self.slow_rate) == 2 and all(is_finite_number(r) for r in self.slow_rate)
             and 0 < self.slow_rate[0] <= self.slow_rate[1], "slow_rate",
             f"A B must be tokens/s 0 < A <= B, got {self.slow_rate}")
        # (was: both did nothing, unsaid)
        need(self.oracle_aug or not self.slow_prob, "slow_prob", "re-times the oracle's augmentation, which "
             "--no-oracle-aug turns off: drop one of them")
        need(self.slow_prob or tuple(self.slow_rate) == SLOW_RATE, "slow_rate", "is --slow-prob's speed, and "
             "--slow-prob is 0 (off): give --slow-prob P too, or drop --slow-rate")
        for field in ("text_token_dropout", "text_emb_dropout", "semantic_emb_dropout"):
            need(0 <= getattr(self, field) <= 1, field, f"must be in [0, 1], got {getattr(self, field)}")
        for field in ("semantic_weight", "acoustic_weight"):
            w = getattr(self, field)
            need(is_finite_number(w) and w >= 0, field, f"must be a finite weight >= 0, got {w!r}")
        if self.semantic_weight == 0 and self.acoustic_weight == 0:
            bad.append("--semantic-weight and --acoustic-weight are both 0: the audio would not be learned at all; "
                       "give one of them a weight > 0")
        for field in ("shift_right", "shift_left"):
            a, b = getattr(self, field)
            need(0 <= a <= b, field, f"A B must be 0 <= A <= B frames, got {a} {b}")
        if bad:
            raise ConfigError(f"train: {'; '.join(bad)}")
        return self


# may change on --resume (they do not change what a step does); batch_size and grad_accum too when
# the global batch (batch_size * world size * grad_accum) stays
RESUMABLE = ("steps", "log_every", "save_every", "use_cache", "shard", "checkpoint_activations")
# knobs added since runs were recorded without them, whose earlier behaviour is not their default
LEGACY = {"window_offsets": False}


def recorded_config(rec: dict) -> dict:
    """The TrainConfig (as JSON) a checkpoint's ``kame.train`` record ``rec`` ran with, every knob in
    it: one the record lacks was added since, and takes the behaviour that run had (LEGACY, else
    the knob's default). A knob this kame does not know is kept (check_known refuses it)."""
    return {**json.loads(json.dumps(asdict(TrainConfig()))), **LEGACY, **rec.get("config", {})}


def unknown_settings(config: dict) -> list[str]:
    """The keys of a ``kame.train`` record's config that this kame has no TrainConfig knob for, sorted."""
    return sorted(set(config) - set(TrainConfig.__dataclass_fields__))


def check_known(rec: dict, path) -> None:
    """ConfigError when a ``kame.train`` record ``rec`` (read from ``path``) holds a training
    setting this kame has no knob for: a newer kame (or another tool) wrote it, and resuming
    without that setting would silently train another way."""
    config = rec.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError(f"train: {path}: its kame.train config is not a JSON object of settings: resume from a "
                          f"checkpoint kame train wrote (OUT/step-N or OUT/latest)")
    unknown = unknown_settings(config)
    if unknown:
        raise ConfigError(f"train: {path} records training settings this kame does not know "
                          f"({', '.join(unknown)}): it was made by a newer kame (or another tool); upgrade kame "
                          f"to resume it")


def check_resume(rec: dict, tcfg: TrainConfig, manifest_sha: str, world: int, where) -> None:
    """ConfigError naming every difference between the run a checkpoint's ``kame.train`` record
    ``rec`` describes and this one, but those that leave the steps as they were (RESUMABLE); first
    a setting this kame does not know (check_known: ``where``'s train_state.pt holds ``rec``)."""
    check_known(rec, Path(where) / STATE)
    new = json.loads(json.dumps(asdict(tcfg)))
    old = recorded_config(rec)
    diffs = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items()
             if k not in RESUMABLE + ("batch_size", "grad_accum") and old.get(k) != v]
    if global_batch(old, rec.get("world_size", 1)) != global_batch(new, world):
        diffs.append(f"global batch (batch_size x processes x grad_accum) {old.get('batch_size')} x "
                     f"{rec.get('world_size')} x {old.get('grad_accum')} -> {tcfg.batch_size} x {world} x "
                     f"{tcfg.grad_accum}")
    if rec.get("manifest_sha256") != manifest_sha:
        diffs.append(f"the manifest ({rec.get('manifest')}, sha256 {rec.get('manifest_sha256')}) -> sha256 "
                     f"{manifest_sha}")
    if diffs:
        raise ConfigError(f"train: --resume {where} continues another run: " + "; ".join(diffs) + ". A resumed run "
                          f"must take the batches and settings of the run it continues (only --steps, --log-every, "
                          f"--save-every, --no-cache, --shard, --checkpoint-activations, and --batch-size and "
                          f"--grad-accum with the same batch x processes x grad-accum, may change): give the same options (a value option left out is the "
                          f"run's own), or start a new run (another -o) from it with --frontend {where}")


def global_batch(knobs: dict, world: int) -> int:
    """The windows of one step over all the processes, of a TrainConfig as JSON (recorded_config's)."""
    return int(knobs.get("batch_size", 0)) * world * int(knobs.get("grad_accum", 1))


def lr_at(step: int, tcfg: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (0-based)."""
    if step < tcfg.warmup_steps:
        return tcfg.lr * (step + 1) / tcfg.warmup_steps
    if tcfg.schedule == "constant":
        return tcfg.lr
    span = max(1, tcfg.steps - tcfg.warmup_steps)
    frac = min(1.0, (step - tcfg.warmup_steps) / span)
    floor = tcfg.min_lr_ratio * tcfg.lr
    return floor + (tcfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * frac))


def schedule_warnings(tcfg: TrainConfig, step: int = 0, ran: dict | None = None) -> list[str]:
    """What kame train warns of in the learning rate schedule: a warmup longer than --steps (the
    peak never reached); a cosine run resumed at ``step`` with another --steps than the run's
    (``ran``: its config, recorded_config's): the decay is stretched (or squeezed) over the new
    --steps, so the learning rate jumps."""
    lines = []
    if tcfg.warmup_steps > tcfg.steps:
        lines.append(f"warning: --warmup {tcfg.warmup_steps} is more than --steps {tcfg.steps}: the learning rate "
                     f"never reaches --lr {tcfg.lr:g} (it ends at {lr_at(tcfg.steps - 1, tcfg):.3g})")
    before = int((ran or {}).get("steps", tcfg.steps))
    if ran is not None and tcfg.schedule == "cosine" and before != tcfg.steps:
        was = lr_at(step, replace(tcfg, steps=before))
        lines.append(f"warning: --schedule cosine decays over --steps, the run's {before} and now {tcfg.steps}: the "
                     f"learning rate of step {step + 1} is {lr_at(step, tcfg):.3g} (the run's schedule: {was:.3g}), "
                     f"and it decays again to {tcfg.min_lr_ratio * tcfg.lr:.3g} by step {tcfg.steps} "
                     f"(not the run it would have been with --steps {tcfg.steps} from the start)")
    return lines


# --- a checkpoint to resume (kame.train.finetune wrote it) -------------------------------------
def resume_record(folder: Path) -> dict:
    """The kame.train record in a checkpoint's config.json ({} when it has none); CheckpointError
    when config.json is missing or not a JSON object; ConfigError when a newer kame wrote it
    (kame.model.config.newer_kame: its format is higher, or its kame.written_by is later and the
    record holds a setting this kame does not know), checked first, as loading the checkpoint
    would; ConfigError when the record holds a setting this kame does not know (check_known)."""
    from ..model.config import newer_kame

    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"train: --resume {folder} holds no config.json (an incomplete checkpoint?): give a "
                              f"checkpoint kame train wrote (OUT/step-N or OUT/latest)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"train: --resume {folder}: its config.json cannot be read as JSON ({exc}): give a "
                              f"checkpoint kame train wrote (OUT/step-N or OUT/latest)") from None
    kame = config.get("kame") if isinstance(config, dict) else None
    if not isinstance(config, dict) or not isinstance(kame or {}, dict):
        raise CheckpointError(f"train: --resume {folder}: its config.json is not a front-end's config (a JSON "
                              f"object): give a checkpoint kame train wrote (OUT/step-N or OUT/latest)")
    record = (kame or {}).get("train", {})
    record = record if isinstance(record, dict) else {}
    # (first: a newer kame's settings are not this one's to judge; was: check_known's "settings this kame does
    # not know" for a checkpoint of a newer format, and the format's "upgrade kame" only once it was loaded)
    settings = record.get("config")
    unknown = [f"kame.train.config.{k}" for k in unknown_settings(settings)] if isinstance(settings, dict) else []
    newer = newer_kame(config, unknown)
    if newer:
        raise ConfigError(f"train: --resume {folder}: its config.json was {newer}")
    check_known(record, path)
    return record


def load_train_state(folder: Path) -> dict:
    """A checkpoint's train_state.pt (its step, optimizer state and kame.train record), on the
    CPU, mapped from disk (a large run's optimizer state is read as it is loaded); CheckpointError
    naming the file when it is cut short, damaged, or not one kame train wrote."""
    import pickle

    import torch

    path = folder / STATE
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        why = str(exc).strip().split(". ")[0][:200] or type(exc).__name__  # (torch's first sentence)
        raise CheckpointError(f"train: {path} is truncated or not a kame train state ({why}): resume from "
                              f"another checkpoint (OUT/step-N)") from None
    if not (isinstance(state, dict) and isinstance(state.get("train"), dict) and "step" in state
            and "optimizer" in state):
        raise CheckpointError(f"train: {path} is truncated or not a kame train state (no step, optimizer and "
                              f"train record in it): resume from another checkpoint (OUT/step-N)")
    return state
