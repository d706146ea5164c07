"""Fit the embedded codec on speech kame synthesizes itself (`kame codec fit`).

    kame codec fit --seed 0 -o src/kame/assets/embedded_codec.safetensors   # the shipped file (~7 min)
    kame codec fit --kokoro 600 -o /tmp/kokoro.safetensors                   # + 600 Kokoro sentences (~17 min)
    kame codec fit --sentences 40 --iters 2 -o /tmp/tiny.safetensors        # a quick small fit
    kame codec fit --augment 0.5 -o /tmp/robust.safetensors                  # half the clips through random rooms/noise

Steps: synthesize the training sentences (kame.codec.embedded.sentences) over TRAIN_VOICES
(espeak-ng voices/pitches/rates + piper length/noise scales; with ``--kokoro N``, N more
sentences round-robin over KOKORO_VOICES, which need the `fit` extra), analyse
them (causal features, as the encoder does), stack 8 sub-frames per token frame (at four
frame-grid offsets, 20 ms apart, so every alignment the encoder meets is seen; F0 as the change
from the sub-frame before), fit PCA + 8-stage residual k-means (each
stage's Lloyd iterations on all vectors, or a random subset of ``kmeans_points`` if set), then fit the
vocoder's per-band log-mel correction so decoded speech has the original's spectral balance.
Everything is seeded (espeak runs in a fresh seeded child process, see data.py); the same
command on the same machine type writes the same bytes (sha256 printed and written next to
the file).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CheckpointError, ConfigError
from ...paths import check_output_file, sweep_temporaries
from .config import EmbeddedCodecConfig
from .data import KOKORO_VOICES, TRAIN_VOICES, Voice, require, synthesize
from .sentences import train_sentences

if TYPE_CHECKING:  # torch, scipy and the modules using them load when a fit runs (`--help` needs none)
    import torch

    from .model import EmbeddedCodec

log = logging.getLogger(__name__)


def stack_frames(feats: torch.Tensor, cfg: EmbeddedCodecConfig, offsets: tuple[int, ...] = (0,)) -> torch.Tensor:
    """feats [N, F] sub-frames -> [M, S * F] token-frame vectors, for each grid offset, as the
    RVQ codes them: with cfg.f0_delta, F0 as the change from the sub-frame before each frame
    (fitted open loop, on the true F0; the encoder closes the loop on the decoded one), a clip's
    first frame against a new row's reference."""
    import torch

    from .model import F0_REF0

    S = cfg.subframes
    out = []
    for off in offsets:
        n = (feats.shape[0] - off) // S
        if n > 0:
            x = feats[off : off + n * S].reshape(n, S * feats.shape[1])
            if cfg.f0_delta:
                before = off + torch.arange(n) * S - 1  # [n] sub-frame index
                ref = torch.where(before >= 0, feats[before.clamp(min=0), cfg.n_cep], torch.tensor(F0_REF0))
                x = x.clone()  # a view of feats otherwise
                x[:, cfg.f0_dims] -= ref[:, None]
            out.append(x)
    return torch.cat(out) if out else torch.zeros(0, S * feats.shape[1])


def fit_correction(codec: EmbeddedCodec, clips: list[np.ndarray], rounds: int = 2) -> torch.Tensor:
    """Per-mel-band mean log-mel difference original - decoded over speech sub-frames."""
    import torch

    from .features import analyze

    cfg, an = codec.cfg, codec.analyzer
    lag = codec.delay_samples // cfg.hop  # decoded sub-frame n + lag matches original n
    for _ in range(rounds):
        diffs = []
        for pcm in clips:
            x = torch.from_numpy(pcm)[None]
            _, lm = analyze(x, cfg, an)
            y = codec.decode(codec.encode(x))
            _, lm_y = analyze(y, cfg, an)
            n = min(lm.shape[1], lm_y.shape[1] - lag)
            a, b = lm[0, :n], lm_y[0, lag : lag + n]
            speech = a.max(1).values > np.log(cfg.log_floor) + 6.0  # ~26 dB above the floor
            diffs.append((a - b)[speech])
        corr = torch.cat(diffs).mean(0)
        codec.vocoder.correction = codec.vocoder.correction + corr
        log.info("correction round: mean |delta| %.3f", float(corr.abs().mean()))
    return codec.vocoder.correction


def fit(cfg: EmbeddedCodecConfig, *, seed: int = 0, sentences: int = 3000, kokoro: int = 0,
        voices: list[Voice] | None = None, correction_clips: int = 40) -> tuple[EmbeddedCodec, dict]:
    """Fit on ``sentences`` over ``voices`` (TRAIN_VOICES) plus ``kokoro`` more over KOKORO_VOICES."""
    voices = voices or TRAIN_VOICES
    require({v.engine for v in voices} | ({"kokoro"} if kokoro else set()))  # before torch and minutes of synthesis
    import torch

    from .channel import random_channel
    from .features import Analyzer, analyze, level_input
    from .model import EmbeddedCodec
    from .rvq import fit_rvq

    t0 = time.perf_counter()
    texts = train_sentences(sentences + kokoro, seed)  # its first `sentences` are train_sentences(sentences)
    clips = synthesize(voices, texts[:sentences], seed=seed)
    if kokoro:
        clips += synthesize(KOKORO_VOICES, texts[sentences:], seed=seed)
    t_synth = time.perf_counter() - t0
    an = Analyzer(cfg)
    rows = []
    for i, (_, _, pcm) in enumerate(clips):
        rng = np.random.default_rng([seed, i])  # per clip: repeatable whatever the clip order
        if rng.random() < cfg.augment:  # through a random channel, then levelled as the encoder does
            # (clean clips are analysed as synthesized: at their level the AGC gives no gain)
            pcm = level_input(torch.from_numpy(random_channel(pcm, cfg.sample_rate, rng))[None], cfg, an)[0].numpy()
        feats, _ = analyze(torch.from_numpy(pcm)[None], cfg, an)
        rows.append(stack_frames(feats[0], cfg, tuple(range(0, cfg.subframes, 2))))
    x = torch.cat(rows)
    minutes = sum(len(c[2]) for c in clips) / cfg.sample_rate / 60
    log.info("%d clips, %.1f min of audio, %d training vectors (synth %.1f s)", len(clips), minutes, len(x), t_synth)
    if len(x) < cfg.cardinality:  # kmeans repeats them: every entry a copy of a training vector
        log.warning("only %d training vectors for %d entries per codebook: the codebooks will copy them (a "
                    "test-size fit, not a usable codec); use more --sentences (the shipped fit: 3000) or a "
                    "smaller --cardinality", len(x), cfg.cardinality)
    t1 = time.perf_counter()
    rvq = fit_rvq(x, cfg, seed)
    rvq.codebooks = rvq.codebooks.half().float()  # what the file will hold
    t_vq = time.perf_counter() - t1
    codec = EmbeddedCodec(cfg, rvq, torch.zeros(cfg.n_mels))
    step = max(1, len(clips) // correction_clips)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the vocoder's small ops run faster on one thread
    try:
        fit_correction(codec, [c[2] for c in clips[::step][:correction_clips]])
    finally:
        torch.set_num_threads(threads)
    meta = {"seed": seed, "sentences": sentences, "clips": len(clips), "audio_minutes": round(minutes, 2),
            "voices": [v.label for v in voices + (KOKORO_VOICES if kokoro else [])], "vectors": len(x),
            **({"kokoro_sentences": kokoro} if kokoro else {})}
    stats = {"synth_s": t_synth, "vq_s": t_vq, "total_s": time.perf_counter() - t0, **meta}
    return codec, stats


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ...cliargs import at_least
    from ...model.config import MAX_SEED

    # required: the shipped file is only replaced when asked for by name
    p.add_argument("-o", "--output", required=True,
                   help="where to write the fitted file (src/kame/assets/embedded_codec.safetensors in a "
                        "source checkout replaces the shipped one)")
    p.add_argument("--seed", type=at_least(0, maximum=MAX_SEED), default=0,
                   help="seeds the training sentences, the synthesized voices (piper's and espeak-ng's noise), "
                        "the recording channels and k-means: 0 to 2**64 - 1 (default 0)")
    p.add_argument("--sentences", type=at_least(1), default=3000,
                   help="training sentences (15%% piper, the rest espeak voices; default 3000)")
    p.add_argument("--kokoro", type=at_least(0), default=0, metavar="N",
                   help="N more sentences spoken by Kokoro voices (needs the fit extra: pip install -e '.[fit]' in a "
                        "kame checkout; the measured mix is 600: better on real recordings, worse on espeak voices; "
                        "not the shipped fit; default 0)")
    p.add_argument("--iters", type=at_least(1), default=None,
                   help=f"k-means iterations per stage (default {EmbeddedCodecConfig.kmeans_iters})")
    p.add_argument("--cardinality", type=at_least(2, maximum=2048), default=None,
                   help=f"entries per codebook, 2 to 2048 (Mimi's layout; default {EmbeddedCodecConfig.cardinality})")
    p.add_argument("--augment", type=at_least(0.0, float, maximum=1.0), default=None,
                   help="share of training clips passed through a random recording channel: room, noise, "
                        f"pass band, level (channel.py), 0 to 1 (default {EmbeddedCodecConfig.augment:g})")


def main(args: argparse.Namespace) -> int:
    cfg = EmbeddedCodecConfig()
    if args.iters is not None:
        cfg = replace(cfg, kmeans_iters=args.iters)
    if args.cardinality is not None:
        if not 2 <= args.cardinality <= 2048:
            raise ConfigError(f"--cardinality must be in 2..2048 (Mimi's layout), got {args.cardinality}")
        cfg = replace(cfg, cardinality=args.cardinality)
    if args.augment is not None:
        if not 0.0 <= args.augment <= 1.0:
            raise ConfigError(f"--augment is a share of the clips, in 0..1; got {args.augment}")
        cfg = replace(cfg, augment=args.augment)
    out = check_output_file(args.output, suffix=".safetensors",  # before minutes of fitting, not after
                            why=" (the fitted codec, read back with --codec embedded:FILE)")
    try:
        from . import model  # (torch: a second or two)

        codec, stats = fit(cfg, seed=args.seed, sentences=args.sentences, kokoro=args.kokoro)
    except KeyboardInterrupt:  # (was: exit 130, nothing said)
        print(f"kame codec fit: interrupted (Ctrl-C) before the fit ended; {out} not written", file=sys.stderr,
              flush=True)
        return 130
    meta = {k: stats[k] for k in ("seed", "sentences", "clips", "audio_minutes", "voices", "vectors",
                                  "kokoro_sentences") if k in stats}
    # what a fit killed outright as it saved left beside its -o (the file, its .sha256)
    sweep_temporaries("kame codec fit", [(out.parent, (out.name, out.name + ".sha256"))])
    try:
        digest = model.save(codec, out, meta)
    except Exception as exc:  # safetensors' SafetensorError, OSError
        raise CheckpointError(f"cannot write the fitted codec to {out}: {exc}") from exc
    size = out.stat().st_size
    print(f"wrote {args.output} ({size / 1e6:.2f} MB) sha256 {digest}")
    if out.resolve() == model.DEFAULT_PATH.resolve() and digest != model.DEFAULT_SHA256:
        print(f"note: this replaced the shipped file with other bytes: `--codec embedded` refuses it until "
              f"DEFAULT_SHA256 in kame/codec/embedded/model.py is set to {digest} (it is {model.DEFAULT_SHA256})")
    print(f"{stats['clips']} clips, {stats['audio_minutes']:.1f} min audio; synth {stats['synth_s']:.1f} s, "
          f"VQ fit {stats['vq_s']:.1f} s, total {stats['total_s']:.1f} s")
    return 0
