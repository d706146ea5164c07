"""Mimi, Kyutai's streaming neural audio codec, written in kame (pure torch).

24 kHz mono <-> 12.5 Hz frames of K codes (codebook 0 semantic, the rest acoustic), fully
causal, streamed 80 ms at a time with batched per-row state. Loads the published checkpoint
(``tokenizer-e351c8d8-checkpoint125.safetensors``):

    from kame.codec.mimi import load_mimi, build_random
    codec = load_mimi("hf://kyutai/moshiko-pytorch-bf16", num_codebooks=8)   # or a file/folder (None: its config's)
    codec = build_random("tiny")                                               # tests / benches
    codes = codec.encode(pcm)              # pcm [B, T] float -> [B, K, F]
    s = codec.stream(batch_size=4); s.encode_frame(pcm[:, :1920]); s.reset([2])

Registered as the codec scheme "mimi": ``mimi:PATH``, ``mimi:hf://ORG/REPO[/FILE]``,
``mimi:random``, ``mimi:random-tiny`` (``mimi`` alone = the published checkpoint from the hub).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import ConfigError
from ...seeding import manual_seed
from .checkpoint import check_placement, load_mimi, load_state, resolve_source, save_mimi
from .config import DEFAULT_REPO, MIMI_NAME, PRESETS, MimiConfig
from .model import MimiCodec, MimiModel, MimiStream

DEFAULT_SOURCE = f"hf://{DEFAULT_REPO}/{MIMI_NAME}"


@torch.no_grad()
def randomize(model: MimiModel, seed: int = 0, calibration_s: float = 0.8) -> MimiModel:
    """Random weights that exercise every path: torch's default init for the network and
    codebooks drawn around the statistics of the latents of a calibration signal (so codes
    spread over the codebook instead of all being 0 as with empty EMA statistics)."""
    cfg = model.cfg
    with torch.random.fork_rng():
        manual_seed(seed)
        for m in model.modules():
            if hasattr(m, "reset_parameters") and m is not model:
                m.reset_parameters()
        n = max(1, round(calibration_s * cfg.frame_rate)) * cfg.frame_size
        t = torch.arange(n) / cfg.sample_rate
        pcm = (0.3 * torch.sin(2 * torch.pi * 220 * t) * torch.sin(2 * torch.pi * 3 * t) + 0.05 * torch.randn(n))
        pcm = pcm.view(1, 1, n).to(next(model.parameters()))
        latent = model.encode_latent(pcm, model.init_encoder_state(1))  # [1, D, F]
        for rvq in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
            residual = rvq.input_proj(latent)[0].T  # [F, codebook_dim]
            for layer in rvq.vq.layers:
                cb = layer._codebook
                mean, std = residual.mean(0), residual.std(0).clamp(min=1e-3)
                usage = torch.rand(cfg.bins) * 1.5 + 0.5
                emb = mean + std * torch.randn(cfg.bins, cfg.codebook_dim)
                cb.embedding_sum.copy_(emb * usage[:, None])
                cb.cluster_usage.copy_(usage)
                cb._initialized.fill_(1.0)
                residual = residual - cb.decode(cb.encode(residual))
    return model


def build_random(
    preset: str | MimiConfig = "mimi",
    seed: int = 0,
    num_codebooks: int | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
) -> MimiCodec:
    """A random-weight Mimi codec: preset "mimi" (published shapes, 96 M values with all 32
    codebooks) or "tiny", or a MimiConfig."""
    if isinstance(preset, MimiConfig):
        cfg = preset
    elif preset in PRESETS:
        cfg = PRESETS[preset]()
    else:
        raise ConfigError(f"unknown Mimi preset {preset!r}; known: {sorted(PRESETS)}")
    device, dtype = check_placement(device, dtype)
    model = randomize(MimiModel(cfg), seed=seed).to(device=device, dtype=dtype)
    return MimiCodec(model, num_codebooks=num_codebooks)


def check_arg(arg: str | None) -> str | Path:
    """What ``mimi[:ARG]`` names, checked without building or reading it: a random preset ("mimi"
    for random, "tiny" for random-tiny) or the checkpoint file (a path, a folder or hf://...: found,
    not read)."""
    if arg in ("random", "random-tiny"):
        return "mimi" if arg == "random" else "tiny"
    if arg and arg.startswith("random") and not Path(arg).expanduser().exists():  # not "checkpoint not found"
        raise ConfigError(f"unknown random Mimi {arg!r}; use mimi:random (published shapes) or mimi:random-tiny")
    return resolve_source(arg or DEFAULT_SOURCE)


def create(arg: str | None = None, num_codebooks: int | None = None, device: str | torch.device = "cpu",
           dtype: str | torch.dtype = torch.float32, **kwargs) -> MimiCodec:
    """Registry factory for ``mimi[:ARG]``: ARG is random, random-tiny, a path or hf://...
    ``num_codebooks``: the codebooks to code with (None: the file's config, Moshi's 8 unless the
    file holds fewer; the runtime asks for what its front-end reads and generates)."""
    if kwargs:
        raise ConfigError(f"unknown option(s) for codec 'mimi': {sorted(kwargs)}")
    source = check_arg(arg)
    if isinstance(source, str):
        return build_random(source, num_codebooks=num_codebooks, device=device, dtype=dtype)
    return load_mimi(source, num_codebooks=num_codebooks, device=device, dtype=dtype)


__all__ = [
    "MimiConfig", "PRESETS", "MIMI_NAME", "DEFAULT_REPO", "DEFAULT_SOURCE", "MimiModel", "MimiCodec", "MimiStream",
    "load_mimi", "save_mimi", "load_state", "resolve_source", "build_random", "randomize", "check_arg", "create",
]
