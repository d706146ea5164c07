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
    (lambda c, s: c.encode(torch.full((1, FS), 12000.0)), AudioFormatError, r"samples reach 12000, .*divide them by 32768"),
    (lambda c, s: c.decode(torch.zeros(1, 8, 0, dtype=torch.long)), AudioFormatError, "decode: no frames"),
    (lambda c, s: c.decode(torch.zeros(1, 8, 2)), AudioFormatError, "integer codes, got dtype torch.float32"),
    (lambda c, s: c.decode(torch.zeros(1, 8, 2, dtype=torch.bool)), AudioFormatError, "got dtype torch.bool"),
    (lambda c, s: c.decode(torch.zeros(1, 0, 2, dtype=torch.long)), AudioFormatError, "0 codebooks"),
    (lambda c, s: c.decode(torch.zeros(1, 40, 2, dtype=torch.long)), AudioFormatError, "40 codebooks, this codec has 1.."),
    (lambda c, s: c.decode(torch.full((1, 8, 2), -1)), AudioFormatError, r"codes must be in \[0, "),
    (lambda c, s: c.stream(0), ConfigError, "batch_size must be an int >= 1"),
    (lambda c, s: s.encode_frame(torch.zeros(2, 1280)), AudioFormatError, "1280 samples is 80 ms at 16000 Hz"),
    (lambda c, s: s.encode_frame(torch.zeros(3, FS)), AudioFormatError, r"shape \[2, 1920\]"),
    (lambda c, s: s.encode_frame(torch.full((2, FS), float("nan"))), AudioFormatError, "NaN"),
    # finite but far out of range: int16 values as floats coded silently as garbage, and ~1e38
    # left NaN in Mimi's attention cache for the rest of the row's session
    (lambda c, s: s.encode_frame(torch.full((2, FS), 3e38)), AudioFormatError, r"samples reach 3e\+38"),
    (lambda c, s: s.decode_frame(torch.zeros(3, 8, dtype=torch.long)), AudioFormatError, "expected 2 rows"),
    (lambda c, s: s.decode_frame(torch.full((2, 8), c.cardinality)), AudioFormatError, "codes must be in"),
    (lambda c, s: s.reset([2]), ConfigError, r"reset rows \[2\] out of range"),
    (lambda c, s: s.reset(torch.tensor([True])), ConfigError, r"reset mask must have shape \[2\]"),
    (lambda c, s: s.reset([0.5]), ConfigError, "reset rows must be integers"),
    (lambda c, s: s.reset(["a"]), ConfigError, "reset rows must be integers"),
    (lambda c, s: s.reset({1}), ConfigError, "reset rows must be integers"),
]


def _frames(n):  # [n, 2, FS]: two sessions saying different things
    t = torch.arange(n * FS) / 24000.0
    a = 0.2 * torch.sin(2 * torch.pi * 140 * t) * (1 + torch.sin(2 * torch.pi * 3 * t))
    b = 0.1 * torch.sin(2 * torch.pi * 220 * t + 1.0)
    return torch.stack([a, b]).reshape(2, n, FS).transpose(0, 1)


@pytest.mark.parametrize("call, error, message", BAD)
def test_same_error_from_every_codec_and_the_stream_goes_on(codec, call, error, message):
    frames = _frames(4)
    ref, s = codec.stream(2), codec.stream(2)
    want = [ref.encode_frame(f) for f in frames]
    want_audio = [ref.decode_frame(c) for c in want]
    for f, c in zip(frames[:2], want[:2]):
        s.encode_frame(f)
        s.decode_frame(c)
    with pytest.raises(error, match=message):
        call(codec, s)
    # the state is as if the bad call never happened: the same codes and audio as the reference
    for f, c, audio in zip(frames[2:], want[2:], want_audio[2:]):
        assert torch.equal(s.encode_frame(f), c)
        torch.testing.assert_close(s.decode_frame(c), audio, rtol=0, atol=1e-6)


@pytest.mark.parametrize("rows", [[1], torch.tensor([False, True]), np.array([1])])
def test_reset_restarts_only_the_rows_it_names(codec, rows):
    frames = _frames(3)
    s = codec.stream(2)
    for f in frames[:2]:
        s.encode_frame(f)
    s.reset([])  # nothing
    s.reset(rows)
    fresh = codec.stream(2)
    kept = codec.stream(2)
    for f in frames[:2]:
        kept.encode_frame(f)
    got, new, old = s.encode_frame(frames[2]), fresh.encode_frame(frames[2]), kept.encode_frame(frames[2])
    assert torch.equal(got[1], new[1]) and torch.equal(got[0], old[0])  # row 1 restarted, row 0 went on
    assert not torch.equal(new[0], old[0])  # (a restart is visible in the codes)
    s.reset()
    assert torch.equal(s.encode_frame(frames[0]), codec.stream(2).encode_frame(frames[0]))


def test_batch_sizes(codec):
    assert codec.stream(np.int64(2)).batch_size == codec.stream(torch.tensor(2)).batch_size == 2
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ConfigError, match="batch_size must be an int >= 1"):
            codec.stream(bad)
    with pytest.raises(AudioFormatError, match="a batch of 0 rows"):
        codec.encode(torch.zeros(0, FS))
    with pytest.raises(AudioFormatError, match="a batch of 0 rows"):
        codec.decode(torch.zeros(0, 8, 2, dtype=torch.long))


def test_set_num_codebooks_takes_ints_only(codec):
    n = codec.num_codebooks
    try:
        for bad in (True, "4", 4.0, 0):  # a bool is an int to Python; stream(True) is rejected too
            with pytest.raises(ConfigError, match=rf"num_codebooks must be an int in \[1, \d+\], got {bad!r}"):
                codec.set_num_codebooks(bad)
        codec.set_num_codebooks(np.int64(4))  # as stream() takes numpy ints
        assert codec.num_codebooks == 4 and type(codec.num_codebooks) is int
    finally:
        codec.num_codebooks = n


def test_fingerprint_is_the_sha256_of_what_decides_the_codes(tmp_path):
    """Codec.fingerprint (None by default: unknown) is what a front-end checkpoint records as
    kame.codec_sha256: the embedded codec's fitted file, Mimi's weights file, None for random Mimi
    weights. A Mimi file in a Hugging Face cache is named by its sha256: taken from there."""
    import os

    from kame.codec.base import Codec
    from kame.paths import file_sha256
    from kame.codec.embedded.model import DEFAULT_PATH, DEFAULT_SHA256
    from kame.codec.embedded.model import load as load_embedded
    from kame.codec.embedded.model import save as save_embedded
    from kame.codec.mimi import build_random, save_mimi

    assert Codec.fingerprint is None  # a plugin that sets none
    assert registry.create("codec", "embedded").fingerprint == DEFAULT_SHA256 == file_sha256(DEFAULT_PATH)
    other = tmp_path / "other.safetensors"
    sha = save_embedded(load_embedded(), other, meta={"note": "another fit"})
    assert registry.create("codec", f"embedded:{other}").fingerprint == sha != DEFAULT_SHA256
    assert registry.create("codec", "mimi:random-tiny").fingerprint is None
    save_mimi(build_random("tiny"), tmp_path / "mimi.safetensors")
    mimi = registry.create("codec", f"mimi:{tmp_path / 'mimi.safetensors'}")
    assert mimi.fingerprint == file_sha256(tmp_path / "mimi.safetensors")
    blobs = tmp_path / "models--acme--m" / "blobs"
    blobs.mkdir(parents=True)
    fake = "0123456789abcdef" * 4  # not the file's sha256: proves it was taken from the name, not hashed
    os.replace(tmp_path / "mimi.safetensors", blobs / fake)
    (tmp_path / "snap.safetensors").symlink_to(blobs / fake)
    assert registry.create("codec", f"mimi:{tmp_path / 'snap.safetensors'}").fingerprint == fake
