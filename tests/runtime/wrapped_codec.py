"""A built-in codec behind a plugin-like wrapper, for tests of how the runtime treats a plugin
codec: ``WrappedCodec`` passes the inner codec's attributes, whole-signal encode/decode and
codebook setting through; ``WrappedStream`` its stream's calls. Subclasses change what they test."""

from __future__ import annotations

from kame import registry
from kame.codec.base import Codec, CodecStream

INNER = "mimi:random-tiny"


class WrappedStream(CodecStream):
    def __init__(self, inner) -> None:
        self.inner, self.batch_size = inner, inner.batch_size

    def encode_frame(self, pcm):
        return self.inner.encode_frame(pcm)

    def decode_frame(self, codes):
        return self.inner.decode_frame(codes)

    def reset(self, rows=None):
        self.inner.reset(rows)


class WrappedCodec(Codec):
    def __init__(self, spec: str = INNER) -> None:
        self.inner = registry.create("codec", spec)
        for k in ("sample_rate", "frame_rate", "frame_size", "num_codebooks", "cardinality", "delay_samples"):
            setattr(self, k, getattr(self.inner, k))

    def encode(self, pcm):
        return self.inner.encode(pcm)

    def decode(self, codes):
        return self.inner.decode(codes)

    def stream(self, batch_size=1):
        return WrappedStream(self.inner.stream(batch_size))

    def set_num_codebooks(self, n):
        self.inner.set_num_codebooks(n)
        self.num_codebooks = self.inner.num_codebooks
