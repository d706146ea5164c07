"""`kame train`'s start of a run (finetune.main's ``run``): from the command's arguments to
finetune.train's loop. Under torchrun the process joins its group first, then the processes check
the command together (``_checked``, parallel.agree: one failing stops them all, said by each); the
front-end, its codec and tokenizer are loaded (kame.train.loading; sharded: rank 0 alone reads the
weights) and trained (finetune.train); the group is left at the end, however it ends."""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError
from .batching import manifest_path
from .checkpoint import (check_out, check_overwrite, check_restarted, check_unlocked, frontend_identity,
                         unfinished_note)
from .config import OTHER_OPTIONS, STATE, TrainConfig, global_batch, recorded_config, resume_record
from .loading import load_for_training
from .parallel import ProcessLost, agree, check_shard, lost_cause, lost_peer, resolve_precision, train_device
from .saving import put_back_stopped_saves, staging_folder, stopped_save_note

if TYPE_CHECKING:
    from .finetune import TrainResult

DIST_TIMEOUT_MIN = 60  # under torchrun: how long a process waits for the others (NCCL's default: 10)

# kame train's value options that set a TrainConfig knob (argparse dest -> knob; finetune.add_arguments adds
# them): unset (None), each takes the run's own value on --resume (knobs_from), else the knob's default
OPTION_KNOBS = {OTHER_OPTIONS.get(k, k): k for k in (
    "batch_size", "grad_accum", "window_frames", "lr", "warmup_steps", "schedule", "weight_decay", "grad_clip",
    "skip_prob", "shift_prob", "shift_right", "shift_left", "hint_only", "oracle_echo", "jitter_frames",
    "slow_prob", "slow_rate",
    "text_token_dropout", "text_emb_dropout", "semantic_emb_dropout", "semantic_weight", "acoustic_weight", "seed",
    "log_every", "save_every")}  # (the option names: config.OTHER_OPTIONS, the one table of renamed knobs)


def knobs_from(args, rec: dict | None, world: int) -> dict:
    """The OPTION_KNOBS knobs of ``args`` (argparse's), those left unset the run's own when ``rec``
    (a resumed run's kame.train record) is given, else their defaults. With --batch-size or
    --grad-accum unset, the run's global batch is kept over ``world`` processes when it divides
    evenly: the one given takes the rest; neither given, the batch per forward stays the run's
    and --grad-accum takes the rest (else the batch, else both are the run's own, and
    check_resume names the global batch)."""
    ran = recorded_config(rec) if rec is not None else asdict(TrainConfig())
    knobs = {}
    for opt, knob in OPTION_KNOBS.items():
        value = getattr(args, opt)
        value = ran[knob] if value is None else value
        knobs[knob] = tuple(value) if isinstance(value, list) else value  # (nargs=2 and JSON give lists)
    if rec is not None and (args.batch_size is None or args.grad_accum is None):
        # the run's global batch over this run's processes: the one of the two given takes the rest;
        # neither given, each forward keeps the run's batch (its memory) and the forwards per step change
        total = global_batch(ran, rec.get("world_size", 1))
        keep = "grad_accum" if args.batch_size is None and args.grad_accum is not None else "batch_size"
        other = "batch_size" if keep == "grad_accum" else "grad_accum"
        if total % (world * knobs[keep]) == 0:
            knobs[other] = total // (world * knobs[keep])
        elif args.batch_size is None and args.grad_accum is None and total % (world * knobs["grad_accum"]) == 0:
            knobs["batch_size"] = total // (world * knobs["grad_accum"])
    return knobs


def run(args, stopped: Callable[[], bool] = lambda: False) -> TrainResult:
    """main's work, returning what train returns (tests/train/test_finetune.py runs it under
    torchrun); ``stopped``: train's. Under torchrun the processes join their group first, then
    check the command (_checked) together (parallel.agree): one that fails, e.g. with a data
    folder or -o missing on its machine, stops them all at once, said by each (was: the others
    waited for it to join, silently, up to DIST_TIMEOUT_MIN)."""
    import torch
    import torch.distributed as dist

    from .finetune import train  # (finetune imports this module: main's run)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = train_device(args.device, world)
    cuda = device.type == "cuda"
    check_restarted(args.out, args.resume)  # (before the group: a restart's join can fail, on gloo's stale addresses)
    if world > 1:
        if cuda:
            torch.cuda.set_device(device)
        # (a collective waits this long: with --shard the others wait for rank 0 to read a 7B checkpoint alone)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=DIST_TIMEOUT_MIN))
    try:
        tcfg, record, start, manifest = agree(lambda: _checked(args, world, device)) if world > 1 else \
            _checked(args, world, device)
        spec = str(args.resume) if args.resume else start
        # (sharded: rank 0 alone reads the weights, on the CPU; the others build on the meta device and
        # get their shards from it in parallel.prepare)
        model, codec, codec_spec, tok, tok_spec = load_for_training(
            spec, args.codec, None if args.resume else args.text_card, torch.device("cpu") if tcfg.shard else device,
            weights=not tcfg.shard or not dist.is_initialized() or dist.get_rank() == 0)
        context = model.cfg.context
        if args.window is None and not args.resume and context is not None and tcfg.window_frames > context:
            tcfg = replace(tcfg, window_frames=context)  # (e.g. random:tiny's 250 frames)
        torch.manual_seed(tcfg.seed)
        rank0 = not dist.is_initialized() or dist.get_rank() == 0
        return train(model, codec, tok, manifest, args.out, tcfg, codec_spec=codec_spec, tokenizer_spec=tok_spec,
                     resume=args.resume, overwrite=args.overwrite, start=start, device=device,
                     echo=(lambda s: print(s, flush=True)) if rank0 else (lambda s: None), stopped=stopped)
    except RuntimeError as exc:  # (before its loop: loading, encoding; train says the loop's itself)
        if world > 1 and lost_peer(exc):
            if stopped():  # (a Ctrl-C reached every process: another one stopped for it first)
                raise KeyboardInterrupt from None
            raise ProcessLost(f"train: another process of this run stopped before training began (a collective "
                              f"failed: {lost_cause(exc)}; see its own output, if it said anything); nothing "
                              f"saved") from None
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _checked(args, world: int, device) -> tuple[TrainConfig, dict, str | None, Path]:
    """run's checks of the command, from the files it names (no front-end loaded yet) -> (the
    TrainConfig, a resumed run's kame.train record, the front-end it starts from, the manifest)."""
    record = {}  # (a resumed run's kame.train record, from the config.json save_frontend wrote)
    # (another run writing there: refused now, not once this one's is loaded; and first, so nothing of its OUT is
    # touched nor is it told to --resume or --overwrite a live run's checkpoints)
    check_unlocked(args.out)
    for folder in put_back_stopped_saves(Path(args.out)):  # (before --resume OUT/latest is looked for; said by
        # the process that put it back)
        print(f"warning: put {folder} back as it was: a save of it was killed between its two renames (that "
              f"save's own files, {staging_folder(folder.parent, int(folder.name[5:]))}, are removed once an hour "
              f"old)", flush=True)
    if args.resume:
        if not Path(args.resume).exists():  # (a dangling OUT/latest too: was "holds no train_state.pt")
            raise ConfigError(f"train: --resume {args.resume} does not exist: " + (stopped_save_note(
                args.resume) or "give a checkpoint kame train wrote (OUT/step-N, or OUT/latest once a run saved one)"))
        if not (Path(args.resume) / STATE).is_file():
            run_folder = (Path(args.resume) / "latest" / STATE).is_file()  # (OUT given: its latest meant)
            raise ConfigError(f"train: --resume {args.resume} holds no {STATE}: " + (
                f"it is a run's folder: give its checkpoint, --resume {Path(args.resume) / 'latest'}" if run_folder
                else unfinished_note(Path(args.resume)) or "give a checkpoint kame train wrote (OUT/step-N or "
                "OUT/latest)"))
        record = resume_record(Path(args.resume))
    # unset on --resume: the run's own (they must not change), not this device's or the new default
    ran = recorded_config(record) if args.resume else {}
    precision = (ran["precision"] if args.resume and args.precision == "auto"
                 else resolve_precision(args.precision, device))
    offsets = args.window_offsets == "on" if args.window_offsets else ran.get("window_offsets", True)
    # (an unset --window: the run's own on --resume, else the default, cut to the front-end's context once it is loaded)
    tcfg = TrainConfig(**knobs_from(args, record if args.resume else None, world), steps=args.steps,
                       window_offsets=offsets, use_cache=not args.no_cache, oracle_aug=not args.no_oracle_aug,
                       precision=precision, shard=args.shard,
                       checkpoint_activations=args.checkpoint_activations).check()
    if tcfg.shard:
        check_shard(world)  # (before a large front-end is loaded)
    manifest = manifest_path(args.manifest)  # (before a front-end is built)
    start = args.frontend or "random:tiny"
    if args.resume:
        start = record.get("frontend")  # (the optimizer state is loaded once, by train)
        # (the same folder under another spelling, or from another working directory, is the same)
        if args.frontend is not None and frontend_identity(args.frontend) != frontend_identity(start):
            raise ConfigError(f"train: --resume {args.resume} goes on from its own weights (started from "
                              f"{start or 'an unrecorded front-end'}), not from --frontend {args.frontend}: drop "
                              f"--frontend, or start a new run (another -o) with --frontend {args.resume}")
    if args.overwrite:  # (OUT's step-N are removed before the first save copies from them)
        check_overwrite(args.out, args.frontend, args.codec, resume=args.resume)
    check_out(args.out, args.overwrite, args.resume)  # (before a front-end is loaded; train removes)
    return tcfg, record, start, manifest
