"""`kame codec roundtrip`: encode and decode an audio file through a codec, to listen to what it keeps.

    kame codec roundtrip speech.wav -o out.wav                  # the embedded codec
    kame codec roundtrip speech.wav -o out.wav --codec embedded:/path/fit.safetensors
    kame codec roundtrip speech.wav -o out.wav --codec mimi     # any registered codec spec
    kame codec roundtrip speech.wav -o out.wav --streaming      # frame by frame, as a session does

Any input rate/channel count is read, mixed to mono and resampled to the codec's rate. The
output is aligned with the input and as long (the codec's delay taken off), so the two can be
compared side by side. Prints the bitrate and the encode/decode time (one torch thread unless
--threads says otherwise).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import registry
from ..audio import READ_FORMATS, output_format, read_wav, resample, write_wav
from ..cliargs import at_least, naming, thread_count
from ..errors import ConfigError
from ..paths import check_output_file, sweep_temporaries

if TYPE_CHECKING:
    import torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help=f"input audio file ({READ_FORMATS}; any rate, mono or not)")
    p.add_argument("-o", "--output", required=True, help="output audio file at the codec's rate: .wav or .flac (16-bit), .ogg, .opus or .mp3")
    p.add_argument("--codec", default="embedded", help="codec spec, e.g. embedded, embedded:PATH, mimi")
    p.add_argument("--codebooks", type=at_least(1), default=None,
                   help="code with only the first N codebooks (embedded: 1..8; mimi: 1..its quantizer's, "
                        "32 for the published checkpoint)")
    p.add_argument("--streaming", action="store_true", help="encode/decode frame by frame (CodecStream)")
    p.add_argument("--threads", type=thread_count, default=1,
                   help="torch threads (default 1: on a busy machine more threads only wait on each other)")


def roundtrip(codec, pcm: np.ndarray, *, streaming: bool = False) -> tuple[np.ndarray, torch.Tensor]:
    """pcm [T] at codec.sample_rate -> (decoded [T], codes [1, K, F]): the decoded audio aligned
    with the input (the codec's ``delay_samples`` taken off; the input is padded with that much
    silence so its end is decoded too) and as long. K is the codebooks the codec codes with: to
    code with fewer, ``codec.set_num_codebooks(k)`` first (the encoder must know: the embedded
    codec's F0 loop closes on what k codebooks decode)."""
    import torch

    T, delay, fs = len(pcm), codec.delay_samples, codec.frame_size
    x = torch.from_numpy(np.ascontiguousarray(pcm, dtype=np.float32))[None]
    n = math.ceil((T + delay) / fs)  # frames
    x = torch.nn.functional.pad(x, (0, n * fs - T))  # [1, n * fs]
    if not streaming:
        codes = codec.encode(x)  # [1, K, n]
        out = codec.decode(codes)[0]
    else:
        s = codec.stream(1)
        codes = torch.stack([s.encode_frame(x[:, i * fs : (i + 1) * fs]) for i in range(n)], -1)  # [1, K, n]
        out = torch.cat([s.decode_frame(codes[..., i]) for i in range(n)], 1)[0]
    return out[delay : delay + T].numpy(), codes


def main(args: argparse.Namespace) -> int:
    import torch

    # the output (not a folder, not the input, a known type, a folder that can be written) is
    # checked now, not after the round trip
    check_output_file(args.output, input=args.input, file_type=output_format)
    # and the codec spec's form, and the input is read (at its own rate), before the codec loads:
    # Mimi takes seconds, or a download
    registry.check_key_spec("--codec", "codec", args.codec)
    pcm, rate = read_wav(args.input, None)
    with naming("--codec"):
        codec = registry.create("codec", args.codec)
    if args.codebooks is not None:  # the codec says how many it can code with (Mimi: up to 32)
        try:
            codec.set_num_codebooks(args.codebooks)
        except ConfigError as exc:
            raise ConfigError(f"--codebooks {args.codebooks}: {exc}") from None
    pcm = resample(pcm, rate, codec.sample_rate)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out, codes = roundtrip(codec, pcm, streaming=args.streaming)
    dt = time.perf_counter() - t0
    out_path = Path(args.output)  # (what a run killed outright as it wrote it left beside it)
    sweep_temporaries("kame codec roundtrip", [(out_path.parent, (out_path.name,))])
    write_wav(out_path, out, codec.sample_rate)
    k = codes.shape[1]
    kbps = codec.frame_rate * k * math.log2(codec.cardinality) / 1000
    dur = len(pcm) / codec.sample_rate
    n = codes.shape[-1]
    print(f"{args.input}: {dur:.2f} s -> {n} frame{'s' * (n != 1)} x {k} codebooks ({kbps:.2f} kbps); "
          f"encode+decode {dt:.2f} s (RTF {dt / dur:.3f}); wrote {args.output}")
    return 0
