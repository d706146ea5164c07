"""How `kame train` lays a front-end out over processes and number formats (docs/training.md,
"Large front-ends"): the pieces a 7B fine-tune needs, as KAME's (DeepSpeed ZeRO-3, bf16).

    net = prepare(model, tcfg, device)        # the model, DistributedDataParallel, or sharded (--shard)
    with compute(tcfg, device):               # bf16 autocast (--precision bf16, unsharded)
        out = net(codes, oracle=oracle)
    weights, optim = full_state(model, opt)   # whole tensors, FQN-keyed optimizer state (rank 0)
    load_optimizer(model, opt, optim)         # any layout's saved state into this one

- ``--shard``: FSDP2 (``torch.distributed.fsdp.fully_shard``): each transformer layer (temporal
  and depformer) is its own unit, the rest of the model one more; weights, gradients and
  optimizer state are split over the processes (ZeRO-3). Needs torchrun with 2+ processes.
- ``--precision bf16``: the weights and the optimizer stay fp32, the forward and backward run in
  bf16 (sharded: FSDP casts each unit's weights, gradients are reduced in fp32; otherwise
  ``torch.autocast``). The loss is computed in fp32 (kame.train.loss).
- ``--checkpoint-activations``: each layer's activations are recomputed in the backward
  (kame.model.modules.Transformer.checkpointing).

Checkpoints are the same whatever the layout: the front-end's whole fp32 weights, and the
optimizer's state keyed by parameter name, so a run saved sharded resumes unsharded and back.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16")


def resolve_precision(precision: str, device) -> str:
    """'auto' -> bf16 on CUDA, fp32 elsewhere (CPUs without bf16 units run it slower than fp32);
    any other name as it is (TrainConfig.check refuses an unknown one)."""
    if precision == "auto":
        return "bf16" if getattr(device, "type", str(device)) == "cuda" else "fp32"
    return precision


def check_shard(world: int) -> None:
    """ConfigError for --shard in fewer than 2 processes (nothing to split the weights over)."""
    if world < 2:
        raise ConfigError("train: --shard splits the front-end's weights over torchrun's processes: run kame train "
                          "under torchrun with --nproc_per_node 2 or more, or drop --shard")


def is_sharded(model) -> bool:
    """True when ``model`` was sharded by ``prepare`` (FSDP2 gives it its own class)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def prepare(model: torch.nn.Module, tcfg, device: torch.device) -> torch.nn.Module:
    """The module the loop calls: ``model`` itself (one process), DistributedDataParallel around
    it (torchrun), or ``model`` sharded in place (``tcfg.shard``). Moves it to ``device`` (a
    sharded model's units move there as they are sharded: a model loaded on the CPU never
    has to fit on one GPU whole). Turns on activation checkpointing when asked. (--shard in fewer
    than 2 processes: train refused it with check_shard before reading any data.)"""
    import torch
    import torch.distributed as dist

    for tf in (model.transformer, getattr(model, "depformer", None)):
        if tf is not None:
            tf.checkpointing = bool(tcfg.checkpoint_activations)
    distributed = dist.is_available() and dist.is_initialized()
    if tcfg.shard:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        bf16 = tcfg.precision == "bf16"
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for tf in (model.transformer, getattr(model, "depformer", None)):
            for layer in (tf.layers if tf is not None else ()):
                fully_shard(layer, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        return model
    model.to(device)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def compute(tcfg, device: torch.device):
    """The context the forward and backward run in: bf16 autocast for an unsharded bf16 run
    (a sharded one gets bf16 weights from FSDP itself), else nothing."""
    import torch

    if tcfg.precision == "bf16" and not tcfg.shard:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full_state(model, opt) -> tuple[dict | None, dict | None]:
    """(weights, optimizer state) as whole tensors, the optimizer's keyed by parameter name.
    Sharded: every process must call it (it gathers), rank 0 gets them on the CPU, others (None,
    None). Unsharded: no collective (rank 0 alone may call it); the tensors are the live ones, on
    the model's device."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    if is_sharded(model):
        weights, optim = get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return (weights, optim) if dist.get_rank() == 0 else (None, None)
    return get_state_dict(model, opt)


def load_optimizer(model, opt, saved: dict) -> None:
    """Load a checkpoint's optimizer state (``full_state``'s, any layout) into ``opt``. A state
    saved by kame train before it keyed them by name (integer keys) loads into an unsharded run."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if any(isinstance(k, int) for k in saved.get("state", {})):
        if is_sharded(model):
            raise ConfigError("train: this checkpoint's optimizer state is in the older unsharded format: resume it "
                              "without --shard once (a checkpoint it writes then resumes with --shard)")
        opt.load_state_dict(saved)
        return
    set_optimizer_state_dict(model, opt, saved, options=StateDictOptions(full_state_dict=is_sharded(model)))
