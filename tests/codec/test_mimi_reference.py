"""Mimi in kame vs the ``moshi`` reference package (test-only dependency): the same random
weights, moved through a safetensors file and loaded by each side's own loader, give the same
codes and the same audio (within 1e-4), for the tiny config and the published full-size shapes.

    .venv/bin/python -m pytest tests/codec/test_mimi_reference.py -q
"""

import os

import pytest
import torch

os.environ.setdefault("NO_TORCH_COMPILE", "1")
loaders = pytest.importorskip("moshi.models.loaders")

from kame.codec.mimi import MimiConfig, build_random, load_mimi, save_mimi  # noqa: E402

from .test_mimi import speechlike  # noqa: E402

FS = 1920


def moshi_config(c: MimiConfig) -> dict:
    """Our config as the dict moshi's get_mimi takes (its published _mimi_config layout)."""
    seanet = dict(
        channels=1, dimension=c.dimension, causal=True, n_filters=c.n_filters, n_residual_layers=c.n_residual_layers,
        activation="ELU", compress=c.compress, dilation_base=c.dilation_base, disable_norm_outer_blocks=0,
        kernel_size=c.kernel_size, residual_kernel_size=c.residual_kernel_size, last_kernel_size=c.last_kernel_size,
        norm="none", pad_mode="constant", ratios=list(c.ratios), true_skip=True,
    )
    quantizer = dict(dimension=c.codebook_dim, n_q=c.n_q, bins=c.bins, input_dimension=c.dimension,
                     output_dimension=c.dimension)
    transformer = dict(
        d_model=c.d_model, num_heads=c.num_heads, num_layers=c.num_layers, causal=True, layer_scale=c.layer_scale,
        context=c.context, conv_layout=True, max_period=c.max_period, gating="none", norm="layer_norm",
        positional_embedding="rope", dim_feedforward=c.dim_feedforward, input_dimension=c.dimension,
        output_dimensions=[c.dimension],
    )
    return dict(sample_rate=c.sample_rate, channels=1, frame_rate=c.frame_rate, seanet=seanet,
                quantizer=quantizer, transformer=transformer)


def both(preset: str, tmp_path, num_codebooks: int = 8):
    """kame and moshi Mimi with the same random weights, each loaded from the file by its own loader."""
    ours = build_random(preset, seed=2)
    with torch.no_grad():  # make the transformers matter (LayerScale init 0.01 almost hides them)
        g = torch.Generator().manual_seed(0)
        for name, p in ours.model.named_parameters():
            if "layer_scale" in name:
                p.copy_(0.3 + 0.7 * torch.rand(p.shape, generator=g))
    path = save_mimi(ours, tmp_path / "mimi.safetensors")
    ours = load_mimi(path, num_codebooks=num_codebooks)
    ref = loaders.get_mimi(str(path), moshi_config(ours.cfg), num_codebooks=num_codebooks)
    return ours, ref


def test_tiny_matches_moshi(tmp_path):
    ours, ref = both("tiny", tmp_path)
    F = 30  # 60 transformer steps (7x the tiny 8-step window); > 25 frames: chunked whole-signal path
    x = speechlike(2, F, seed=4)
    with torch.no_grad():
        ref_codes = ref.encode(x[:, None])
        ref_audio = ref.decode(ref_codes)[:, 0]
    codes = ours.encode(x)
    assert torch.equal(codes, ref_codes)
    assert (ours.decode(ref_codes) - ref_audio).abs().max() < 1e-4
    # streamed, 80 ms at a time, still equals moshi's whole-signal result
    s = ours.stream(2)
    streamed = torch.stack([s.encode_frame(x[:, i * FS:(i + 1) * FS]) for i in range(F)], dim=-1)
    assert torch.equal(streamed, ref_codes)
    audio = torch.cat([s.decode_frame(ref_codes[:, :, i]) for i in range(F)], dim=-1)
    assert (audio - ref_audio).abs().max() < 1e-4


def test_tiny_streaming_and_row_reset_match_moshi_streaming(tmp_path):
    ours, ref = both("tiny", tmp_path, num_codebooks=5)
    F, R = 3, 1  # short enough that moshi's ring-buffer KV cache has not wrapped
    x = speechlike(2, F, seed=6)
    codes_in = torch.randint(0, ours.cardinality, (2, 5, F))
    s = ours.stream(2)
    mine_c, mine_a, ref_c, ref_a = [], [], [], []
    with torch.no_grad(), ref.streaming(2):
        for i in range(F):
            if i == R:
                s.reset([0])
                ref.reset_streaming(torch.tensor([True, False]))
            frame = x[:, i * FS:(i + 1) * FS]
            mine_c.append(s.encode_frame(frame))
            ref_c.append(ref.encode(frame[:, None])[:, :, 0])
            mine_a.append(s.decode_frame(codes_in[:, :, i]))
            ref_a.append(ref.decode(codes_in[:, :, i:i + 1])[:, 0])
    assert torch.equal(torch.stack(mine_c), torch.stack(ref_c))
    assert (torch.cat(mine_a, -1) - torch.cat(ref_a, -1)).abs().max() < 1e-4


def test_full_size_matches_moshi(tmp_path):
    from safetensors.torch import save_file

    _, ref = both("mimi", tmp_path)
    # a file written by moshi itself (no kame metadata) loads with the published default config
    moshi_file = tmp_path / "tokenizer-e351c8d8-checkpoint125.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(moshi_file))
    ours = load_mimi(tmp_path)  # the folder: finds the file by its published name
    assert ours.cfg == MimiConfig() and ours.num_codebooks == 8
    assert ours.model.num_params() == sum(p.numel() for p in ref.parameters())  # 79.3 M
    x = speechlike(1, 3, seed=8)
    with torch.no_grad():
        ref_codes = ref.encode(x[:, None])
        ref_audio = ref.decode(ref_codes)[:, 0]
    s = ours.stream(1)
    codes = torch.stack([s.encode_frame(x[:, i * FS:(i + 1) * FS]) for i in range(3)], dim=-1)
    assert torch.equal(codes, ref_codes)
    assert torch.equal(ours.encode(x), ref_codes)
    audio = torch.cat([s.decode_frame(ref_codes[:, :, i]) for i in range(3)], dim=-1)
    assert (audio - ref_audio).abs().max() < 1e-4
    assert (ours.decode(ref_codes) - ref_audio).abs().max() < 1e-4
