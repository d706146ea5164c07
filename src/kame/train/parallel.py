"""How `kame train` lays a front-end out over processes and number formats (docs/training.md,
"Large front-ends"): the pieces a 7B fine-tune needs, as KAME's (DeepSpeed ZeRO-3, bf16).

    net = prepare(model, tcfg, device)        # the model, DistributedDataParallel, or sharded (--shard)
    with compute(tcfg, device):               # bf16 autocast (--precision bf16, unsharded)
        out = net(codes, oracle=oracle)
    weights, optim = checkpoint_state(model, opt, folder)   # whole weights (rank 0); optimizer by name
    load_optimizer(model, opt, optim, folder)               # any layout's saved state into this one

- ``--shard``: FSDP2 (``torch.distributed.fsdp.fully_shard``): each transformer layer (temporal
  and depformer) is its own unit, the rest of the model one more; weights, gradients and
  optimizer state are split over the processes (ZeRO-3). Needs torchrun with 2+ processes.
  Only rank 0 reads the front-end's weights; the others build it on the meta device, and every
  process then allocates only its shards and gets them from rank 0 (a 7B front-end is in host
  memory once per machine, not once per process).
- ``--precision bf16``: the weights and the optimizer stay fp32, the forward and backward run in
  bf16 (sharded: FSDP casts each unit's weights, gradients are reduced in fp32; otherwise
  ``torch.autocast``). The loss is computed in fp32 (kame.train.loss).
- ``--checkpoint-activations``: each layer's activations are recomputed in the backward
  (kame.model.modules.Transformer.checkpointing).

Checkpoints hold the front-end's whole fp32 weights (a checkpoint `kame run` loads) and the
optimizer's state keyed by parameter name: in train_state.pt for an unsharded run, in one file
per process under step-N/optimizer for a sharded one (torch.distributed.checkpoint: no process
gathers it). Either resumes in any layout, on any number of processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, ConfigError, KameError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16")
SHARDED_OPTIMIZER = "optimizer"  # a sharded run's checkpoint: its optimizer state's folder (one file per process)


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


def train_device(option: str, world: int) -> torch.device:
    """--device as this process's torch.device: auto (cuda when there is one), cpu, cuda (under
    torchrun: each process its LOCAL_RANK's GPU), cuda:N in one process; else a ConfigError (a
    device that is not torch's or not here, as kame eval follow says it; mps, not supported yet)."""
    import torch

    from ..model.loaders import auto_device, parse_device

    option = auto_device(option)
    if option.split(":")[0] == "mps":
        raise ConfigError(f"train: --device {option}: mps is not supported by kame train yet; use cpu or cuda")
    try:
        dev = parse_device(option)
    except ConfigError as exc:
        exc.args = (f"train: --device: {exc}",)
        raise
    if dev.type == "cuda" and dev.index is not None and world > 1:
        raise ConfigError(f"train: --device {option} under torchrun: torchrun picks each process's GPU "
                          f"(LOCAL_RANK): give --device cuda")
    local = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return local if dev.type == "cuda" and dev.index is None else dev


class ProcessLost(KameError):
    """Under torchrun, a collective that failed because another process of the run is gone (it
    stopped, or its machine did: parallel.lost_peer): where the run stopped and what to resume."""


def lost_cause(exc: BaseException) -> str:
    """A lost process's collective error, short: its first line ("[.../pair.cc:553] Connection
    closed by peer [10.0.0.2]:50845. This is typically ..." -> "Connection closed by peer
    [10.0.0.2]:50845"), and its last line when it has several (NCCL's reason is there)."""
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", line.strip()) for line in str(exc).strip().splitlines() if line.strip()]
    short = [line.split(". ")[0][:200] for line in dict.fromkeys(lines[:1] + lines[-1:])]
    return "; ".join(s for s in short if s) or type(exc).__name__


def is_sharded(model) -> bool:
    """True when ``model`` was sharded by ``prepare`` (FSDP2 gives it its own class)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def prepare(model: torch.nn.Module, tcfg, device: torch.device) -> torch.nn.Module:
    """The module the loop calls: ``model`` itself (one process), DistributedDataParallel around
    it (torchrun), or, sharded (``tcfg.shard``), the front-end rebuilt on the meta device and
    sharded, which the loop then trains in ``model``'s place: rank 0's ``model`` holds the loaded
    weights (on the CPU), the others' is on the meta device (load_for_training's weights=False);
    every process allocates only its own shards, on ``device``, and gets them from rank 0's whole
    tensors one tensor at a time, so no process holds the whole front-end twice nor on its GPU;
    then ``model`` is left on the meta device (rank 0's loaded weights freed).
    Moves the model to ``device``. Turns on activation checkpointing when asked. (--shard in fewer
    than 2 processes: train refused it with check_shard before reading any data.)"""
    import torch
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized()
    if tcfg.shard:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        from ..model.loaders import build_meta

        whole = model.state_dict() if dist.get_rank() == 0 else {}
        if any(True for _ in model.buffers()):  # (to_empty below leaves them uninitialised: only weights are sent)
            raise ConfigError("train: --shard loads a front-end's parameters only, and this one has buffers")
        loaded, model = model, build_meta(model.cfg)
        if whole and whole.keys() != model.state_dict().keys():
            raise ConfigError("train: --shard rebuilds the front-end from its config, which does not give the loaded "
                              "one's weights: " + ", ".join(sorted(whole.keys() ^ model.state_dict().keys())[:8]))
        _checkpointing(model, tcfg)
        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        bf16 = tcfg.precision == "bf16"
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for tf in (model.transformer, getattr(model, "depformer", None)):
            for layer in (tf.layers if tf is not None else ()):
                fully_shard(layer, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        model.to_empty(device=device)
        set_model_state_dict(model, whole, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        del whole
        loaded.to(device="meta")  # (rank 0's whole weights freed now, though its callers still hold the module)
        return model
    _checkpointing(model, tcfg)
    model.to(device)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def _checkpointing(model, tcfg) -> None:
    for tf in (model.transformer, getattr(model, "depformer", None)):
        if tf is not None:
            tf.checkpointing = bool(tcfg.checkpoint_activations)


def compute(tcfg, device: torch.device):
    """The context the forward and backward run in: bf16 autocast for an unsharded bf16 run
    (a sharded one gets bf16 weights from FSDP itself), else nothing."""
    import torch

    if tcfg.precision == "bf16" and not tcfg.shard:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def checkpoint_state(model, opt, folder) -> tuple[dict | None, dict | None]:
    """(weights, optimizer state) of a checkpoint being written in ``folder`` (the step's
    staging folder, kame.train.saving: rank 0 emptied it first, every process names the same):
    the weights whole, the optimizer's state keyed by parameter name. Sharded: every process must
    call it: the weights are gathered to rank 0's CPU one tensor at a time, and each process
    writes its own shard of the optimizer's state to folder/optimizer
    (torch.distributed.checkpoint), so no process ever holds all of it; rank 0 gets (weights,
    {"sharded": "optimizer"}) to save, the others (None, None). One that cannot be written (a
    full disk on any process): ShardsNotSaved on every process, its cause on rank 0 (the others
    say nothing more). Unsharded: the live tensors, no collective (rank 0 alone may call it)."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict, get_state_dict)

    if not is_sharded(model):
        return get_state_dict(model, opt)
    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    rank0 = dist.get_rank() == 0
    dist.barrier()  # (rank 0 has emptied the folder)
    where = Path(folder) / SHARDED_OPTIMIZER
    try:
        metadata = dcp.save(get_optimizer_state_dict(model, opt), checkpoint_id=where)
    except (Exception, CheckpointException) as exc:  # (every process gets each one's failure: a
        # CheckpointException, a BaseException whose str is their tracebacks)
        if lost_peer(exc):  # (another process stopped: kame train says so, not as a failed save)
            raise
        causes = [e for e, _ in exc.failures.values()] if isinstance(exc, CheckpointException) else [exc]
        if stop := next((e for e in causes if isinstance(e, KeyboardInterrupt)), None):
            raise stop from None
        raise ShardsNotSaved(causes[0] if rank0 else None) from (causes[0] if rank0 else None)
    # every process's file must be in rank 0's folder: on several machines whose -o is not one shared
    # folder, each wrote its own to its own disk (was: "saved", a checkpoint that cannot be resumed)
    missing = [_missing_shards(metadata, where) if rank0 else None]
    dist.broadcast_object_list(missing, src=0)
    if missing[0]:
        raise ShardsNotSaved(CheckpointError(
            f"{where} lacks the optimizer shards of the other processes ({', '.join(missing[0][:4])} missing: "
            f"they were written to their own machine's -o): -o must be a folder every node shares (a shared "
            f"filesystem)") if rank0 else None)
    return (weights, {"sharded": SHARDED_OPTIMIZER}) if rank0 else (None, None)


def _missing_shards(metadata, where: Path) -> list[str]:
    """The data files a sharded save's ``metadata`` (dcp.save's) names that ``where`` lacks."""
    named = {getattr(info, "relative_path", None) for info in (metadata.storage_data or {}).values()}
    return sorted(name for name in named if isinstance(name, str) and not (where / name).is_file())


# what a collective's error says when another process of the group is gone (it stopped, or its machine
# did): gloo's "Connection closed by peer" / "Connection reset by peer" / "Broken pipe" / "Timed out
# waiting ...", NCCL's "remote process exited or there was a network error", its watchdog's timeout
LOST_PEER = re.compile(r"[Cc]onnection (closed|reset) by peer|Broken pipe|remote process exit|Timed out waiting|"
                       r"Watchdog caught collective operation timeout")


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective's failure because another process of the group is gone
    (LOST_PEER's words; torch 2.13's gloo: "[.../gloo/transport/tcp/pair.cc:553] Connection closed
    by peer ..."); not this process's own error (was: any DistError, any error naming gloo or NCCL:
    NCCL out of memory, "Duplicate GPU detected", a gloo size mismatch were each said as another
    process's stop, on every process)."""
    return isinstance(exc, RuntimeError) and LOST_PEER.search(str(exc)) is not None


TRAIN_PREFIX = "train"  # kame train's error prefix ("train: ..."), agree's default ``what``; PEER_FAILED is built on it


def agree(check, what: str = TRAIN_PREFIX):
    """``check()`` in every process of the group (each calls agree at the same point; a process
    group formed) -> its result, when it passed in every process. Else every process raises at
    once (was: the others went on, and waited for the one that stopped up to the group's
    timeout): every failed process its own error (was: only those whose error said the same as
    the lowest failed rank's; the others echoed that one, their own never said); the others a
    ConfigError saying the first failed process's (the lowest rank's), "<what>: rank R (on HOST)
    failed: ..." (its machine named when it is another). A check's KeyboardInterrupt is not
    caught."""
    import socket

    import torch.distributed as dist

    failed, said = None, None
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - (any: said to the others first, then raised)
        failed, said = exc, str(exc) if isinstance(exc, KameError) else f"{type(exc).__name__}: {exc}"
    host = socket.gethostname()
    verdicts = [None] * dist.get_world_size()
    dist.all_gather_object(verdicts, (said, host))
    first = next((r for r, (s, _) in enumerate(verdicts) if s is not None), None)
    if first is None:
        return result
    if failed is not None:
        raise failed
    said_first, there = verdicts[first]
    raise ConfigError(peer_failed(what, first, None if there == host else there, said_first))


def peer_failed(what: str, rank: int, host: str | None, said: str) -> str:
    """agree's line in the processes that did not fail: "<what>: rank R (on HOST) failed: <its
    error>" (``host``: the failed one's machine when it is another, else None; ``said`` without
    its own "<what>: "). PEER_FAILED (its regex, beside it) matches its start for TRAIN_PREFIX, agree's default."""
    where = "" if host is None else f" (on {host})"
    return f"{what}: rank {rank}{where} failed: {said.removeprefix(what + ': ')}"


# the start of kame train's peer_failed line (kame bench train leaves these echoes out of what it says)
PEER_FAILED = re.compile(re.escape(TRAIN_PREFIX) + r": rank \d+(?: \(on [^)]*\))? failed: ")


class ShardsNotSaved(CheckpointError):
    """A sharded optimizer state that could not be written (checkpoint_state): ``cause``, on rank 0,
    what failed (kame train says it as any failed save, saving.SaveFailed); None on the others,
    which exit saying only that rank 0 says why."""

    def __init__(self, cause: BaseException | None) -> None:
        self.cause = cause
        super().__init__(f"train: the optimizer state could not be saved: {cause}" if cause is not None else
                         "train: the checkpoint could not be saved (rank 0 says why): stopped")


def load_optimizer(model, opt, saved: dict, folder=None) -> None:
    """Load a checkpoint's optimizer state (``checkpoint_state``'s, any layout; ``folder``: the
    checkpoint's, for a sharded one's files) into ``opt``, on any number of processes, sharded or
    not. A state saved by kame train before it keyed them by name (integer keys) loads into an
    unsharded run."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_optimizer_state_dict,
                                                         set_optimizer_state_dict)

    if "sharded" in saved:  # each process reads the pieces of its own shard (or all of it, unsharded)
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.api import CheckpointException

        where = sharded_folder(folder, saved["sharded"])
        if not (where / ".metadata").is_file():
            raise ConfigError(f"train: {where} holds no optimizer state (a checkpoint of a sharded run whose "
                              f"optimizer files are missing): resume from another checkpoint")
        reader = _safe_reader(where)
        reader.read_metadata()  # (checked here first: dcp.load logs a failed read's traceback, then goes on;
        # dcp.load then takes the metadata read here: the file is unpickled once)
        state = get_optimizer_state_dict(model, opt)
        with warnings.catch_warnings():  # (its note that one process without a group reads it all)
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            try:
                dcp.load(state, checkpoint_id=where, storage_reader=reader, planner=_safe_planner(where))
            except CheckpointError:
                raise
            except (Exception, CheckpointException) as exc:  # (a file missing or cut; CheckpointException is
                # a BaseException whose str is each rank's traceback: its causes, said by which)
                causes = [e for e, _ in exc.failures.values()] if isinstance(exc, CheckpointException) else [exc]
                if refused := next((e for e in causes if isinstance(e, CheckpointError)), None):
                    raise refused from None  # (another process's refusal of the metadata)
                why = "; ".join(f"{type(e).__name__}: {str(e)[:200]}" for e in causes)
                files = sorted(p.name for p in where.glob("*.distcp"))
                raise ConfigError(f"train: cannot read the optimizer state in {where} ({len(files)} file(s): "
                                  f"{', '.join(files[:8])}): {why}. A sharded run "
                                  f"writes one file per process there: on several machines, -o must be a folder "
                                  f"they all write to (a shared filesystem)") from exc
        set_optimizer_state_dict(model, opt, state)
        return
    if any(isinstance(k, int) for k in saved.get("state", {})):
        if is_sharded(model):
            raise ConfigError("train: this checkpoint's optimizer state is in the older unsharded format: resume it "
                              "without --shard once (a checkpoint it writes then resumes with --shard)")
        opt.load_state_dict(saved)
        return
    set_optimizer_state_dict(model, opt, saved, options=StateDictOptions(full_state_dict=is_sharded(model)))


# ---- a sharded optimizer's files, read without running code -------------------------------------


def sharded_folder(folder, name) -> Path:
    """The folder of a sharded checkpoint's optimizer state, as train_state.pt names it: only the
    one name kame writes (SHARDED_OPTIMIZER), a real folder inside the checkpoint's (was: any
    name, an absolute path or ``../..`` included, so a downloaded train_state.pt could send
    ``--resume`` to unpickle a file anywhere on disk). CheckpointError otherwise."""
    folder = Path(folder)
    where = folder / SHARDED_OPTIMIZER
    if name != SHARDED_OPTIMIZER:
        raise CheckpointError(f"train: {folder / 'train_state.pt'} names its sharded optimizer state {name!r}; kame "
                              f"writes it to {SHARDED_OPTIMIZER!r} in the checkpoint's folder only: this "
                              f"train_state.pt was not written by kame train (resume only checkpoints you trust)")
    if where.is_symlink():  # (even one to a folder inside the checkpoint's)
        raise CheckpointError(f"train: {where} is a symlink; kame train writes a folder there: resume only "
                              f"checkpoints you trust")
    # (resolve: a Windows junction is no symlink to is_symlink, but resolve follows it out of the folder)
    if not where.resolve().is_relative_to(folder.resolve()):
        raise CheckpointError(f"train: {where} leads out of the checkpoint's folder, to {where.resolve()} (a "
                              f"junction); kame train writes a folder there: resume only checkpoints you trust")
    meta = where / ".metadata"
    if meta.is_symlink():
        raise CheckpointError(f"train: {meta} is a symlink; kame train writes a file there: resume only "
                              f"checkpoints you trust")
    return where


_METADATA_MODULE = "torch.distributed.checkpoint.metadata"
_METADATA_GLOBALS = {  # besides the classes of torch.distributed.checkpoint.metadata
    ("torch", "Size"), ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"), ("pathlib", "PureWindowsPath"),
}


def _metadata_unpickler(file, path):
    """An Unpickler of a .metadata that builds only torch.distributed.checkpoint's metadata
    classes (and the torch.Size, dtypes, layouts and paths they hold): torch's FileSystemReader
    runs a plain pickle.load, which runs whatever code the file names (torch has no restricted
    reader of its own for it)."""
    import pickle

    import torch

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in _METADATA_GLOBALS or (
                    module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
                return super().find_class(module, name)
            if module == _METADATA_MODULE and not name.startswith("__"):
                found = super().find_class(module, name)
                if isinstance(found, type) and found.__module__ == _METADATA_MODULE:
                    return found
            raise CheckpointError(f"train: {path} names {module}.{name}, which is not part of "
                                  f"torch.distributed.checkpoint's metadata (a file kame train did not write: it "
                                  f"could run code when loaded); resume only checkpoints you trust")

    return Restricted(file)


def _safe_reader(where: Path):
    """torch.distributed.checkpoint's FileSystemReader for ``where``, reading its .metadata with
    _metadata_unpickler, and refusing one whose data files are not plain names in ``where``
    (its tensors are read by torch.load(weights_only=True), its other values by _safe_planner).
    The .metadata is read once: a later read_metadata (dcp.load's, after load_optimizer's check)
    returns the same, stamped with the reader's current load_id."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

    class SafeReader(FileSystemReader):
        read: Metadata | None = None  # the .metadata, once read and checked

        def read_metadata(self, *args, **kwargs) -> Metadata:
            if self.read is not None and kwargs.get("rank") is None:
                self.read.storage_meta.load_id = self.load_id  # (dcp.load's reset gave the reader a new one)
                return self.read
            path = self._get_metadata_path(kwargs.get("rank"))
            try:
                with self.fs.create_stream(path, "rb") as file:
                    metadata = _metadata_unpickler(file, path).load()
            except CheckpointError:
                raise
            except FileNotFoundError:  # (torch then tries the rank's own)
                raise
            except Exception as exc:  # (cut or not a pickle: UnpicklingError, EOFError, ...)
                raise CheckpointError(f"train: cannot read {path} ({type(exc).__name__}: {str(exc)[:200]}): "
                                      f"resume from another checkpoint") from None
            if not isinstance(metadata, Metadata):
                raise CheckpointError(f"train: {path} holds no torch.distributed.checkpoint metadata "
                                      f"({type(metadata).__name__}): resume from another checkpoint")
            for info in (metadata.storage_data or {}).values():
                name = getattr(info, "relative_path", None)
                if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
                    raise CheckpointError(f"train: {path} names a data file {name!r} outside {where}; kame train "
                                          f"writes them there: resume only checkpoints you trust")
            if getattr(metadata, "storage_meta", None) is None:  # (as FileSystemReader.read_metadata does)
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            if kwargs.get("rank") is None:
                self.read = metadata
            return metadata

    return SafeReader(where)


def _safe_planner(where: Path):
    """torch.distributed.checkpoint's DefaultLoadPlanner, reading the values saved as pickles (all
    that is not a tensor: param_groups' lr, betas, ...) with torch.load(weights_only=True): torch's
    own reads them with weights_only=False, which runs whatever code the file names. A value the
    live state holds as a tensor is refused as a pickle (only crafted metadata marks one so)."""
    import pickle

    import torch
    from torch.distributed.checkpoint import DefaultLoadPlanner
    from torch.distributed.checkpoint._traverse import set_element

    class SafePlanner(DefaultLoadPlanner):
        def load_bytes(self, read_item, value) -> None:
            key = read_item.dest_index.fqn
            info = (self.metadata.storage_data or {}).get(read_item.storage_index)
            file = where / getattr(info, "relative_path", "?")
            if isinstance(self.state_dict.get(key), torch.Tensor):
                raise CheckpointError(f"train: {file} holds {key} as a pickle, not a tensor (a file kame train did "
                                      f"not write); resume only checkpoints you trust")
            try:
                loaded = torch.load(value, weights_only=True)
            except pickle.UnpicklingError as exc:
                named = re.search(r"GLOBAL ([\w.]+)", str(exc))
                raise CheckpointError(f"train: {file} holds {key} as a pickle that names "
                                      f"{named[1] if named else 'more than plain data'}, which an optimizer's "
                                      f"state does not (a file kame train did not write: it could run code when "
                                      f"loaded); resume only checkpoints you trust") from None
            set_element(self.original_state_dict, self.mappings[key], loaded)  # (as DefaultLoadPlanner's)

    return SafePlanner()
