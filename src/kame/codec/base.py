"""The codec interface shared by Mimi and the embedded CPU codec.

Token layout (what the front-end sees): frames of 80 ms (``frame_size`` = 1920 samples at
24 kHz), ``num_codebooks`` codes per frame, each in ``[0, cardinality)``; codebook 0 is the
coarse/semantic one, later codebooks refine it (coding with fewer codebooks degrades
gracefully: ``codec.set_num_codebooks(k)`` before encoding; Mimi's codes are then a prefix of
its 8-codebook ones, the embedded codec's are not, since its encoder tracks the decoder's F0).

Two ways to run a codec:
  * whole signal:  ``codes = codec.encode(pcm)``  pcm [B, T] float32 -> codes [B, K, F]
                   ``pcm = codec.decode(codes)``  codes [B, K, F]    -> pcm [B, F * frame_size]
  * streaming:     ``s = codec.stream(batch_size)`` then per 80 ms frame
                   ``s.encode_frame(pcm)``  [B, frame_size] -> [B, K]
                   ``s.decode_frame(codes)`` [B, K']       -> [B, frame_size]  (K' <= K: the first
                                                               K' codebooks, coarse to fine; the runtime
                                                               decodes the dep_q a front-end generates)
                   ``s.reset(rows)`` clears the state of some rows (a session left / joined)
                   ``s.encode_rows(pcm, rows)`` / ``s.decode_rows(codes, rows)``: the same for
                   some rows only (streams with ``rows_subset``: Mimi's and the embedded codec's), the
                   others' state untouched; the runtime codes only the rows in use with them
Streaming and whole-signal results must agree (tests check it per codec).

Both codecs check their input with the functions below, so bad input gets the same
AudioFormatError (ConfigError for a bad batch size or reset rows) from either, before any
state changes: a live session's stream keeps working.

``fit_codec`` is the one check that a codec (or its ``CodecLayout``, read without building it)
serves a front-end: the runtime's, training's and save_frontend's.
"""

from __future__ import annotations

import dataclasses
import operator
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..audio import peak_problem
from ..errors import AudioFormatError, ConfigError

_COMMON_RATES = (8000, 16000, 22050, 32000, 44100, 48000)


def check_pcm(pcm: torch.Tensor, what: str) -> torch.Tensor:
    """Whole-signal audio: a float tensor [B, T] (or [B, 1, T]), T > 0, finite, |x| <= MAX_PEAK (audio.peak_problem) -> [B, T]."""
    if not isinstance(pcm, torch.Tensor):
        raise AudioFormatError(f"{what}: expected a torch.Tensor of float samples, got {type(pcm).__name__}")
    if pcm.dim() == 3 and pcm.shape[1] == 1:
        pcm = pcm[:, 0]
    if pcm.dim() != 2:
        raise AudioFormatError(f"{what}: expected mono pcm of shape [B, T], got shape {tuple(pcm.shape)}")
    if not pcm.is_floating_point():
        raise AudioFormatError(f"{what}: expected float samples in [-1, 1], got dtype {pcm.dtype}")
    if pcm.shape[0] == 0:
        raise AudioFormatError(f"{what}: a batch of 0 rows")
    if pcm.shape[1] == 0:
        raise AudioFormatError(f"{what}: empty audio")
    # NaN/inf or int16 values as floats: garbage codes, and they poison a row's state (Mimi's)
    problem = peak_problem(float(pcm.detach().abs().max()))  # (the peak: on the tensor's device)
    if problem:
        raise AudioFormatError(f"{what}: {problem}")
    return pcm


def check_frame(pcm: torch.Tensor, what: str, batch_size: int, frame_size: int, sample_rate: int) -> torch.Tensor:
    """One 80 ms step of a stream: [batch_size, frame_size] float, finite. A frame that is 80 ms
    at another common rate says so (1280 samples: "80 ms at 16000 Hz: resample")."""
    pcm = check_pcm(pcm, what)
    if tuple(pcm.shape) != (batch_size, frame_size):
        n, hint = pcm.shape[-1], ""
        rate = n * sample_rate / frame_size
        if rate != sample_rate and rate == int(rate) and int(rate) in _COMMON_RATES:
            hint = f" ({n} samples is 80 ms at {int(rate)} Hz: resample to {sample_rate} Hz first)"
        raise AudioFormatError(f"{what}: expected pcm of shape [{batch_size}, {frame_size}] (80 ms at "
                               f"{sample_rate} Hz; one row per session), got {tuple(pcm.shape)}{hint}")
    return pcm


def check_codes(codes: torch.Tensor, dims: int, what: str, max_codebooks: int, cardinality: int,
                batch_size: int | None = None) -> torch.Tensor:
    """Integer codes [B, K] (dims 2) or [B, K, F] (dims 3, F > 0), 1 <= K <= max_codebooks, every
    code in [0, cardinality) -> int64."""
    want = "[B, K]" if dims == 2 else "[B, K, F]"
    if not isinstance(codes, torch.Tensor) or codes.dim() != dims:
        shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise AudioFormatError(f"{what}: expected integer codes of shape {want}, got {shape}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise AudioFormatError(f"{what}: expected integer codes, got dtype {codes.dtype}")
    if codes.shape[0] == 0:
        raise AudioFormatError(f"{what}: a batch of 0 rows")
    if not 1 <= codes.shape[1] <= max_codebooks:
        raise AudioFormatError(f"{what}: got {codes.shape[1]} codebooks, this codec has 1..{max_codebooks}")
    if dims == 3 and codes.shape[2] == 0:
        raise AudioFormatError(f"{what}: no frames")
    if batch_size is not None and codes.shape[0] != batch_size:
        raise AudioFormatError(f"{what}: expected {batch_size} rows of codes (one per session), got {codes.shape[0]}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= cardinality):
        raise AudioFormatError(f"{what}: codes must be in [0, {cardinality}), got [{int(codes.min())}, {int(codes.max())}]")
    return codes.long()


def check_num_codebooks(n: int, low: int, high: int) -> int:
    """An int in [low, high] (numpy ints too; not a bool, a float or a string) -> int, else ConfigError."""
    try:
        k = operator.index(n)
    except TypeError:
        k = None
    if k is None or isinstance(n, bool) or not low <= k <= high:
        raise ConfigError(f"num_codebooks must be an int in [{low}, {high}], got {n!r}")
    return k


@dataclass
class CodecLayout:
    """A codec's token layout as fit_codec reads it, without the codec (kame.codec.embedded.layout:
    from a fitted file's header), and its fingerprint (Codec.fingerprint)."""

    frame_size: int
    cardinality: int
    num_codebooks: int  # what it codes with (set_num_codebooks)
    total_codebooks: int  # the most it can code with
    fingerprint: str | None = None
    sample_rate: int = 24000

    def set_num_codebooks(self, n: int) -> None:  # (as the codec's: 1..total_codebooks)
        self.num_codebooks = check_num_codebooks(n, 1, self.total_codebooks)


def fit_codec(codec: Any, codec_spec: str, cfg: Any, spec: str, fix: str | None = None) -> None:
    """ConfigError unless ``codec`` (a Codec, or its CodecLayout) can serve the front-end of config
    ``cfg`` (kame.model.config.LMConfig): 80 ms frames, its cardinality, and the codebooks it reads of
    the user's audio and generates (n_user_q, dep_q), which the codec is then set to code with if it
    can (one that codes a fixed number, at least those, is used as it is). ``fix``: what to do
    (codec.spec auto: the codec is the checkpoint's own, so a misfit is inside the checkpoint);
    default: use the codec it was trained with. The one check: the runtime's, training's and
    save_frontend's."""
    fix = fix or "use the codec it was trained with (codec.spec)"
    if getattr(codec, "frame_size", 1920) != 1920:
        raise ConfigError(f"codec {codec_spec!r} has frame_size {codec.frame_size}, the runtime needs 1920 (80 ms)")
    if getattr(codec, "sample_rate", 24000) != 24000:  # (was: 1920 samples at 16 kHz taken for 80 ms)
        raise ConfigError(f"codec {codec_spec!r} has sample rate {codec.sample_rate} Hz, the runtime needs 24000 Hz "
                          f"(frames of 1920 samples = 80 ms): {fix}")
    if codec.cardinality != cfg.card:
        raise ConfigError(f"codec {codec_spec!r} has {codec.cardinality} codes per codebook, the front-end "
                          f"{spec!r} expects {cfg.card} (its config's card): {fix}")
    need = max(cfg.n_user_q, cfg.dep_q)
    if codec.num_codebooks == need:
        return
    try:
        codec.set_num_codebooks(need)
    except ConfigError as exc:
        if codec.num_codebooks > need:  # it codes more than needed: the runtime takes the first ones
            return
        held = getattr(codec, "total_codebooks", None)  # (what its file stores: Mimi's, the embedded codec's)
        has = f"holds {held} codebooks" if held is not None and held < need else f"cannot code with {need} ({exc})"
        raise ConfigError(f"codec {codec_spec!r} {has}, the front-end {spec!r} needs {need} (n_user_q "
                          f"{cfg.n_user_q}, dep_q {cfg.dep_q}): {fix}") from None


def check_batch_size(batch_size: int) -> int:
    """An int >= 1 (numpy and 0-d torch ints too; not a bool) -> int."""
    try:
        n = operator.index(batch_size)
    except TypeError:
        n = None
    if n is None or isinstance(batch_size, bool) or n < 1:
        raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return n


def rows_mask(rows: Sequence[int] | torch.Tensor | None, batch_size: int, what: str = "reset") -> torch.Tensor:
    """The rows a ``reset`` names (None: all; indices; or a bool mask [batch_size]) -> bool mask.
    ``what``: the errors' word for them ("reset rows ...")."""
    mask = torch.zeros(batch_size, dtype=torch.bool)
    if rows is None:
        mask[:] = True
        return mask
    try:
        idx = torch.as_tensor(rows)
    except (TypeError, ValueError, RuntimeError):  # strings, sets, ragged lists, ...
        raise ConfigError(f"{what} rows must be integers, got {rows!r}") from None
    if idx.numel() == 0:  # no rows: nothing to reset
        return mask
    if idx.dtype == torch.bool:
        if tuple(idx.shape) != (batch_size,):
            raise ConfigError(f"{what} mask must have shape [{batch_size}], got {tuple(idx.shape)}")
        return idx.clone()
    if idx.is_floating_point() or idx.is_complex():
        raise ConfigError(f"{what} rows must be integers, got {idx.tolist()}")
    idx = idx.long().flatten()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= batch_size):
        raise ConfigError(f"{what} rows {idx.tolist()} out of range for batch size {batch_size}")
    mask[idx] = True
    return mask


def rows_index(rows: Sequence[int] | torch.Tensor, batch_size: int) -> torch.Tensor:
    """The rows ``encode_rows`` / ``decode_rows`` code (indices in ascending order, no repeats, or a
    bool mask [batch_size]) -> int64 indices, ascending; else ConfigError (rows_mask's for a bad row)."""
    idx = rows_mask(rows, batch_size, "coded").nonzero()[:, 0]
    given = torch.as_tensor(rows)
    if given.dtype != torch.bool and not torch.equal(given.long().flatten().cpu(), idx):
        raise ConfigError(f"coded rows must be distinct indices in ascending order, got {given.tolist()}")
    return idx


def take_rows(state: Any, idx: torch.Tensor) -> Any:
    """A copy of rows ``idx`` of a stream's per-row state: a tensor [B, ...], or a dataclass, list or
    tuple of such states (other values are shared as they are). See put_rows."""
    if isinstance(state, torch.Tensor):
        return state[idx.to(state.device)]
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return dataclasses.replace(state, **{f.name: take_rows(getattr(state, f.name), idx)
                                             for f in dataclasses.fields(state) if f.init})
    if isinstance(state, (list, tuple)):
        return type(state)(take_rows(s, idx) for s in state)
    return state


def put_rows(state: Any, part: Any, idx: torch.Tensor) -> Any:
    """Write ``part`` (take_rows(state, idx), moved on) back into rows ``idx`` of ``state``; returns
    the state (a tensor is written in place, a dataclass's fields are set)."""
    if isinstance(state, torch.Tensor):
        state[idx.to(state.device)] = part
        return state
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        for f in dataclasses.fields(state):
            if f.init:
                setattr(state, f.name, put_rows(getattr(state, f.name), getattr(part, f.name), idx))
        return state
    if isinstance(state, list):
        state[:] = [put_rows(s, p, idx) for s, p in zip(state, part)]
        return state
    if isinstance(state, tuple):
        return type(state)(put_rows(s, p, idx) for s, p in zip(state, part))
    return state


class CodecStream(ABC):
    """Per-batch streaming state of a codec: one row per session.

    A stream whose rows are independent may also code a subset of its rows (``rows_subset``
    True: ``encode_rows`` / ``decode_rows``); the runtime then codes only the rows that have a
    session, and the others' state stays as it is until a session takes the row (``reset``)."""

    batch_size: int
    rows_subset: bool = False  # True: encode_rows / decode_rows work (else the runtime codes every row)

    def encode_rows(self, pcm: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """pcm [n, frame_size] of ``rows`` (rows_index: n of them, ascending) -> codes [n, K]; only
        those rows' state moves on, as encode_frame would move it (``rows_subset`` streams)."""
        raise NotImplementedError(f"{type(self).__name__} codes whole batches only (rows_subset is False)")

    def decode_rows(self, codes: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """codes [n, K'] of ``rows`` (rows_index) -> pcm [n, frame_size]; only those rows' state
        moves on (``rows_subset`` streams)."""
        raise NotImplementedError(f"{type(self).__name__} codes whole batches only (rows_subset is False)")

    @abstractmethod
    def encode_frame(self, pcm: torch.Tensor) -> torch.Tensor:
        """pcm [B, frame_size] float32 in [-1, 1] -> codes [B, K] int64."""

    @abstractmethod
    def decode_frame(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K'] int64 (the first K' <= K codebooks) -> pcm [B, frame_size] float32."""

    @abstractmethod
    def reset(self, rows: Sequence[int] | torch.Tensor | None = None) -> None:
        """Reset the streaming state of ``rows`` (all rows when None)."""


class Codec(ABC):
    sample_rate: int = 24000
    frame_rate: float = 12.5
    frame_size: int = 1920
    num_codebooks: int = 8
    cardinality: int = 2048
    delay_samples: int = 0  # the decoded audio lags the input by this many samples (embedded: 480)
    # sha256 of what decides the codes (the embedded codec's fitted file, Mimi's weights file);
    # None = unknown (random weights, a plugin that sets none). A front-end saved with it in its
    # config.json (kame.codec_sha256) refuses a codec whose fingerprint differs; with None, kame
    # cannot check and warns.
    fingerprint: str | None = None

    @abstractmethod
    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        """pcm [B, T] -> codes [B, K, F]; T is padded up to a whole number of frames."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, F] -> pcm [B, F * frame_size]."""

    @abstractmethod
    def stream(self, batch_size: int = 1) -> CodecStream:
        """A fresh streaming state for ``batch_size`` rows."""

    @abstractmethod
    def set_num_codebooks(self, n: int) -> None:
        """Encode with the first ``n`` codebooks from now on (ConfigError if out of range)."""
