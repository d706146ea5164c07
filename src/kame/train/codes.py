"""The optional cache of a dialogue's codec codes: DIALOGUE/codes.npz (docs/data.md).

    write_codes(dialogue, codec, spec="embedded")     # encode once, e.g. before training
    user, agent = load_codes(dialogue, codec)         # [K, T] each; None without a cache

codes.npz holds ``user`` and ``agent`` ([K, T] int16) and ``meta`` (JSON text): the codec's spec,
fingerprint (kame.codec.base.Codec.fingerprint), codebook count and cardinality, the frame count
and the sha256 of audio.wav. A cache made by another codec (fingerprint or codebooks) or from
another audio.wav is a DataError, never used: a stale cache would train the front-end on codes
its codec does not make.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..paths import write_replacing
from .data import AUDIO, CODES, DataError, Dialogue

# what np.load and a codes.npz's arrays raise for a file that is not one, or one cut short or damaged
# (a bad CRC, a zip header with garbage: BadZipFile, EOFError, NotImplementedError for an unknown
# compression method, RuntimeError for a flipped "encrypted" flag)
UNREADABLE = (OSError, ValueError, KeyError, EOFError, NotImplementedError, RuntimeError, zipfile.BadZipFile)


def encode_dialogue(d: Dialogue, codec) -> tuple[torch.Tensor, torch.Tensor]:
    """Both channels through ``codec.encode`` (one batch: user, agent) -> (user [K, T], agent [K, T])
    int64, T = d.frames, K = codec.num_codebooks."""
    pcm = torch.from_numpy(np.ascontiguousarray(np.asarray(d.audio, np.float32).T))  # [2, N]
    with torch.no_grad():
        codes = codec.encode(pcm)
    K = int(codec.num_codebooks)
    if not isinstance(codes, torch.Tensor) or tuple(codes.shape) != (2, K, d.frames):
        got = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise DataError(f"codec {type(codec).__name__}.encode of the dialogue's 2 channels ({d.samples} samples) gave "
                        f"{got}, expected [2, num_codebooks={K}, frames={d.frames}] (80 ms frames)")
    codes = codes.long()
    return codes[0], codes[1]


def write_codes(d: Dialogue, codec, *, spec: str) -> Path:
    """Encode ``d`` (read from or written to a folder) and cache the codes as FOLDER/codes.npz,
    with what decides them: the codec's ``spec`` (e.g. "embedded"), fingerprint and codebook count,
    and the audio file's sha256. A codec without a fingerprint (random weights) cannot be checked
    later, so it is refused."""
    if d.folder is None:
        raise DataError("write_codes: the dialogue has no folder (read_dialogue or write_dialogue it first)")
    fp = getattr(codec, "fingerprint", None)
    if fp is None:
        raise DataError(f"write_codes: codec {spec!r} has no fingerprint (random weights?): a cache of its codes could "
                        f"not be told stale; encode on the fly instead (use_cache=False)")
    user, agent = encode_dialogue(d, codec)
    meta = {"codec": spec, "codec_sha256": fp, "num_codebooks": int(codec.num_codebooks),
            "cardinality": int(codec.cardinality), "frames": d.frames,
            "audio_sha256": d.audio_sha256()}
    dtype = np.int16 if int(codec.cardinality) <= 32768 else np.int32
    path = d.folder / CODES

    def write(tmp: Path) -> None:  # (to a file object: np.savez would add .npz to the temporary file's name)
        with open(tmp, "wb") as f:
            np.savez(f, user=user.numpy().astype(dtype), agent=agent.numpy().astype(dtype),
                     meta=np.array(json.dumps(meta)))

    write_replacing(path, write, "codes cache", error=DataError)
    return path


def _stale(what: str, fix: str) -> DataError:
    """load_codes' error for a cache made by another codec, from other audio or unreadable: ``what``: "PATH:
    why" (its ``stale``, what kame train says as it encodes the dialogue again), then ``fix``."""
    err = DataError(f"{what}: {fix}")
    err.stale = what
    return err


def load_codes(d: Dialogue, codec) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached (user, agent) codes of ``d`` for ``codec``, None without a cache; a DataError when
    the cache is another codec's (fingerprint, codebooks) or another audio's (sha256), or its codes
    are not integers in [0, the codec's cardinality) (a damaged or hand-made file)."""
    if d.folder is None or not (d.folder / CODES).is_file():
        return None
    path = d.folder / CODES
    try:
        with np.load(path, allow_pickle=False) as z:
            meta, user, agent = json.loads(str(z["meta"])), z["user"], z["agent"]
    except UNREADABLE as exc:  # (a cut or damaged file too: the caller encodes it again, as one of another codec)
        raise _stale(f"{path}: not a codes cache ({type(exc).__name__}: {exc})", "remove it or write it again "
                     "(write_codes)") from None
    if not isinstance(meta, dict):
        raise _stale(f"{path}: not a codes cache (its meta is not a JSON object)", "remove it or write it again "
                     "(write_codes)")
    fix = f"write it again (kame.train.codes.write_codes) or remove {path}"
    fp = getattr(codec, "fingerprint", None)
    if fp is None:  # (write_codes refuses such a codec: writing it again is no fix)
        raise DataError(f"{path}: a codes cache (codec {meta.get('codec')!r}), but codec {type(codec).__name__} has no "
                        f"fingerprint (random weights?) to check it against: pass use_cache=False (this codec's "
                        f"codes cannot be cached)")
    if meta.get("codec_sha256") != fp:
        raise _stale(f"{path}: cached with codec {meta.get('codec')!r} sha256 {meta.get('codec_sha256')}, this "
                     f"codec's fingerprint is {fp}", fix)
    if meta.get("num_codebooks") != int(codec.num_codebooks):  # (a JSON int: "8" is not one, shown quoted)
        raise _stale(f"{path}: cached with {meta.get('num_codebooks')!r} codebooks, the codec codes with "
                     f"{int(codec.num_codebooks)}", fix)
    sha = d.audio_sha256()  # (hashed once per version of the file, not every epoch)
    if meta.get("audio_sha256") != sha:
        raise _stale(f"{path}: made from another {AUDIO} (sha256 {meta.get('audio_sha256')}, now {sha})", fix)
    shape = (int(codec.num_codebooks), d.frames)
    if user.shape != shape or agent.shape != shape:
        raise _stale(f"{path}: codes of shape {user.shape}/{agent.shape}, expected {shape}", fix)
    card = int(codec.cardinality)
    for name, codes in (("user", user), ("agent", agent)):
        if codes.dtype.kind not in "iu":  # (a float code would be cut to an int silently)
            raise _stale(f"{path}: its {name} codes are {codes.dtype}, not integers", fix)
        if codes.size and not (0 <= int(codes.min()) and int(codes.max()) < card):
            raise _stale(f"{path}: its {name} codes span [{int(codes.min())}, {int(codes.max())}], outside the "
                         f"codec's [0, {card})", fix)
    return torch.from_numpy(user.astype(np.int64)), torch.from_numpy(agent.astype(np.int64))
