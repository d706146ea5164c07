"""The embedded CPU codec: causal analysis -> PCA + 8-stage RVQ (2048 entries) -> causal
harmonic-plus-noise vocoder. Same token layout as Mimi (12.5 Hz, 1920 samples at 24 kHz,
8 codebooks, codebook 0 coarsest); no downloaded weights: the fitted file (~2 MB) ships in
kame/assets and is made by `kame codec fit` (see docs/codecs.md).

    codec = load()                              # or registry.create("codec", "embedded[:PATH]")
    codes = codec.encode(pcm)                   # [B, T] -> [B, 8, F]
    pcm = codec.decode(codes)                   # [B, 8, F] -> [B, F * 1920]
    codec.set_num_codebooks(4)                  # code with 4 codebooks (F0 is coded closed loop)
    s = codec.stream(batch_size=4)
    codes = s.encode_frame(frame)               # [B, 1920] -> [B, 8]
    out = s.decode_frame(codes)                 # [B, 8] -> [B, 1920]
    s.reset([2])                                # row 2 starts a new session
    s.encode_rows(frames, [0, 2])               # rows 0 and 2 only ([2, 1920] -> [2, 8]; decode_rows too)
    layout(PATH)                                # its token layout and sha256, from the file's header alone

Encoding and decoding are causal (no look-ahead): streaming and whole-signal results are equal
(tests check it). The decoded audio lags the input by ``delay_samples`` (20 ms). The encoder
raises quiet input to a speech level first (features.input_gain), so quiet speech comes back
louder.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import torch

from ...errors import CheckpointError, ConfigError, NotAvailableError
from ...numeric import is_finite_number
from ...paths import file_sha256, local_path
from ..base import (Codec, CodecLayout, CodecStream, check_batch_size, check_codes, check_frame, check_num_codebooks,
                    check_pcm, put_rows, rows_index, rows_mask, take_rows)
from .config import EmbeddedCodecConfig
from .features import Analyzer, LevelState, agc_gain, frame_windows
from .rvq import RVQ
from .vocoder import Vocoder, VocoderState

FORMAT = "kame-embedded-codec/2"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "assets" / "embedded_codec.safetensors"
# sha256 of the shipped file, made by: kame codec fit --seed 0 -o src/kame/assets/embedded_codec.safetensors
DEFAULT_SHA256 = "4ad1b4a7eb107afa70340fabf35afc2f13b33a23ad123c43647d680a8c367af1"
_DEFAULT_F0 = 120.0  # F0 (Hz) assumed before the first voiced sub-frame
ENCODE_CHUNK = 25  # frames (2 s) per step of the whole-signal encode: its memory does not grow with the audio


def _semitones(hz: float) -> float:  # the analysis's F0 unit (features.Analyzer.features)
    return 12.0 * math.log2(hz / 100.0)


F0_REF0 = _semitones(_DEFAULT_F0)  # the F0 reference of a new row (cfg.f0_delta)


class EmbeddedCodec(Codec):
    def __init__(self, cfg: EmbeddedCodecConfig, rvq: RVQ, correction: torch.Tensor, meta: dict | None = None,
                 fingerprint: str | None = None) -> None:
        self.cfg = cfg
        self.fingerprint = fingerprint  # the fitted file's sha256 (None: not loaded from a file)
        self.sample_rate, self.frame_size = cfg.sample_rate, cfg.frame_size
        self.frame_rate = cfg.sample_rate / cfg.frame_size
        self.num_codebooks, self.cardinality = cfg.num_codebooks, cfg.cardinality  # see set_num_codebooks
        self.delay_samples = cfg.yin_win  # analysis centre lags the window end by yin_win
        self.bitrate = self.frame_rate * cfg.num_codebooks * math.log2(cfg.cardinality)  # bits/s
        self.rvq = rvq
        self.analyzer = Analyzer(cfg)
        self.vocoder = Vocoder(cfg, correction)
        self.meta = meta or {}
        self._f0_dims = torch.tensor(cfg.f0_dims)
        self._f0_range = (_semitones(cfg.f0_min), _semitones(cfg.f0_max))

    def set_num_codebooks(self, n: int) -> None:
        """Encode with the first ``n`` codebooks (1..8). With ``cfg.f0_delta`` the encoder's F0
        loop then closes on what an ``n``-codebook decoder decodes, so set this (not a slice of
        8-codebook codes) when the decoder will get fewer codebooks; its pitch would drift."""
        self.num_codebooks = check_num_codebooks(n, 1, self.cfg.num_codebooks)

    @property
    def total_codebooks(self) -> int:  # the most it codes with (its file's; Mimi has the same attribute)
        return self.cfg.num_codebooks

    # --- shared pieces ---------------------------------------------------------------------
    def _check_codes(self, codes: torch.Tensor, dims: int, what: str, batch_size: int | None = None) -> torch.Tensor:
        return check_codes(codes, dims, what, self.cfg.num_codebooks, self.cardinality, batch_size).cpu()

    def _encode_windows(self, win: torch.Tensor, last_f0: torch.Tensor,
                        ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """win [B, F * S, lookback] -> codes [B, k, F], new last_f0 [B], new F0 reference [B]."""
        B, S, k, beam = win.shape[0], self.cfg.subframes, self.num_codebooks, self.cfg.encode_beam
        feats, last_f0 = self.analyzer.features(win, last_f0)  # [B, F*S, 26]
        F = feats.shape[1] // S
        x = feats.reshape(B, F, S * self.cfg.feat_dim)  # one stacked vector per token frame
        if not self.cfg.f0_delta:
            codes = self.rvq.encode(x.reshape(B * F, -1), num_codebooks=k, beam=beam)  # [B*F, k]
            return codes.reshape(B, F, k).transpose(1, 2).contiguous(), last_f0, ref
        out = []
        for f in range(F):  # closed loop: F0 relative to the previous frame's decoded F0
            xf = x[:, f].clone()
            xf[:, self._f0_dims] -= ref[:, None]
            codes = self.rvq.encode(xf, num_codebooks=k, beam=beam)  # [B, k]
            _, ref = self._features(codes[:, :, None], ref)  # the reference the decoder will have
            out.append(codes)
        return torch.stack(out, 2), last_f0, ref

    def _features(self, codes: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes [B, k, F], F0 reference [B] -> sub-frame features [B, F * S, 26], new reference
        (with cfg.f0_delta: each frame's last F0, kept within f0_min..f0_max; the encoder's loop
        runs this too)."""
        B, k, F = codes.shape
        x = self.rvq.decode(codes.transpose(1, 2).reshape(B * F, k)).reshape(B, F, -1)
        for f in range(F if self.cfg.f0_delta else 0):  # F0 coded as changes -> absolute
            x[:, f, self._f0_dims] += ref[:, None]
            ref = x[:, f, self._f0_dims[-1]].clamp(*self._f0_range)
        return x.reshape(B, F * self.cfg.subframes, self.cfg.feat_dim), ref

    # --- whole signal ----------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        """pcm [B, T] -> codes [B, K, F]: a fresh stream fed ENCODE_CHUNK frames at a time
        (the same codes as frame by frame; memory bounded whatever the length of the audio)."""
        pcm = check_pcm(pcm, "encode").float().cpu()
        B, T = pcm.shape
        F = -(-T // self.frame_size)
        s, step = self.stream(B), ENCODE_CHUNK * self.frame_size
        padded = torch.nn.functional.pad(pcm, (0, F * self.frame_size - T))
        return torch.cat([s._encode(padded[:, i : i + step]) for i in range(0, F * self.frame_size, step)], 2)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = self._check_codes(codes, 3, "decode")
        state = self.vocoder.new_state(codes.shape[0])
        ref = torch.full((codes.shape[0],), F0_REF0)
        out = []
        for f in range(codes.shape[2]):  # frame by frame, exactly as the stream does (bit-identical output)
            feats, ref = self._features(codes[:, :, f : f + 1], ref)
            out.append(self.vocoder.render(state, feats))
        return torch.cat(out, 1) if out else torch.zeros(codes.shape[0], 0)

    def stream(self, batch_size: int = 1) -> "EmbeddedStream":
        return EmbeddedStream(self, batch_size)


class EmbeddedStream(CodecStream):
    """Streaming state: the analysis look-back, the input level (AGC), the last voiced F0, the
    encoder's and the decoder's F0 reference (cfg.f0_delta), the vocoder state."""

    def __init__(self, codec: EmbeddedCodec, batch_size: int) -> None:
        batch_size = check_batch_size(batch_size)
        self.codec, self.batch_size = codec, batch_size
        self.history = torch.zeros(batch_size, codec.cfg.lookback)  # [B, lookback], after the AGC
        self.level = LevelState.new(batch_size, codec.cfg)  # the AGC's per-row speech level, see input_gain
        self.last_f0 = torch.full((batch_size,), _DEFAULT_F0)  # [B]
        self.enc_ref = torch.full((batch_size,), F0_REF0)  # [B] semitones
        self.dec_ref = torch.full((batch_size,), F0_REF0)  # [B]
        self.voc: VocoderState = codec.vocoder.new_state(batch_size)

    @torch.no_grad()
    def encode_frame(self, pcm: torch.Tensor) -> torch.Tensor:
        c = self.codec
        pcm = check_frame(pcm, "encode_frame", self.batch_size, c.frame_size, c.sample_rate).float().cpu()
        return self._encode(pcm)[:, :, 0]

    def _encode(self, pcm: torch.Tensor) -> torch.Tensor:
        """pcm [B, n * frame_size] float32 (checked) -> codes [B, k, n]; the state moves on n frames."""
        c = self.codec
        frames = pcm.reshape(pcm.shape[0], -1, c.frame_size)
        gain = agc_gain(frames, self.level, c.cfg, c.analyzer)  # [B, n]
        buf = torch.cat([self.history, (frames * gain[..., None]).flatten(1)], 1)  # [B, lookback + n * frame]
        codes, self.last_f0, self.enc_ref = c._encode_windows(frame_windows(buf, c.cfg), self.last_f0, self.enc_ref)
        self.history = buf[:, -c.cfg.lookback :].clone()
        return codes

    @torch.no_grad()
    def decode_frame(self, codes: torch.Tensor) -> torch.Tensor:
        return self._decode(self.codec._check_codes(codes, 2, "decode_frame", self.batch_size))

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, k] (checked) -> pcm [B, frame_size]; the decoder's state moves on one frame."""
        feats, self.dec_ref = self.codec._features(codes[:, :, None], self.dec_ref)
        return self.codec.vocoder.render(self.voc, feats)

    # --- some rows only (the runtime codes the rows in use): each row's state is its own, so a
    # stream of those rows (their state taken out, moved on, put back) codes them exactly as a
    # stream of that many rows would
    rows_subset = True
    _ENCODER, _DECODER = ("history", "level", "last_f0", "enc_ref"), ("dec_ref", "voc")

    @torch.no_grad()
    def encode_rows(self, pcm: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        idx = rows_index(rows, self.batch_size)
        c = self.codec
        pcm = check_frame(pcm, "encode_rows", len(idx), c.frame_size, c.sample_rate).float().cpu()
        return self._on_rows(idx, self._ENCODER, lambda part: part._encode(pcm)[:, :, 0])

    @torch.no_grad()
    def decode_rows(self, codes: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        idx = rows_index(rows, self.batch_size)
        codes = self.codec._check_codes(codes, 2, "decode_rows", len(idx))
        return self._on_rows(idx, self._DECODER, lambda part: part._decode(codes))

    def _on_rows(self, idx: torch.Tensor, names: tuple[str, ...], run):
        """run(a stream of rows ``idx`` with their state ``names``) -> its result; their state moved on."""
        part = EmbeddedStream.__new__(EmbeddedStream)
        part.codec, part.batch_size = self.codec, len(idx)
        for name in names:
            setattr(part, name, take_rows(getattr(self, name), idx))
        out = run(part)
        for name in names:
            setattr(self, name, put_rows(getattr(self, name), getattr(part, name), idx))
        return out

    def reset(self, rows: Sequence[int] | torch.Tensor | None = None) -> None:
        idx = rows_mask(rows, self.batch_size).nonzero()[:, 0]
        self.history[idx] = 0.0
        self.level.reset(idx, self.codec.cfg)
        self.last_f0[idx] = _DEFAULT_F0
        self.enc_ref[idx] = F0_REF0
        self.dec_ref[idx] = F0_REF0
        self.voc.reset(idx)


# --- the fitted file -----------------------------------------------------------------------
def save(codec: EmbeddedCodec, path: str | Path, meta: dict | None = None) -> str:
    """Write the fitted codec (codebooks fp16) as safetensors + a ``.sha256`` file; return the sha256.
    Each is written whole or not at all (a temporary file renamed over it: kame.paths.write_replacing),
    so a stopped fit over an existing one (the shipped file, say) leaves it as it was, or the new
    fit beside the old .sha256, which loading refuses by name."""
    from safetensors import SafetensorError  # (a file that cannot be written: its I/O error)

    from ...model.tensorfiles import save_tensors  # (lazily, as check_finite)
    from ...paths import write_replacing

    r = codec.rvq
    tensors = {"mean": r.mean.float(), "scale": r.scale.float(), "proj": r.proj.float(),
               "codebooks": r.codebooks.half(), "correction": codec.vocoder.correction.float()}
    # one metadata entry: safetensors writes several in a random order (a Rust HashMap), which
    # would make the bytes, and so the checksum, differ from run to run
    header = {"format": FORMAT, "config": codec.cfg.to_dict(), "fit": meta or {}}
    metadata = {"kame": json.dumps(header, sort_keys=True)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = []

    def write(tmp: Path) -> None:
        save_tensors({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        digest.append(file_sha256(tmp))

    write_replacing(path, write, "codec fit", errors=(SafetensorError,), error=CheckpointError)
    write_replacing(path.with_name(path.name + ".sha256"), lambda tmp: tmp.write_text(f"{digest[0]}  {path.name}\n"),
                    "codec fit checksum", error=CheckpointError)
    return digest[0]


def _format_number(fmt: object) -> int | None:
    """N of a format "kame-embedded-codec/N" (FORMAT's name), else None."""
    name, _, number = fmt.partition("/") if isinstance(fmt, str) else ("", "", "")
    return int(number) if name == FORMAT.split("/")[0] and number.isdigit() else None


def _kame_meta(raw: dict) -> object:
    """A fitted file's metadata: its one "kame" JSON entry, parsed ({} without one; None if it is
    not JSON). ``raw``: the safetensors header's metadata."""
    try:
        return json.loads(raw.get("kame", "{}"))
    except (TypeError, ValueError):
        return None


_ZERO_OK = {"kmeans_points", "agc_startup_frames", "agc_speech_hangover"}  # int keys that may be 0


def _config(path: Path, conf: object) -> EmbeddedCodecConfig:
    """The fitted file's config: a dict of known keys, each of its field's type (ints >= 1 except
    _ZERO_OK, finite numbers for the floats: kame.numeric.is_finite_number), else CheckpointError
    naming the file and the key."""
    if not isinstance(conf, dict):
        raise CheckpointError(f"{path}: metadata 'config' must be a dict, got {type(conf).__name__}")
    conf = {"f0_delta": False, **conf}  # files fitted before F0 was coded as a change
    types = {f.name: f.type for f in fields(EmbeddedCodecConfig)}  # "int", "float" or "bool"
    for key, v in conf.items():
        kind = types.get(key)  # None: an unknown key, which from_dict names
        ok = kind is None or (isinstance(v, bool) if kind == "bool" else is_finite_number(v) if kind == "float" else
                              type(v) is int and v >= (key not in _ZERO_OK))  # (an int is exact: no NaN, no inf)
        if not ok:
            want = {"int": f"an int >= {int(key not in _ZERO_OK)}", "float": "a finite number", "bool": "true/false"}
            raise CheckpointError(f"{path}: config key {key!r} is {v!r}, want {want[kind]}")
    try:
        return EmbeddedCodecConfig.from_dict(conf)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def fingerprint(path: str | Path | None = None, *, sha256: str | None = None) -> str:
    """The fingerprint of the codec ``load(path, sha256=sha256)`` makes (its file's sha256), from
    the file alone: checked as load checks it up to its tensors, which are not read (no codec is
    built: for a checkpoint's record of its codec, kame.model.meta)."""
    return _fitted_file(path, sha256)[2]


def layout(path: str | Path | None = None, *, sha256: str | None = None) -> CodecLayout:
    """The token layout and fingerprint of the codec ``load(path, sha256=sha256)`` makes, from its
    file's header alone: checked as load checks it up to its tensors, which are not read (no codec
    is built: save_frontend's fit check and record, kame.model.meta.codec_identity)."""
    path, meta, got = _fitted_file(path, sha256)
    cfg = _config(path, meta.get("config", {}))
    return CodecLayout(cfg.frame_size, cfg.cardinality, cfg.num_codebooks, cfg.num_codebooks, fingerprint=got,
                       sample_rate=cfg.sample_rate)


def _fitted_file(path: str | Path | None, sha256: str | None) -> tuple[Path, dict, str]:
    """(path, "kame" metadata, sha256) of a fitted codec file (the shipped one for None), checked
    as far as its header goes: where it is, its kind and format, its sha256 against ``sha256``,
    else the shipped checksum (default file) or a ``.sha256`` file beside it (if present)."""
    from ...model.tensorfiles import check_header_dtypes, checkpoint_kind, kind_hint, safetensors_header

    default = path is None
    if str(path).startswith("hf://"):
        raise ConfigError(f"the embedded codec loads local files only, got {str(path)!r} "
                          "(it is fitted by `kame codec fit -o FILE`)")
    path = local_path(path) if path is not None else DEFAULT_PATH
    if not path.exists():
        if default:
            raise NotAvailableError(
                f"the embedded codec file is missing ({path}); make it with: "
                f"kame codec fit --seed 0 -o {path}")
        raise CheckpointError(f"embedded codec file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the fitted .safetensors file")
    header, raw = safetensors_header(path)  # a truncated or non-safetensors file says so, before its checksum
    meta = _kame_meta(raw)
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt != FORMAT and (kind := checkpoint_kind(header, raw)) not in (None, "embedded"):
        raise CheckpointError(f"{path} is not a fitted embedded codec: {kind_hint(kind, path)}")
    check_header_dtypes(header, path)  # float8 tensors: refused before they are read
    expected = sha256 or (DEFAULT_SHA256 if default else None)
    side = path.with_name(path.name + ".sha256")
    if expected is None and side.is_file():
        expected = (side.read_text(errors="replace").split() or [""])[0]
        if not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise CheckpointError(f"{side} is empty or malformed (want '<sha256>  {path.name}'); "
                                  "re-run `kame codec fit` or delete it")
    got = file_sha256(path)  # also the codec's fingerprint (~2 MB: a few ms)
    if expected is not None:
        if got != expected and default and sha256 is None:  # the shipped file, replaced by another fit?
            raise CheckpointError(
                f"the shipped embedded codec file {path} has sha256 {got}, but kame ships {expected} "
                f"(DEFAULT_SHA256 in kame/codec/embedded/model.py): if you refitted it on purpose, set "
                f"DEFAULT_SHA256 to the new sha256; else restore the file (reinstall kame; in a source "
                f"checkout: git checkout src/kame/assets/{path.name})")
        if got != expected:
            raise CheckpointError(f"embedded codec file {path} has sha256 {got}, expected {expected} "
                                  "(corrupt or from another fit; re-run `kame codec fit`)")
    if fmt != FORMAT:
        number = _format_number(fmt)
        if number is not None and number > _format_number(FORMAT):  # (was: "refit it" for a newer file too)
            raise CheckpointError(f"{path} is an embedded codec file of format {fmt!r}, made by a newer kame; "
                                  f"this one reads up to {FORMAT!r}: upgrade kame (pip install -U kame-tandem)")
        if number is not None:
            raise CheckpointError(f"{path} is an embedded codec file of format {fmt!r}, written by an older kame; "
                                  f"this one reads {FORMAT!r}: refit it with `kame codec fit -o FILE`")
        what = ("its 'kame' metadata is not JSON" if meta is None else "it has no 'kame' metadata" if not meta
                else f"its metadata has format {fmt!r}, not {FORMAT!r}")
        raise CheckpointError(f"{path} is not a fitted embedded codec ({what}); make one with `kame codec fit -o FILE`")
    return path, meta, got


def load(path: str | Path | None = None, *, sha256: str | None = None) -> EmbeddedCodec:
    """Load a fitted codec (the shipped one by default), checking its sha256 against ``sha256``,
    else the shipped checksum (default file) or a ``.sha256`` file beside it (if present), and
    its contents: the config, every tensor's presence, shape, dtype and values."""
    from safetensors import safe_open

    from ...model.tensorfiles import check_finite  # (lazily, as parse_device in create)

    path, meta, got = _fitted_file(path, sha256)
    try:
        with safe_open(str(path), "pt") as f:
            t = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"cannot read embedded codec file {path}: not a readable safetensors file ({exc})") from exc
    if not isinstance(meta.get("fit", {}), dict):
        raise CheckpointError(f"{path}: metadata 'fit' must be a dict")
    cfg = _config(path, meta.get("config", {}))
    D = cfg.subframes * cfg.feat_dim
    shapes = {"mean": (D,), "scale": (D,), "proj": (D, cfg.pca_dim),
              "codebooks": (cfg.num_codebooks, cfg.cardinality, cfg.pca_dim), "correction": (cfg.n_mels,)}
    for what, names in (("lacks", set(shapes) - set(t)), ("has unexpected", set(t) - set(shapes))):
        if names:
            raise CheckpointError(f"embedded codec file {path} {what} tensors {sorted(names)}")
    for name, shape in shapes.items():
        x = t[name]
        if not x.is_floating_point():
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {x.dtype}, want a float dtype")
        if tuple(x.shape) != shape:
            raise CheckpointError(f"{path}: tensor {name!r} has shape {list(x.shape)}, config says {list(shape)}")
    check_finite(t, path)
    if bool((t["scale"] == 0).any()):  # the features are divided by it
        raise CheckpointError(f"{path}: tensor 'scale' has 0 values")
    t = {k: v.float() for k, v in t.items()}
    rvq = RVQ(mean=t["mean"], scale=t["scale"], proj=t["proj"], codebooks=t["codebooks"])
    try:
        return EmbeddedCodec(cfg, rvq, t["correction"], meta.get("fit", {}), fingerprint=got)
    except (ConfigError, ValueError, ArithmeticError, RuntimeError) as exc:  # a config that cannot work
        raise CheckpointError(f"{path}: its config cannot work: {exc}") from exc


def create(arg: str | None = None, *, num_codebooks: int | None = None, sha256: str | None = None,
           dtype: str | torch.dtype | None = None, device: str | torch.device | None = None, **kwargs) -> EmbeddedCodec:
    """Registry factory: ``embedded`` (the shipped file) or ``embedded:PATH``. The codec always
    runs in float32 on the CPU; another dtype/device, or an unknown option, is a ConfigError."""
    if kwargs:
        raise ConfigError(f"unknown option(s) for codec 'embedded': {sorted(kwargs)}")
    from ...model.loaders import parse_device, parse_dtype

    if dtype is not None and parse_dtype(dtype, torch.device("cpu")) != torch.float32:
        raise ConfigError(f"the embedded codec runs in float32 only, got dtype {dtype}")
    if device is not None and parse_device(device).type != "cpu":
        raise ConfigError(f"the embedded codec runs on the CPU only, got device {device!r}")
    codec = load(arg, sha256=sha256)
    if num_codebooks is not None:
        codec.set_num_codebooks(num_codebooks)
    return codec
