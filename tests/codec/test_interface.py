"""Both codecs behind kame.codec.base give the same error for the same bad input, before any
state changes: a stream keeps working after each one."""

import numpy as np
import pytest
import torch

from kame import registry
from kame.errors import AudioFormatError, ConfigError

FS = 1920


@pytest.fixture(scope="module", params=["embedded", "mimi:random-tiny"])
def codec(request):
    torch.manual_seed(0)
    return registry.create("codec", request.param)


BAD = [  # (what to call, error type, message)
    (lambda c, s: c.encode(np.zeros((1, FS), np.float32)), AudioFormatError, "expected a torch.Tensor"),
    (lambda c, s: c.encode(torch.zeros(FS)), AudioFormatError, r"mono pcm of shape \[B, T\]"),
    (lambda c, s: c.encode(torch.zeros(1, 0)), AudioFormatError, "encode: empty audio"),
    (lambda c, s: c.encode(torch.zeros(1, FS, dtype=torch.int16)), AudioFormatError, "float samples"),
    (lambda c, s: c.encode(torch.full((1, FS), float("inf"))), AudioFormatError, "NaN or infinite"),
    (lambda c, s: c.decode(torch.zeros(1, 8, 0, dtype=torch.long)), AudioFormatError, "decode: no frames"),
    (lambda c, s: c.decode(torch.zeros(1, 8, 2)), AudioFormatError, "integer codes"),
    (lambda c, s: c.decode(torch.zeros(1, 0, 2, dtype=torch.long)), AudioFormatError, "0 codebooks"),
    (lambda c, s: c.decode(torch.zeros(1, 40, 2, dtype=torch.long)), AudioFormatError, "40 codebooks, this codec has 1.."),
    (lambda c, s: c.decode(torch.full((1, 8, 2), -1)), AudioFormatError, r"codes must be in \[0, "),
    (lambda c, s: c.stream(0), ConfigError, "batch_size must be an int >= 1"),
    (lambda c, s: s.encode_frame(torch.zeros(2, 1280)), AudioFormatError, "1280 samples is 80 ms at 16000 Hz"),
    (lambda c, s: s.encode_frame(torch.zeros(3, FS)), AudioFormatError, r"shape \[2, 1920\]"),
    (lambda c, s: s.encode_frame(torch.full((2, FS), float("nan"))), AudioFormatError, "NaN"),
    (lambda c, s: s.decode_frame(torch.zeros(3, 8, dtype=torch.long)), AudioFormatError, "expected 2 rows"),
    (lambda c, s: s.decode_frame(torch.full((2, 8), c.cardinality)), AudioFormatError, "codes must be in"),
    (lambda c, s: s.reset([2]), ConfigError, r"reset rows \[2\] out of range"),
    (lambda c, s: s.reset(torch.tensor([True])), ConfigError, r"reset mask must have shape \[2\]"),
]


@pytest.mark.parametrize("call, error, message", BAD)
def test_same_error_from_every_codec_and_the_stream_goes_on(codec, call, error, message):
    s = codec.stream(2)
    frame = 0.1 * torch.sin(torch.arange(FS) / 9.0).expand(2, FS).contiguous()
    first = s.encode_frame(frame)
    with pytest.raises(error, match=message):
        call(codec, s)
    codes = s.encode_frame(frame)  # the stream still works
    assert codes.shape == first.shape and s.decode_frame(codes).shape == (2, FS)


def test_reset_takes_indices_or_a_mask(codec):
    s = codec.stream(2)
    s.reset([1])
    s.reset(torch.tensor([True, False]))
    s.reset()
    assert s.encode_frame(torch.zeros(2, FS)).shape == (2, codec.num_codebooks)
