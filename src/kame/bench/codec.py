"""``kame bench codec``: streaming encode/decode time per 80 ms frame, on one CPU thread.

For each codec spec (default: Mimi tiny and full size with random weights) it streams a test
signal one frame at a time and reports p50/p99 encode and decode time, the real-time factor
(mean time per frame / 80 ms; < 1 is faster than real time) and the token bitrate, as a
markdown table.

    kame bench codec                                  # mimi:random-tiny, mimi:random
    kame bench codec --codec embedded --codec mimi:/path/to/tokenizer-e351c8d8-checkpoint125.safetensors
    python bench/codec.py --frames 100 --batch 4
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import TYPE_CHECKING

from ..cliargs import at_least, naming, thread_count
from ..config import MAX_SESSIONS
from .machine import add_dtype_argument, pct

if TYPE_CHECKING:
    import torch

DEFAULT_CODECS = ["mimi:random-tiny", "mimi:random"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", action="append", metavar="SPEC",
                   help=f"codec spec (repeatable; replaces the default list): default {' '.join(DEFAULT_CODECS)}")
    p.add_argument("--frames", type=at_least(1), default=50, help="timed frames per codec (default 50 = 4 s)")
    p.add_argument("--warmup", type=at_least(0), default=5, help="untimed frames first (default 5)")
    p.add_argument("--batch", type=at_least(1, maximum=MAX_SESSIONS), default=1,
                   help=f"rows streamed together (default 1; at most {MAX_SESSIONS}, runtime.max_sessions' ceiling); "
                        "times are per batch step")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads (default 1)")
    add_dtype_argument(p, "the codec's own", note="; mimi only: the embedded codec runs in float32")


def _signal(n: int, batch: int, sample_rate: int) -> torch.Tensor:
    """A speech-like test signal: a gliding harmonic tone with syllable-rate envelope + noise."""
    import torch

    g = torch.Generator().manual_seed(0)
    t = torch.arange(n) / sample_rate
    f0 = 140 + 40 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    tone = sum(torch.sin(k * phase) / k for k in range(1, 6))
    env = 0.5 * (1 + torch.sin(2 * math.pi * 4 * t)).clamp(min=0)
    x = 0.2 * tone * env + 0.01 * torch.randn(n, generator=g)
    return x.expand(batch, n).clone()



def load_codec(spec: str, dtype: str | None = None):
    """(codec, load seconds)"""
    import torch

    from .. import registry

    t0 = time.perf_counter()
    codec = registry.create("codec", spec, **({"dtype": getattr(torch, dtype)} if dtype else {}))
    return codec, time.perf_counter() - t0


def bench_one(spec: str, codec, load_s: float, frames: int, warmup: int, batch: int) -> dict:
    import torch

    fs = codec.frame_size
    pcm = _signal((frames + warmup) * fs, batch, codec.sample_rate)
    stream = codec.stream(batch)
    enc, dec = [], []
    for i in range(frames + warmup):
        x = pcm[:, i * fs:(i + 1) * fs]
        t0 = time.perf_counter()
        codes = stream.encode_frame(x)
        t1 = time.perf_counter()
        stream.decode_frame(codes)
        t2 = time.perf_counter()
        if i >= warmup:
            enc.append(t1 - t0)
            dec.append(t2 - t1)
    frame_s = fs / codec.sample_rate
    model = getattr(codec, "model", None)
    params = sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else None
    bitrate = getattr(codec, "bitrate", None)
    if bitrate is None:
        bitrate = codec.num_codebooks * math.log2(codec.cardinality) * codec.frame_rate
    return dict(
        spec=spec, K=codec.num_codebooks, card=codec.cardinality, kbps=bitrate / 1000, params=params, load_s=load_s,
        enc_p50=pct(enc, 0.5), enc_p99=pct(enc, 0.99), dec_p50=pct(dec, 0.5), dec_p99=pct(dec, 0.99),
        rtf_enc=statistics.mean(enc) / frame_s, rtf_dec=statistics.mean(dec) / frame_s,
        rtf=(statistics.mean(enc) + statistics.mean(dec)) / frame_s,
    )


def table(rows: list[dict]) -> str:
    head = ("| codec | K × card | kbps | params | encode p50 / p99 (ms) | decode p50 / p99 (ms) "
            "| RTF enc | RTF dec | RTF enc+dec |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        params = f"{r['params'] / 1e6:.2f} M" if r["params"] else "-"
        lines.append(
            f"| `{r['spec']}` | {r['K']} × {r['card']} | {r['kbps']:.2f} | {params} "
            f"| {1e3 * r['enc_p50']:.1f} / {1e3 * r['enc_p99']:.1f} | {1e3 * r['dec_p50']:.1f} / {1e3 * r['dec_p99']:.1f} "
            f"| {r['rtf_enc']:.2f} | {r['rtf_dec']:.2f} | {r['rtf']:.2f} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from .. import registry
    from ..errors import ConfigError

    specs = args.codec or DEFAULT_CODECS
    for spec in specs:  # a spec that cannot work: said at once, before torch loads
        registry.check_key_spec("--codec", "codec", spec)
        if args.dtype not in (None, "float32") and registry.parse_spec(spec)[0] == "embedded":
            # (before the load, naming --dtype: was said as --codec's error, after torch loaded)
            raise ConfigError(f"--dtype {args.dtype}: the embedded codec ({spec}) runs in float32 only; leave --dtype "
                              f"out to bench it")
    import torch

    from .machine import header, stopped_by_ctrl_c

    torch.set_num_threads(args.threads)
    with naming("--codec"):
        loaded = [load_codec(s, args.dtype) for s in specs]  # every one, before the first is measured
    print(header(args, add_arguments, "codec"), flush=True)
    rows: list[dict] = []

    def measure() -> None:  # (each codec's row kept as it is measured: Ctrl-C keeps the ones before)
        for s, (codec, load_s) in zip(specs, loaded):
            rows.append(bench_one(s, codec, load_s, args.frames, args.warmup, args.batch))

    stopped = stopped_by_ctrl_c(measure, rows)
    if stopped and not rows:
        return 130
    dt = f", {args.dtype}" if args.dtype else ""
    print(f"\ncodec streaming, 80 ms frames, batch {args.batch}, {args.frames} frames after {args.warmup} warm-up{dt}, "
          f"torch threads {args.threads}\n")
    print(table(rows))
    return 130 if stopped else 0
