"""The one config of the front-end LM (Moshi architecture + KAME oracle stream).

Every key of the published ``config.json`` files is accepted: Moshi 7B / moshiko (the
``moshi`` package's ``_lm_kwargs``), KAME (same LM keys, always has the oracle stream), and
Kyutai STT 1B / 2.6B (``dep_q`` 0, ``extra_heads_*``, ``stt_config``). Keys that only describe
where the other files are or how to generate (``moshi_name``, ``mimi_name``, ``tokenizer_name``,
``lm_gen_config``, ``model_type``, ``stt_config``, ...) are kept in ``LMConfig.meta``, as is
``kame``: what kame trained the front-end with (codec, tokenizer, their sha256, train notes).
An unknown key raises ``kame.errors.ConfigError`` naming it.

    from kame.model.config import LMConfig, preset
    cfg = LMConfig.from_dict(json.load(open("config.json")))
    cfg = preset("tiny")              # random-weight configs for tests / benches
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping

from ..errors import ConfigError, NotAvailableError
from ..numeric import is_finite_number


@dataclass
class LMConfig:
    # --- streams -------------------------------------------------------------------------
    n_q: int = 16  # audio codebooks in the input (model's own dep_q first, then the user's)
    dep_q: int = 8  # codebooks predicted by the depformer (0 = text only, e.g. Kyutai STT)
    card: int = 2048  # audio vocabulary; id `card` is the audio BOS/initial token
    text_card: int = 32000  # text vocabulary; id `text_card` is the text BOS (and oracle start)
    text_card_out: int | None = None  # text output vocabulary if different from text_card
    delays: list[int] = field(default_factory=lambda: [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1])
    existing_text_padding_id: int = 3  # text "pad" (nothing said this frame)
    existing_text_end_padding_id: int = 0  # text "end of padding" (a word starts next frame)
    demux_second_text_stream: bool = False  # text ids are (tok2 * (text_card+1) + tok1) pairs
    # --- temporal transformer ------------------------------------------------------------
    dim: int = 4096
    num_heads: int = 32
    num_layers: int = 32
    hidden_scale: float = 4.125  # feed-forward size = int(hidden_scale * dim)
    kv_repeat: int = 1  # grouped-query attention: heads per key/value head
    causal: bool = True
    context: int | None = 3000  # attention span in frames = KV ring-buffer capacity
    max_period: float = 10000.0  # RoPE max period
    gating: str = "silu"  # "none" (plain GELU MLP) or the activation of the gated FFN
    norm: str = "rms_norm_f32"  # rms_norm_f32 | rms_norm | layer_norm | layer_norm_f32
    norm_emb: bool = False  # layer norm after the input embeddings
    positional_embedding: str = "rope"  # rope | sin | sin_rope | rope_concat | none
    positional_scale: float = 1.0  # scale of the sinusoidal embedding
    layer_scale: float | None = None  # LayerScale init (None = no LayerScale)
    bias_proj: bool = False  # bias on the text/audio output projections
    # --- depth transformer (over the model's own codebooks, within one frame) --------------
    depformer_dim: int = 1024
    depformer_dim_feedforward: int | list[int] | None = 4224  # None = hidden_scale * depformer_dim
    depformer_num_heads: int = 16
    depformer_num_layers: int = 6
    depformer_layer_scale: float | None = None
    depformer_multi_linear: bool = True  # one input projection per codebook
    depformer_weights_per_step: bool = True  # one set of layer weights per codebook
    depformer_weights_per_step_schedule: list[int] | None = None  # codebook -> weight index
    depformer_low_rank_embeddings: int | None = None
    depformer_pos_emb: str = "none"
    depformer_norm: str | None = None  # norm before each codebook's output linear
    depformer_context: int | None = 8  # (accepted; moshi ignores it, the depformer sees one frame)
    depformer_max_period: float = 10000.0
    depformer_gating: str | None = "silu"  # None = same as `gating`
    depformer_kv_repeat: int | None = None  # None = same as `kv_repeat`
    # --- extra heads (Kyutai STT: semantic VAD) -------------------------------------------
    extra_heads_num_heads: int = 0
    extra_heads_dim: int = 6
    # --- KAME oracle stream ----------------------------------------------------------------
    oracle: bool = True  # oracle_emb (text_card + 1 rows) summed into the temporal input
    # --- metadata (not used by the LM; file names, generation defaults, ...) ---------------
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------
    @property
    def num_codebooks(self) -> int:  # text + audio streams
        return self.n_q + 1

    @property
    def n_user_q(self) -> int:  # audio codebooks the stepper takes from the user
        return self.n_q - self.dep_q

    @property
    def ffn_dim(self) -> int:
        return int(self.hidden_scale * self.dim)

    @property
    def dep_ffn_dims(self) -> list[int]:
        n = self.dep_num_weights
        ff = self.depformer_dim_feedforward
        if ff is None:
            ff = int(self.hidden_scale * self.depformer_dim)
        return list(ff) if isinstance(ff, list) else [int(ff)] * n

    @property
    def dep_num_weights(self) -> int:
        if not self.depformer_weights_per_step:
            return 1
        if self.depformer_weights_per_step_schedule:
            return max(self.depformer_weights_per_step_schedule) + 1
        return self.dep_q

    @property
    def text_ids(self) -> int:
        """The ids the text embeddings take (text_emb, oracle_emb): the text_card pieces and the start
        id; when demuxed, pairs of them (tok2 * (text_card + 1) + tok1)."""
        n = self.text_card + 1
        return n * (n + 1) if self.demux_second_text_stream else n

    @property
    def max_delay(self) -> int:
        return max(self.delays)

    def validate(self) -> "LMConfig":
        for name, low in _MIN_INT.items():  # sizes: a bad one is a crash deep in torch otherwise
            if getattr(self, name) < low:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= {low}")
        for name in ("hidden_scale", "max_period", "depformer_max_period", "positional_scale",
                     "layer_scale", "depformer_layer_scale"):
            v = getattr(self, name)
            if v is not None and not (is_finite_number(v) and v > 0):  # (LMConfig(...) itself takes true too)
                why = " (true/false is not a number)" if isinstance(v, bool) else ""
                raise ConfigError(f"{name}={v} must be a finite number > 0{why}")
        self._check_upper_bounds()
        from .modules import ACTIVATIONS  # (lazily: torch)

        for name in ("gating", "depformer_gating"):
            v = getattr(self, name)
            if v is not None and v != "none" and v not in ACTIVATIONS:
                raise ConfigError(f"{name}={v!r} is not 'none' or one of {sorted(ACTIVATIONS)}")
        if len(self.delays) != self.num_codebooks:
            raise ConfigError(f"delays has {len(self.delays)} entries, expected one per stream: n_q + 1 = "
                              f"{self.num_codebooks} (text + n_q={self.n_q} audio codebooks)")
        if any(d < 0 for d in self.delays):
            raise ConfigError(f"delays must be >= 0, got {self.delays}")
        if not 0 <= self.dep_q <= self.n_q:
            raise ConfigError(f"dep_q={self.dep_q} must be within [0, n_q={self.n_q}]")
        if self.dim % self.num_heads or self.depformer_dim % self.depformer_num_heads:
            raise ConfigError("dim / depformer_dim must be divisible by their number of heads")
        for heads, rep in ((self.num_heads, self.kv_repeat), (self.depformer_num_heads, self.depformer_kv_repeat or self.kv_repeat)):
            if rep < 1 or heads % rep:
                raise ConfigError(f"kv_repeat={rep} must divide the number of heads ({heads})")
        if self.context is not None and self.context < 1:
            raise ConfigError(f"context={self.context} must be >= 1 (or null for no limit)")
        n_ids = self.text_ids
        if self.text_card_out is not None and not 1 <= self.text_card_out <= n_ids:
            raise ConfigError(f"text_card_out={self.text_card_out} must be within [1, {n_ids}]: each text id the model "
                              f"writes is fed back into its text embedding, which takes {n_ids} ids (text_card + 1"
                              f"{' pairs' if self.demux_second_text_stream else ''})")
        for name in ("norm",) + (("depformer_norm",) if self.depformer_norm else ()):
            if getattr(self, name) not in ("rms_norm", "rms_norm_f32", "layer_norm", "layer_norm_f32"):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not a known norm")
        for name in ("positional_embedding", "depformer_pos_emb"):
            if getattr(self, name) not in ("rope", "sin", "sin_rope", "rope_concat", "none"):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not a known positional embedding")
        sched = self.depformer_weights_per_step_schedule
        if sched is not None and len(sched) != self.dep_q:
            raise ConfigError(f"depformer_weights_per_step_schedule needs dep_q={self.dep_q} entries")
        if self.dep_q and len(self.dep_ffn_dims) != self.dep_num_weights:
            raise ConfigError("depformer_dim_feedforward list length must match the depformer weight sets")
        for name in ("existing_text_padding_id", "existing_text_end_padding_id"):
            if not 0 <= getattr(self, name) < self.text_card:
                raise ConfigError(f"{name}={getattr(self, name)} outside the text vocabulary [0, {self.text_card})")
        _check_meta(self.meta)
        return self

    def _check_upper_bounds(self) -> None:
        """Sizes far above any published checkpoint's (_MAX_INT) are a ConfigError naming the key: a
        damaged or hostile config.json would otherwise hang or crash building the model (num_layers
        1e5: minutes of module building; dim 1e9: a torch overflow) or allocate a huge KV cache
        (context). Checked before the weights are read."""
        ff = self.depformer_dim_feedforward
        values = {**{k: getattr(self, k) for k in _MAX_INT}, "hidden_scale": self.hidden_scale,
                  "delays": max(self.delays, default=0),
                  "depformer_dim_feedforward": max(ff, default=1) if isinstance(ff, list) else ff}
        for name, v in values.items():
            if v is not None and v > _MAX_INT[name]:
                seven = _MOSHI_7B_SIZES.get(name, getattr(LMConfig(), name))
                shown = f"{name} entry {v}" if isinstance(getattr(self, name), list) else f"{name}={v}"
                raise ConfigError(f"{shown} is above kame's limit of {_MAX_INT[name]} for it (published checkpoints "
                                  f"stay far below it; Moshi 7B's: {seven}): a damaged or mistaken config.json? "
                                  f"give the values the weights were saved with")
        if isinstance(ff, list) and ff and min(ff) < 1:
            raise ConfigError(f"depformer_dim_feedforward={ff} must be >= 1")
        sched = self.depformer_weights_per_step_schedule
        if sched and not all(0 <= i < self.dep_q for i in sched):
            raise ConfigError(f"depformer_weights_per_step_schedule={sched}: each entry (a depformer weight set) must "
                              f"be within [0, dep_q={self.dep_q})")

    # ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any], **overrides: Any) -> "LMConfig":
        """Build from a published config.json dict (unknown keys -> ConfigError naming them)."""
        d = dict(raw)
        d.update(overrides)
        meta = d.pop("meta", None) or {}
        if not isinstance(meta, dict):
            raise ConfigError(f"config key meta={meta!r}: expected an object of metadata keys")
        meta = dict(meta)
        for key in list(d):
            if key in META_KEYS:
                meta[key] = d.pop(key)
        newer = newer_kame(meta)  # (first: a newer kame's keys are not this one's to judge)
        if newer:
            raise ConfigError(newer)
        for key in IGNORED_KEYS:
            d.pop(key, None)
        if "demux_second_stream" in d:  # moved key (the moshi loader renames it the same way)
            d["demux_second_text_stream"] = d.pop("demux_second_stream")
        for key, (ok, what) in UNSUPPORTED.items():
            if key in d:
                value = d.pop(key)
                if not ok(value):
                    raise NotAvailableError(f"config key {key}={value!r}: {what} is not supported by kame")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in d if k not in names)
        if unknown:
            raise ConfigError(newer_kame(meta, unknown) or f"unknown front-end config key(s): {', '.join(unknown)}")
        # (a null depformer_gating is gating's value, as LMModel reads it and moshi reads its absence;
        # was: dropped here, so the default silu)
        _check_types(cls, d)
        return cls(meta=meta, **d).validate()

    def to_dict(self) -> dict[str, Any]:
        """The config.json form (LM keys + metadata keys at top level, as published)."""
        d = dataclasses.asdict(self)
        meta = d.pop("meta")
        d.update(meta)
        return d

    def replace(self, **changes: Any) -> "LMConfig":
        """A copy with ``changes`` (load_frontend's keyword overrides), checked as from_dict checks
        config.json: an unknown key, a value of the wrong type (true or 2.5 for a whole-number key)
        or out of range is a ConfigError naming the key. A caller's numbers are taken as the JSON ones
        they stand for: a numpy int as an int, a numpy float as a float, a tuple as a list (_plain)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown front-end config key(s): {', '.join(unknown)}")
        changes = {key: _plain(value) for key, value in changes.items()}
        _check_types(type(self), changes)
        return dataclasses.replace(self, **changes).validate()


# Sizes below these are ConfigErrors (not crashes deep in torch).
_MIN_INT = {"n_q": 1, "dep_q": 0, "card": 1, "text_card": 1, "dim": 1, "num_heads": 1, "num_layers": 1,
            "depformer_dim": 1, "depformer_num_heads": 1, "depformer_num_layers": 0, "kv_repeat": 1,
            "extra_heads_num_heads": 0, "extra_heads_dim": 1}
# Sizes above these are ConfigErrors naming the key (LMConfig._check_upper_bounds): 8-60x the
# largest published values (Moshi 7B / KAME: dim 4096, 32 layers, 32 heads, context 3000, card
# 2048, text_card 32000, n_q 16, depformer 1024 x 6; Kyutai STT 2.6B: 48 layers, n_q 32; Hibiki:
# text_card 48000, n_q 32), so no real checkpoint reaches them. context sets the KV cache (per
# session and layer: 2 * context * dim values), delays the stepper's token buffer.
_MAX_INT = {"n_q": 256, "card": 65536, "text_card": 1_000_000, "text_card_out": 1_000_000, "dim": 65536,
            "num_heads": 1024, "num_layers": 512, "depformer_dim": 65536, "depformer_num_heads": 1024,
            "depformer_num_layers": 512, "depformer_low_rank_embeddings": 65536, "extra_heads_num_heads": 256,
            "extra_heads_dim": 65536, "context": 65536, "depformer_context": 65536,
            "hidden_scale": 64, "depformer_dim_feedforward": 1 << 20, "delays": 1024}
_MOSHI_7B_SIZES = {"text_card_out": "none (text_card's 32000)", "depformer_low_rank_embeddings": "none",
                   "extra_heads_num_heads": "0 (Kyutai STT: 4)", "extra_heads_dim": "6",
                   "delays": "at most 1", "depformer_dim_feedforward": "4224"}
# The keys that set the weights' shapes: a config.json without one gets Moshi 7B's value, and a
# shape mismatch then names them (kame.model.loaders).
SHAPE_KEYS = ("n_q", "dep_q", "card", "text_card", "dim", "num_heads", "num_layers", "hidden_scale", "kv_repeat",
              "depformer_dim", "depformer_dim_feedforward", "depformer_num_heads", "depformer_num_layers")
# Metadata keys kame reads: their JSON types; the model types of the published configs
# (moshi's CheckpointInfo: moshi, hibiki; Kyutai STT / TTS: stt, tts; kame: as moshi); the lm_gen_config entries:
# those of moshi's LMGen that a JSON file can hold (FrontendInfo.sampling reads temp, top_k,
# temp_text, top_k_text and use_sampling), and their types.
_META_STR = ("moshi_name", "mimi_name", "tokenizer_name", "model_type")
MODEL_TYPES = ("moshi", "kame", "hibiki", "stt", "tts")
_NUM, _INT, _BOOL = (int, float), (int,), (bool,)
_GEN_KEYS = {"temp": _NUM, "temp_text": _NUM, "top_k": _INT, "top_k_text": _INT, "use_sampling": _BOOL,
             "cfg_coef": _NUM, "check": _BOOL, "support_out_of_sync": _BOOL, "cfg_is_no_text": _BOOL,
             "cfg_is_masked_until": (list, type(None))}


def _check_meta(meta: dict[str, Any]) -> None:
    """The metadata keys kame uses have the right type (a ConfigError naming the key, not an
    AttributeError while loading or a TypeError in the first sampling step)."""
    for key in _META_STR:
        if key in meta and not (isinstance(meta[key], str) and meta[key].strip()):
            raise ConfigError(f"config key {key}={meta[key]!r}: expected a non-empty string")
    if "model_type" in meta and meta["model_type"] not in MODEL_TYPES:
        raise ConfigError(f"config key model_type={meta['model_type']!r}: expected one of {', '.join(MODEL_TYPES)}")
    check_kame(meta)
    gen = meta.get("lm_gen_config")
    if gen is None:
        return
    _check_object("lm_gen_config", gen, _GEN_KEYS, "temp, top_k, temp_text, top_k_text")
    for key, v in gen.items():
        types = _GEN_KEYS[key]
        if types is _BOOL:
            ok, want = isinstance(v, bool), "true or false"
        elif types[0] is list:
            ok, want = v is None or (isinstance(v, list) and all(type(x) is int for x in v)), "a list of integers or null"
        elif types == _INT:  # (an int is exact: any size samples, a top-k past the vocabulary is none)
            ok, want = isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"
        else:
            ok, want = is_finite_number(v) and v >= 0, "a number >= 0"
        if not ok:
            raise ConfigError(f"config key lm_gen_config.{key}={v!r}: expected {want}")


def _check_object(key: str, value: Any, known, shape: str, note: str = "") -> None:
    """config.json's ``key`` must be an object whose keys are all ``known``."""
    if not isinstance(value, dict):
        raise ConfigError(f"config key {key}={value!r}: expected an object ({shape})")
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise ConfigError(f"unknown {key} key(s): {', '.join(unknown)} (known: {', '.join(known)}{note})")


# kame's own provenance key of config.json: what a front-end was trained with. Unknown sub-keys
# are refused (a newer kame may add one that changes how the checkpoint must run); "train" is free.
# "format": the checkpoint format (KAME_FORMAT when this kame wrote it; absent: written before
# formats were numbered, read as format 1), "written_by": the kame version that wrote it.
KAME_KEYS = ("format", "written_by", "codec", "codec_sha256", "tokenizer", "tokenizer_sha256", "train")
# The checkpoint format this kame writes and reads. Raised only by a change an older kame would
# read wrongly (a new key it must not ignore, a key whose meaning changes): an older kame then
# refuses the checkpoint with newer_kame's "upgrade kame" (a key merely added need not raise it:
# an older kame that finds a key it does not know in a checkpoint from a newer version says so too).
KAME_FORMAT = 1
UPGRADE = "upgrade kame (pip install -U kame-tandem)"
MAX_SEED = 2**64 - 1  # the largest sampling seed torch takes (torch.manual_seed): frontend.seed's, load_frontend's
DEFAULT_TOKENIZER = "default"  # kame.tokenizer: kame's shipped vocabulary (kame/assets/text_tokenizer_4k.model)


def _release(version: Any) -> tuple[int, ...] | None:
    """The release numbers of a version string ("0.2.1rc1" -> (0, 2, 1)), None if it has none."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", version) if isinstance(version, str) else None
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def newer_kame(meta: Mapping[str, Any], unknown: Any = ()) -> str | None:
    """Why config.json's kame record says a newer kame wrote it (the ConfigError's text: "made by
    a newer kame ...: upgrade kame"), else None: its kame.format above KAME_FORMAT; or, when this
    kame finds ``unknown`` keys in it, its kame.written_by a later version than this kame's. A
    checkpoint without a kame record or a format (Moshi's, KAME's, one written before formats were
    numbered) is not newer."""
    from .. import __version__

    kame = meta.get("kame")
    if not isinstance(kame, Mapping):
        return None
    fmt, by = kame.get("format"), kame.get("written_by")
    by = by.strip() if isinstance(by, str) and by.strip() else None
    if type(fmt) is int and fmt > KAME_FORMAT:
        wrote = f"; it was written by kame {by}" if by else ""
        return f"made by a newer kame (format {fmt}, this kame reads up to {KAME_FORMAT}{wrote}): {UPGRADE}"
    if unknown and by and (_release(by) or ()) > (_release(__version__) or ()):
        return (f"made by a newer kame (kame {by}, this is kame {__version__}), with key(s) this kame does not "
                f"know: {', '.join(map(str, unknown))}: {UPGRADE}")
    return None


def check_kame(meta: dict[str, Any]) -> None:
    """config.json's "kame" object: format (an int >= 1, at most KAME_FORMAT: newer_kame),
    written_by (a non-empty string), codec / tokenizer (non-empty strings), their sha256 (64 hex
    digits), train (an object of anything)."""
    kame = meta.get("kame")
    if kame is None:
        return
    newer = newer_kame(meta, sorted(str(k) for k in kame if k not in KAME_KEYS) if isinstance(kame, dict) else ())
    if newer:
        raise ConfigError(newer)
    _check_object("kame", kame, KAME_KEYS, ", ".join(KAME_KEYS), "; free-form notes go under kame.train")
    if "format" in kame and not (type(kame["format"]) is int and kame["format"] >= 1):
        raise ConfigError(f"config key kame.format={kame['format']!r}: expected an integer >= 1 (the checkpoint "
                          f"format; this kame writes {KAME_FORMAT})")
    if "written_by" in kame and not (isinstance(kame["written_by"], str) and kame["written_by"].strip()):
        raise ConfigError(f"config key kame.written_by={kame['written_by']!r}: expected a non-empty string (the "
                          f"kame version that wrote the checkpoint)")
    for key in ("codec", "tokenizer"):
        if key in kame and not (isinstance(kame[key], str) and kame[key].strip()):
            raise ConfigError(f"config key kame.{key}={kame[key]!r}: expected a non-empty string")
    for key in ("codec_sha256", "tokenizer_sha256"):
        if key in kame and not (isinstance(kame[key], str) and re.fullmatch(r"[0-9a-f]{64}", kame[key])):
            raise ConfigError(f"config key kame.{key}={kame[key]!r}: expected a sha256 (64 lowercase hex digits)")
    if kame.get("codec", "").split(":", 1)[0] == "auto":
        raise ConfigError("config key kame.codec='auto': name the codec the front-end was trained with (e.g. "
                          "embedded, embedded:PATH, mimi:PATH)")
    if "train" in kame and not isinstance(kame["train"], dict):
        raise ConfigError(f"config key kame.train={kame['train']!r}: expected an object")
    name, tok = meta.get("tokenizer_name"), kame.get("tokenizer")
    if name is not None and tok is not None and name != tok:
        raise ConfigError(f"config keys tokenizer_name={name!r} and kame.tokenizer={tok!r} name two tokenizers: "
                          f"keep one (kame.tokenizer {DEFAULT_TOKENIZER!r} is kame's shipped vocabulary)")


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "None": (type(None),)}


def _check_types(cls, d: dict[str, Any]) -> None:
    """A value of the wrong JSON type -> ConfigError naming the key (not a crash deep in torch)."""
    ann = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    for key, value in d.items():
        for alt in (a.strip() for a in ann[key].split("|")):
            if alt.startswith("list["):
                inner = _TYPES.get(alt[5:-1], (object,))
                ok = isinstance(value, list) and all(isinstance(v, inner) and not (
                    isinstance(v, bool) and bool not in inner) for v in value)
            elif alt in _TYPES:
                ok = isinstance(value, _TYPES[alt]) and not (isinstance(value, bool) and alt != "bool")
            else:
                ok = True
            if ok:
                break
        else:
            number = {"int", "float"} & {a.strip() for a in ann[key].split("|")}
            why = " (true/false is not a number)" if isinstance(value, bool) and number else ""
            raise ConfigError(f"config key {key}={value!r}: expected {ann[key]}{why}")


def _plain(value: Any) -> Any:
    """``value`` as from_dict's JSON would give it: an integer that is not a bool (numpy's too) as an
    int, another finite real number (np.float32) as a float, a tuple or list as a list of such;
    anything else as it is (for _check_types to judge: a bool, 2.5 for an int key, a string stay refused)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if is_finite_number(value):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as config.json can hold it (a path as its text, a tuple as a list, numpy/torch
    scalars as numbers), else a ConfigError naming ``where``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if is_finite_number(value):  # (a bool or an int: above)
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"save_frontend: {where}={value!r} ({type(value).__name__}) cannot be written to config.json "
                      f"(JSON holds text, finite numbers, true/false, null, lists and objects with text keys)")


def config_json(model_cfg: LMConfig, meta: Mapping[str, Any], moshi_name: str) -> dict[str, Any]:
    """The config.json kame.model.loaders.save_frontend writes for a model of ``model_cfg`` plus the
    ``meta`` keys (``moshi_name``: the default weights name), checked as load_frontend checks it
    (unknown keys, types, lm_gen_config, model_type, a weights name inside the folder), else
    ConfigError (nothing is written then)."""
    raw = model_cfg.to_dict()
    for key, value in meta.items():
        value = _jsonable(value, key)
        if key in raw and key not in META_KEYS and value != raw[key]:
            raise ConfigError(f"save_frontend: {key}={value!r} is an LM config key: config.json gets the model's "
                              f"own value ({raw[key]!r}), which its weights were made for")
        raw[key] = value
    name = raw.setdefault("moshi_name", moshi_name)
    if isinstance(name, str) and (PurePath(name).suffix not in (".safetensors", ".sft", ".sfts") or ":" in name
                                  or PurePath(name).is_absolute() or ".." in PurePath(name).parts):
        raise ConfigError(f"save_frontend: moshi_name={name!r}: expected the name of a .safetensors file inside "
                          f"the folder (e.g. {moshi_name})")
    try:
        LMConfig.from_dict(raw)
    except (ConfigError, NotAvailableError) as exc:
        raise type(exc)(f"save_frontend: {exc} (load_frontend would refuse the config.json)") from None
    return raw


# Keys that describe files / generation / provenance, kept in LMConfig.meta.
META_KEYS = {
    "moshi_name", "mimi_name", "mimi_config_name", "tokenizer_name", "lora_name", "model_type",
    "lm_gen_config", "tts_config", "stt_config", "model_id", "version", "quantization",
    "inference_dep_q", "inference_pre_text_silence_frames", "inference_post_text_silence_frames",
    "inference_prompt_tokens", "generated_audio_codebooks", "architectures", "torch_dtype",
    "kame",  # what kame trained it with (codec, tokenizer, their sha256; check_kame)
}
# Keys accepted and ignored (training-time switches, deprecated keys).
IGNORED_KEYS = {"depformer_causal", "gradient_checkpointing", "lora_rank", "lora_scaling", "betas", "weights_per_step"}
# Keys accepted only with their neutral value (features kame does not implement).
UNSUPPORTED = {
    "cross_attention": (lambda v: not v, "cross attention (TTS conditioning)"),
    "conditioners": (lambda v: not v, "conditioners"),
    "fuser": (lambda v: not v, "condition fuser"),
    "quantize": (lambda v: not v, "8-bit quantized weights"),
    "lora": (lambda v: not v, "LoRA adapters (merge them first)"),
    "skip_self_attn": (lambda v: not v, "skip_self_attn"),
}


def moshi_7b() -> LMConfig:
    """Moshi 7B (moshiko / KAME) shapes, as the moshi package's ``_lm_kwargs``."""
    return LMConfig()


PRESETS = ("tiny", "small", "100m", "stt-tiny", "7b")  # the names preset() knows
# dtype names a loader takes (--dtype, load_frontend(dtype=...)) -> torch dtype attribute (loaders.DTYPES)
DTYPE_NAMES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp32": "float32", "float32": "float32",
               "float": "float32", "fp16": "float16", "float16": "float16", "half": "float16"}


def preset(name: str) -> LMConfig:
    """Random-weight configs for tests, benches and the runtime.

    tiny  ~ 3.6M params: dim 64, 2 layers, Moshi streams (n_q 16, dep_q 8), text vocab 1000
    small ~ 22M params:  dim 256, 6 layers, depformer 128 x 1, text vocab 2000
    100m  ~ 110M params: dim 640, 10 layers, depformer 256 x 2, text vocab 8000
    (most parameters of the small ones are the 17 embedding tables of 2049 rows)
    stt-tiny: Kyutai STT shape (dep_q 0, 2 extra heads), tiny sizes
    7b: the real Moshi 7B shapes (do not build it with random weights on CPU)
    """
    moshi_delays = [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]
    common = dict(delays=moshi_delays, card=2048, context=250, depformer_context=8)
    if name == "tiny":
        return LMConfig(dim=64, num_heads=4, num_layers=2, text_card=1000, depformer_dim=32,
                        depformer_num_heads=2, depformer_num_layers=2, depformer_dim_feedforward=132,
                        **common).validate()
    if name == "small":
        return LMConfig(dim=256, num_heads=8, num_layers=6, text_card=2000, depformer_dim=128,
                        depformer_num_heads=4, depformer_num_layers=1, depformer_dim_feedforward=528,
                        **common).validate()
    if name == "100m":
        return LMConfig(dim=640, num_heads=10, num_layers=10, text_card=8000, depformer_dim=256,
                        depformer_num_heads=4, depformer_num_layers=2, depformer_dim_feedforward=1056,
                        **common).validate()
    if name == "stt-tiny":
        return LMConfig(n_q=8, dep_q=0, delays=[0] * 9, dim=64, num_heads=4, num_layers=2, text_card=1000,
                        context=250, extra_heads_num_heads=2, extra_heads_dim=6, oracle=False,
                        depformer_dim=32, depformer_num_heads=2, depformer_num_layers=1,
                        depformer_dim_feedforward=132, meta={"model_type": "stt"}).validate()
    if name == "7b":
        return moshi_7b()
    raise ConfigError(f"unknown preset {name!r}; known: tiny, small, 100m, stt-tiny, 7b")


def random_config(name: str) -> LMConfig:
    """The config of the front-end ``random:NAME``: a preset, optionally followed by LMConfig keys
    after ';' ("small;depformer_dim=256,depformer_num_layers=2"), each checked as a config.json
    key is (LMConfig.from_dict)."""
    head, overrides = random_spec_options(name)
    cfg = preset(head)
    try:
        return LMConfig.from_dict(cfg.to_dict(), **overrides) if overrides else cfg
    except ConfigError as exc:
        raise ConfigError(f"random:{name}: {exc}") from None


def random_spec_options(name: str) -> tuple[str, dict[str, Any]]:
    """"PRESET;KEY=VALUE,KEY=VALUE" -> (PRESET, {KEY: VALUE}): a value is read as JSON (a number,
    true / false, null, a [list]; commas inside brackets do not split) or else kept as text;
    a KEY must be an LMConfig field. ConfigError for a malformed, repeated or unknown key. No
    torch (kame.config checks specs with it)."""
    import json

    head, _, text = name.partition(";")
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth = max(0, depth + (ch == "[") - (ch == "]"))
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    fields = {f.name for f in dataclasses.fields(LMConfig)} - {"meta"}
    out: dict[str, Any] = {}
    for part in filter(str.strip, parts):
        key, eq, value = (x.strip() for x in part.partition("="))
        if not eq or not key:
            raise ConfigError(f"random:{name}: {part.strip()!r} is not KEY=VALUE; the front-end's config keys go "
                              f"after ';', comma-separated (e.g. random:small;depformer_dim=256,depformer_num_layers=2)")
        if key in out or key not in fields:
            raise ConfigError(f"random:{name}: config key {key!r} " + ("given twice" if key in out else
                              "is not a front-end config key (see kame.model.config.LMConfig)"))
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    try:
        _check_types(LMConfig, out)
    except ConfigError as exc:
        spelled = " (JSON's spelling: true, false, null)" if any(v in ("True", "False", "None") for v in out.values()) \
            else ""
        raise ConfigError(f"random:{name}: {exc}{spelled}") from None
    return head.strip() or "tiny", out
