"""A quick Mimi round trip: ``python -m kame.codec.mimi [ARG]``.

ARG is what follows ``mimi:`` in a codec spec: ``random-tiny`` (default), ``random``, a
checkpoint file/folder or ``hf://ORG/REPO[/FILE]``. Encodes 1 s of a test tone whole and
streamed, checks they agree, decodes, and prints shapes and timings.
"""

import sys
import time

import torch

from . import create

arg = sys.argv[1] if len(sys.argv) > 1 else "random-tiny"
t0 = time.perf_counter()
codec = create(arg)
print(f"loaded mimi:{arg} in {time.perf_counter() - t0:.2f} s: {codec.model.num_params() / 1e6:.2f} M params, "
      f"{codec.num_codebooks} x {codec.cardinality} codes at {codec.frame_rate} Hz ({codec.bitrate / 1000:.2f} kbps)")
t = torch.arange(codec.sample_rate) / codec.sample_rate
pcm = (0.3 * torch.sin(2 * torch.pi * 220 * t))[None]  # [1, 24000]
t0 = time.perf_counter()
codes = codec.encode(pcm)
audio = codec.decode(codes)
print(f"whole: codes {tuple(codes.shape)} audio {tuple(audio.shape)} in {time.perf_counter() - t0:.2f} s")
s = codec.stream(1)
fs = codec.frame_size
streamed = torch.stack([s.encode_frame(pcm[:, i:i + fs]) for i in range(0, (pcm.shape[-1] // fs) * fs, fs)], -1)  # full frames
print("streamed codes == whole-signal codes for full frames:", torch.equal(streamed, codes[..., : streamed.shape[-1]]))
