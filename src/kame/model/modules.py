"""Transformer building blocks of the front-end LM, in plain torch (nanoGPT style).

Parameter names follow the ``moshi`` package so that published ``model.safetensors`` files load
directly: ``layers.N.self_attn.in_projs.S.weight`` (also the fused ``in_proj_weight`` of
published checkpoints, split on load), ``out_projs.S.weight``, ``norm1.alpha``,
``gating.linear_in.weight`` / ``gating.S.linear_in.weight``, ``layer_scale_1.scale`` ...

Streaming: ``Transformer.forward(x, state)`` with a ``TransformerState`` (one per model,
per-row positions + one KV ring buffer per layer of capacity ``context``). Rows are
independent: ``state.reset(mask)`` clears some rows, ``exec_mask`` leaves paused rows untouched.
Without a state the forward is the whole-sequence (training) pass.
"""

from __future__ import annotations

import logging
import os
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ..errors import ConfigError
from ..layers import LayerScale, apply_rope, rope_tables, window_mask

log = logging.getLogger(__name__)

NEEDS_CONTEXT = ("config has context null (no attention limit), but a streamed model needs a finite one, the "
                 "frames its KV cache holds (Moshi's is 3000): set \"context\" in its config.json")
ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu, "sigmoid": torch.sigmoid,
               "tanh": torch.tanh, "elu": F.elu, "leaky_relu": F.leaky_relu, "mish": F.mish,
               "softsign": F.softsign, "identity": lambda x: x}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, f32: bool):
        super().__init__()
        self.eps, self.f32 = eps, f32
        self.alpha = nn.Parameter(torch.ones(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D]
        dtype = x.dtype
        if self.f32:
            x = x.float()
        var = self.eps + x.pow(2).mean(dim=-1, keepdim=True)
        return (x * (self.alpha.to(var) * torch.rsqrt(var))).to(dtype)


class LayerNormF32(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (in fp32 whatever the weights' dtype: bf16 ones too)
        w, b = self.weight, self.bias
        return F.layer_norm(x.float(), self.normalized_shape, None if w is None else w.float(),
                            None if b is None else b.float(), self.eps).to(x.dtype)


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "rms_norm_f32":
        return RMSNorm(dim, 1e-8, f32=True)
    if kind == "rms_norm":
        return RMSNorm(dim, 1e-5, f32=False)
    if kind == "layer_norm_f32":
        return LayerNormF32(dim, eps=1e-8)
    return nn.LayerNorm(dim, eps=1e-5)


def sin_embedding(pos: torch.Tensor, dim: int, max_period: float, dtype: torch.dtype) -> torch.Tensor:
    """pos [B, T] -> [B, T, dim] (cos | sin halves)."""
    half = dim // 2
    adim = torch.arange(half, device=pos.device, dtype=dtype).view(1, 1, -1)
    phase = pos.to(dtype)[..., None] / (torch.full([], max_period, dtype=dtype) ** (adim / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


class Gating(nn.Module):
    """SiLU-gated (or other activation) feed-forward: out(act(a) * b), [a | b] = in(x)."""

    def __init__(self, dim: int, dim_ff: int, activation: str):
        super().__init__()
        hidden = (21 * dim) // 8 if dim_ff == 4 * dim else (2 * dim_ff) // 3
        self.linear_in = nn.Linear(dim, 2 * hidden, bias=False)
        self.linear_out = nn.Linear(hidden, dim, bias=False)
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.linear_in(x).chunk(2, dim=-1)  # [B, T, hidden] each
        return self.linear_out(self.act(a) * b)


@dataclass
class KVCache:
    """One layer's KV ring buffer: slot = position % capacity, per row."""

    k: torch.Tensor  # [B, H_kv, C, Dh]
    v: torch.Tensor  # [B, H_kv, C, Dh]


@dataclass
class TransformerState:
    """Streaming state of one Transformer: per-row positions, per-layer ring buffers."""

    pos: torch.Tensor  # [B] long, next position (= frames seen) of each row
    slot_pos: torch.Tensor  # [B, C] long, absolute position held by each slot (-1 = empty)
    caches: list[KVCache]
    capacity: int

    def reset(self, mask: torch.Tensor) -> None:
        """Clear rows where mask [B] is True: their positions, and their keys and values to zeros.
        (Attention masks the old slots, but a masked NaN still makes NaN: keys or values that
        overflowed float16 in the row's last session would make every later one's output NaN.)"""
        self.pos.masked_fill_(mask, 0)
        self.slot_pos.masked_fill_(mask[:, None], -1)
        rows = mask.nonzero().flatten().to(self.pos.device)  # (only these rows' caches are written)
        for c in self.caches:
            c.k.index_fill_(0, rows, 0)
            c.v.index_fill_(0, rows, 0)


def apply_per_step(mods, schedule: list[int] | None, x: torch.Tensor, step: int | None) -> torch.Tensor:
    """Apply weights per step: x [B, T, D], time t uses mods[schedule[step + t]] (one module: shared)."""
    if len(mods) == 1:
        return mods[0](x)
    base = 0 if step is None else step

    def idx(t: int) -> int:
        return schedule[base + t] if schedule is not None else base + t

    if x.shape[1] == 1:
        return mods[idx(0)](x)
    return torch.cat([mods[idx(t)](x[:, t: t + 1]) for t in range(x.shape[1])], dim=1)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, kv_repeat: int, num_weights: int, causal: bool,
                 context: int | None, rope: str | None, max_period: float, schedule: list[int] | None = None):
        super().__init__()
        self.schedule = schedule
        self.dim, self.num_heads, self.kv_repeat = dim, num_heads, kv_repeat
        self.causal, self.context, self.rope, self.max_period = causal, context, rope, max_period
        self.mult = num_weights
        kv_dim = (dim // num_heads) * (num_heads // kv_repeat)
        self.in_projs = nn.ModuleList([nn.Linear(dim, dim + 2 * kv_dim, bias=False) for _ in range(num_weights)])
        self.out_projs = nn.ModuleList([nn.Linear(dim, dim, bias=False) for _ in range(num_weights)])
        self._register_load_state_dict_pre_hook(self._split_fused)

    def _split_fused(self, state_dict, prefix, *_):
        # Published checkpoints store the weights of all steps fused: in_proj_weight [S*O, I].
        for src, dst in (("in_proj_weight", "in_projs"), ("in_proj.weight", "in_projs"),
                         ("out_proj.weight", "out_projs")):
            w = state_dict.pop(prefix + src, None)
            if w is not None:
                w = w.view(self.mult, -1, *w.shape[1:])
                for i in range(self.mult):
                    state_dict[f"{prefix}{dst}.{i}.weight"] = w[i]

    def _proj(self, mods: nn.ModuleList, x: torch.Tensor, step: int | None) -> torch.Tensor:
        return apply_per_step(mods, self.schedule, x, step)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, cache: KVCache | None = None,
                state: TransformerState | None = None, step: int | None = None,
                past: list | None = None) -> torch.Tensor:
        """x [B, T, D], pos [B, T] absolute positions. With `cache`+`state`: streaming ring buffer.
        With `past` (a list, depformer streaming): keys/values of the earlier steps of the frame."""
        B, T, _ = x.shape
        h, hk = self.num_heads, self.num_heads // self.kv_repeat
        qkv = self._proj(self.in_projs, x, step)
        q = qkv[..., : self.dim].view(B, T, h, -1).transpose(1, 2)  # [B, H, T, Dh]
        k, v = qkv[..., self.dim:].view(B, T, 2, hk, -1).permute(2, 0, 3, 1, 4)  # [B, Hk, T, Dh] each
        if self.rope:
            cos, sin = rope_tables(pos, q.shape[-1], self.max_period)  # [B, 1, T, Dh/2]
            interleave = self.rope != "rope_concat"
            q, k = apply_rope(q, cos, sin, interleave), apply_rope(k, cos, sin, interleave)
        if cache is not None:
            assert state is not None and T == 1, "streaming takes one frame per step"
            slot = (pos[:, 0] % state.capacity)  # [B]
            idx = slot.view(B, 1, 1, 1).expand(B, hk, 1, k.shape[-1])
            cache.k.scatter_(2, idx, k)
            cache.v.scatter_(2, idx, v)
            k, v, kpos = cache.k, cache.v, state.slot_pos  # kpos [B, C] (slot_pos updated by caller)
        elif past is not None:
            if past:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            past[:] = [k, v]
            kpos = torch.arange(k.shape[2], device=x.device).expand(B, -1)
        else:
            kpos = pos
        if self.kv_repeat > 1:
            k = k.repeat_interleave(self.kv_repeat, dim=1)
            v = v.repeat_interleave(self.kv_repeat, dim=1)
        mask = None
        if self.causal and past is None:  # (depformer streaming: every past step is visible)
            mask = window_mask(pos, kpos, self.context)[:, None]  # [B, 1, T, S]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, self.dim)
        return self._proj(self.out_projs, y, step)


class Layer(nn.Module):
    def __init__(self, dim: int, num_heads: int, dim_ff: list[int], *, norm: str, gating: str | None,
                 kv_repeat: int, num_weights: int, causal: bool, context: int | None, rope: str | None,
                 max_period: float, layer_scale: float | None, schedule: list[int] | None = None):
        super().__init__()
        self.schedule = schedule
        self.self_attn = Attention(dim, num_heads, kv_repeat, num_weights, causal, context, rope, max_period, schedule)
        self.norm1 = make_norm(norm, dim)
        self.norm2 = make_norm(norm, dim)
        self.num_weights = num_weights
        if gating in (None, "none"):
            assert num_weights == 1, "weights per step need a gated feed-forward"
            self.linear1 = nn.Linear(dim, dim_ff[0], bias=False)
            self.linear2 = nn.Linear(dim_ff[0], dim, bias=False)
            self.gating = None
        elif num_weights > 1:
            self.gating = nn.ModuleList([Gating(dim, f, gating) for f in dim_ff])
        else:
            self.gating = Gating(dim, dim_ff[0], gating)
        if layer_scale is None:
            self.layer_scale_1, self.layer_scale_2 = nn.Identity(), nn.Identity()
        else:
            self.layer_scale_1, self.layer_scale_2 = LayerScale(dim, layer_scale), LayerScale(dim, layer_scale)

    def _ff(self, x: torch.Tensor, step: int | None) -> torch.Tensor:
        if self.gating is None:
            return self.linear2(F.gelu(self.linear1(x)))
        if isinstance(self.gating, nn.ModuleList):
            return apply_per_step(self.gating, self.schedule, x, step)
        return self.gating(x)

    def forward(self, x, pos, cache=None, state=None, step=None, past=None):
        x = x + self.layer_scale_1(self.self_attn(self.norm1(x), pos, cache, state, step, past))
        return x + self.layer_scale_2(self._ff(self.norm2(x), step))


class Transformer(nn.Module):
    """A stack of layers. ``num_weights > 1``: per-step weights (the depformer)."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, dim_ff: list[int], *, norm: str,
                 gating: str | None, kv_repeat: int = 1, num_weights: int = 1,
                 weights_schedule: list[int] | None = None, causal: bool = True,
                 context: int | None = None, pos_emb: str = "rope", max_period: float = 10000.0,
                 positional_scale: float = 1.0, layer_scale: float | None = None):
        super().__init__()
        self.dim, self.num_heads, self.kv_repeat, self.context = dim, num_heads, kv_repeat, context
        self.pos_emb, self.max_period, self.positional_scale = pos_emb, max_period, positional_scale
        self.weights_schedule = weights_schedule
        # recompute each layer's activations in the backward instead of keeping them (kame train
        # --checkpoint-activations: less memory for long windows, one more forward's compute)
        self.checkpointing = False
        rope = pos_emb if pos_emb in ("rope", "sin_rope", "rope_concat") else None
        self.layers = nn.ModuleList([
            Layer(dim, num_heads, dim_ff, norm=norm, gating=gating, kv_repeat=kv_repeat,
                  num_weights=num_weights, causal=causal, context=context, rope=rope,
                  max_period=max_period, layer_scale=layer_scale, schedule=weights_schedule)
            for _ in range(num_layers)])

    def init_state(self, batch_size: int, device=None, dtype=None) -> TransformerState:
        """A fresh streaming state; the ring buffers hold `context` frames."""
        if self.context is None:
            raise ConfigError(f"this model's {NEEDS_CONTEXT}")
        p = next(self.parameters())
        device, dtype = device or p.device, dtype or p.dtype
        hk, dh = self.num_heads // self.kv_repeat, self.dim // self.num_heads
        shape = (batch_size, hk, self.context, dh)
        caches = [KVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
                  for _ in self.layers]
        return TransformerState(pos=torch.zeros(batch_size, dtype=torch.long, device=device),
                                slot_pos=torch.full((batch_size, self.context), -1, dtype=torch.long, device=device),
                                caches=caches, capacity=self.context)

    def forward(self, x: torch.Tensor, state: TransformerState | None = None,
                exec_mask: torch.Tensor | None = None, step: int | None = None,
                past: list | None = None) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D].

        state: streaming (T == 1); rows with exec_mask False are computed but not advanced.
        step/past: depformer streaming, codebook index `step`, past = per-layer [k, v] lists."""
        B, T, D = x.shape
        if state is not None:
            pos = state.pos[:, None]  # [B, 1]
        else:
            base = 0 if step is None else step
            pos = torch.arange(base, base + T, device=x.device).expand(B, -1)
        if self.pos_emb in ("sin", "sin_rope"):
            x = x + self.positional_scale * sin_embedding(pos, D, self.max_period, x.dtype)
        if state is not None:
            # Mark the slot written this step with its position. A paused row (exec_mask False)
            # is computed too, then its mark is undone: it wrote into the slot of its next
            # position, which it overwrites before attending to it when it resumes.
            slot = (state.pos % state.capacity)[:, None]  # [B, 1]
            old = state.slot_pos.gather(1, slot)
            state.slot_pos.scatter_(1, slot, state.pos[:, None])
        recompute = self.checkpointing and state is None and past is None and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if recompute:
                x = torch.utils.checkpoint.checkpoint(layer, x, pos, None, None, step, use_reentrant=False)
                continue
            cache = state.caches[i] if state is not None else None
            x = layer(x, pos, cache, state, step, None if past is None else past[i])
        if state is not None:
            if exec_mask is None:
                state.pos += 1
            else:
                state.slot_pos.scatter_(1, slot, torch.where(exec_mask[:, None], state.pos[:, None], old))
                state.pos += exec_mask.long()
        return x


class ScaledEmbedding(nn.Embedding):
    """Embedding where id -1 (the "zero token") embeds to exactly zero.

    Options as in moshi: `norm` (layer norm), `low_rank` (small table + linear up),
    `demux` (ids are pairs tok2 * n + tok1, embedded with two output linears)."""

    def __init__(self, num: int, dim: int, *, norm: bool = False, low_rank: int | None = None, demux: bool = False):
        super().__init__(num, low_rank or dim)
        self.norm = nn.LayerNorm(self.embedding_dim, eps=1e-5) if norm else None
        self.low_rank = nn.Linear(low_rank, dim, bias=False) if low_rank else None
        self.demux = demux
        if demux:
            self.out1 = nn.Linear(low_rank or dim, dim, bias=False)
            self.out2 = nn.Linear(low_rank or dim, dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # ids [...] -> [..., dim]
        is_zero = (ids == -1)[..., None]
        ids = ids.clamp(min=0)
        if self.demux:
            left = super().forward(ids % self.num_embeddings)
            right = ids // self.num_embeddings - 1
            right_zero = (right < 0)[..., None]
            right = super().forward(right.clamp(min=0))
            y = self.out1(left) + torch.where(right_zero, 0.0, self.out2(right))
            return torch.where(is_zero, 0.0, y)
        y = super().forward(ids)
        if self.norm is not None:
            y = self.norm(y)
        y = torch.where(is_zero, torch.zeros((), dtype=y.dtype, device=y.device), y)
        if self.low_rank is not None:
            y = self.low_rank(y)
        return y


# The memory cgroup (a container's limit: docker run --memory, a Kubernetes memory limit, systemd's
# MemoryMax=) is read under CGROUP, at the process's own cgroup as PROC_CGROUP names it, and its
# parents (tests point both at files of their own): per version, the folder the controller is
# mounted at, the files of a cgroup's limit, its use, its statistics and the statistic of the page
# cache the kernel reclaims first.
CGROUP = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
_CGROUP_FILES = (("", "memory.max", "memory.current", "memory.stat", "inactive_file"),  # cgroup v2
                 ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat",
                  "total_inactive_file"))  # cgroup v1


def _own_cgroup(v1: bool) -> str:
    """The path of the process's own memory cgroup, from PROC_CGROUP's "ID:CONTROLLERS:PATH" lines
    (v2: the "0::PATH" one; v1: the one listing memory), without its leading "/"; "" (the root) if
    none is readable or it lies outside the process's cgroup namespace ("/../..")."""
    try:
        with open(PROC_CGROUP) as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        ident, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if ("memory" in controllers.split(",") if v1 else ident == "0" and not controllers):
            return "" if ".." in path.split("/") else path.strip("/")
    return ""


def _cgroup_used(folder: str, use_file: str, stat_file: str, cache_key: str) -> int | None:
    """Bytes in use by the cgroup at folder, less its inactive page cache (as docker stats counts
    it: the kernel reclaims that before it runs out); None if its use is not readable."""
    try:
        with open(os.path.join(folder, use_file)) as f:
            used = int(f.read())
    except (OSError, ValueError):
        return None
    try:
        with open(os.path.join(folder, stat_file)) as f:
            cache = next((int(line.split()[1]) for line in f if line.split()[:1] == [cache_key]), 0)
    except (OSError, ValueError, IndexError):
        cache = 0
    return max(used - cache, 0)


def cgroup_memory() -> tuple[int, int] | None:
    """(limit, free) bytes of the memory cgroup kame runs in (cgroup v2's files, else v1's), over the
    process's own cgroup and its parents up to the mount's root (a parent's limit, as a Kubernetes
    pod's or a systemd slice's, holds its children too): the smallest limit, and the least room
    (limit - in use) of any level, which may be another level's, as the OOM killer acts at whichever
    level runs out first. A cgroup folder that is not there is
    passed over: in a container with a cgroup namespace, or v1's mount of its own cgroup, the root
    is the container's; a level whose use is not readable counts as its limit free. None without a
    limit ("max"; v1's "no limit" is a huge number, which device_memory's lower-of-the-two leaves
    out). In use does not count the inactive page cache (_cgroup_used)."""
    for mount, limit_file, *use_files in _CGROUP_FILES:
        path, found, limit, free = _own_cgroup(v1=bool(mount)), False, None, None
        while True:  # the own cgroup, then each parent up to the root ("")
            folder = os.path.join(CGROUP, mount, path)
            try:
                with open(os.path.join(folder, limit_file)) as f:
                    text = f.read().strip()
                found = True
                if text != "max":
                    level = int(text)
                    used = _cgroup_used(folder, *use_files)
                    room = level if used is None else max(level - used, 0)
                    limit = level if limit is None else min(limit, level)
                    free = room if free is None else min(free, room)
            except (OSError, ValueError):
                pass
            if not path:
                break
            path = os.path.dirname(path)
        if limit is not None:
            return limit, free
        if found:  # (this version's files, no limit at any level)
            return None
    return None


MACHINE, CONTAINER = "the machine's memory", "the container's memory limit (its cgroup's)"


def device_memory(dev: torch.device) -> tuple[int, int, str, str]:
    """(total, available, total's, available's): bytes of ``dev``'s memory, 0 where unknown, and
    whose figure each is, for messages: a GPU's (torch.cuda.mem_get_info; "cuda memory"), or the
    machine's RAM (available: /proc/meminfo's MemAvailable, else the free pages; MACHINE) held to
    the container's limit where lower (cgroup_memory: total the limit, available what it leaves
    unused; CONTAINER, each where it is the lower one)."""
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        return total, free, "cuda memory", "cuda memory"
    if dev.type != "cpu" or not hasattr(os, "sysconf"):
        return 0, 0, f"{dev.type} memory", f"{dev.type} memory"
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        available = page * os.sysconf("SC_AVPHYS_PAGES")
    total, cgroup = page * os.sysconf("SC_PHYS_PAGES"), cgroup_memory()
    total_of = available_of = MACHINE
    if cgroup:  # (a full container has 1 byte left: 0 would read as unknown, and silence the warning)
        limit, left = cgroup[0], max(cgroup[1], 1)
        if limit < total:
            total, total_of = limit, CONTAINER
        if left < available:
            available, available_of = left, CONTAINER
    return total, available, total_of, available_of


_WARNED_CACHE: weakref.WeakSet = weakref.WeakSet()  # the models check_cache_memory has warned about


def check_cache_memory(model: nn.Module, batch_size: int) -> None:
    """ConfigError naming context if the KV cache (TransformerState's) of ``batch_size`` sessions of
    ``model`` (an LMModel: 2 * num_layers * context * dim / kv_repeat numbers) exceeds the device's
    whole memory (device_memory: the machine's RAM or its container's limit, or a GPU's); a warning
    (once per model) if it fits but takes more than half of the memory available now. Each names
    whose figure it is: the container's limit where that is the lower one."""
    c, p = model.cfg, next(model.parameters())
    dev = p.device
    total, available, total_of, available_of = device_memory(dev)
    need = 2 * c.num_layers * batch_size * (c.context or 0) * (c.dim // c.kv_repeat) * p.element_size()
    if 0 < total < need:
        raise ConfigError(f"context={c.context}: the KV cache of {batch_size} session(s) needs {need / 2**30:.1f} GiB, "
                          f"more than the {total / 2**30:.1f} GiB of {total_of}: lower the front-end's "
                          f"context (its config.json) or the number of sessions (runtime.max_sessions)")
    if 0 < available < 2 * need and model not in _WARNED_CACHE:
        _WARNED_CACHE.add(model)
        log.warning("context=%s: the KV cache of %d session(s) takes %.1f GiB, %.0f%% of the %.1f GiB of %s "
                    "available now: memory may run short (lower the front-end's context, its config.json, or "
                    "the number of sessions, runtime.max_sessions)", c.context, batch_size, need / 2**30,
                    100 * need / available, available / 2**30, available_of)
