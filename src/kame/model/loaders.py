"""Load and save front-end checkpoints in the published Moshi / KAME / Kyutai-STT format.

A checkpoint is a folder (or a Hugging Face repo) with ``config.json`` (the LM keys plus
``moshi_name``, ``mimi_name``, ``tokenizer_name``, ``lm_gen_config``, ...) and the weights file it
names (default ``model.safetensors``, bf16 or fp32). Weight names are those of moshi's LMModel;
``oracle_emb.weight`` is added by KAME and is cloned from ``text_emb.weight`` when absent.
A folder or repo with moshi_lm_kwargs.json and no config.json is a cleaned SakanaAI/kame_finetune
checkpoint (kame.model.formats: how it is read, and its training layouts, refused).

    from kame.model.loaders import load_frontend, save_frontend
    model, info = load_frontend("hf://SakanaAI/kame", dtype="bf16")   # HF cache (kame.hub)
    model, info = load_frontend("/path/to/folder")                      # config.json + weights
    model, info = load_frontend("random:tiny")                          # random weights, preset config
    info.mimi, info.tokenizer, info.lm_gen_config, info.sampling, info.kame
    save_frontend(model, "out/", mimi_name=..., tokenizer_name=...)     # same format back
    save_frontend(model, "out/", codec="embedded", tokenizer="default", train={...})  # kame's own

config.json's ``kame`` object records what kame trained a front-end with (``codec``,
``codec_sha256``, ``tokenizer``, ``tokenizer_sha256``, free-form ``train``); the runtime
(kame.runtime.frontend) runs it with that codec and tokenizer, and refuses others.

The model is built on the meta device and the weights are assigned (no double allocation).
Errors: CheckpointError (missing file, missing/unknown key, shape or dtype mismatch, float8 or
NaN/inf weights, weights beyond the dtype's range (float16), a truncated file, a checkpoint of
another kind: a Mimi codec, Kyutai STT or one that reads no user audio where a speech-to-speech
front-end is expected: kame.model.expected),
ConfigError (bad config key or value, naming config.json; a float8 dtype asked for).

Shared with the Mimi loader (kame.codec.mimi.checkpoint): ``resolve_named`` (a file named by a
config.json) and ``read_config`` (and kame.model.tensorfiles: ``read_safetensors``,
``strip_wrapper_prefix``, ``checkpoint_kind`` / ``kind_hint``, ``check_finite``, also the embedded
codec's, and ``cast_checked``). A checkpoint's weights are cast to the dtype by cast_checked (a
float16 overflow refused) and mapped onto the model by kame.model.statedict.convert_state; why
they do not fit is said by kame.model.mismatch. A model without the oracle stream is saved in
the form the moshi package loads (kame.model.moshiform: kame's keys it refuses go under
model_id.kame_lm, read back here).
"""

from __future__ import annotations

import json
import logging
import operator
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import torch

from ..config import frontend_spec_form
from ..errors import CheckpointError, ConfigError, NotAvailableError
from ..hub import HubFileNotFound, HubUnreachable, hf_download, split_hf
from ..paths import _new_temporary, default_mode, local_path
from ..seeding import manual_seed
from .config import (DEFAULT_TOKENIZER, DTYPE_NAMES, MAX_SEED, LMConfig, config_json, moshi_7b, random_config,
                     random_spec_options)
from .expected import check_expected
from .formats import (KWARGS_NAME, drop_user_stream, finetune_config, folder_kwargs, hf_kwargs, read_json,
                      read_kwargs)
from .lm import LMModel
from .meta import kame_record, mimi_trained, named_tokenizer, stamped, tokenizer_name
from .mismatch import mismatch, no_weights
from .moshiform import lift_kame_lm, moshi_form
from .statedict import convert_state
from .stepper import Sampling, Stepper
from .tensorfiles import (SAFETENSORS_SUFFIXES, WEIGHT_DTYPES, cast_checked, check_finite, config_conflict, file_kind,
                          kind_hint, read_safetensors, safetensors_header, save_tensors)

log = logging.getLogger(__name__)

MOSHI_NAME = "model.safetensors"
MIMI_NAME = "tokenizer-e351c8d8-checkpoint125.safetensors"
TOKENIZER_NAME = "tokenizer_spm_32k_3.model"
DTYPES = {name: getattr(torch, attr) for name, attr in DTYPE_NAMES.items()}


@dataclass
class FrontendInfo:
    source: str  # the spec it was loaded from
    config: LMConfig
    weights: Path | None  # the LM weights file (None: random weights)
    mimi: Path | None  # the Mimi checkpoint named by config.json (None if not found)
    tokenizer: Path | None  # the SentencePiece model named by config.json (None if not found)
    lm_gen_config: dict = field(default_factory=dict)
    model_type: str = "moshi"
    oracle_upgraded: bool = False  # oracle_emb was cloned from text_emb on load
    raw_config: dict = field(default_factory=dict)
    # companion files not found: those config.json names, and Moshi's default Mimi / tokenizer names
    # for a checkpoint trained on Mimi codes (or Kyutai STT), which needs them
    missing_files: list[str] = field(default_factory=list)
    layout: str = "config.json"  # or KWARGS_NAME: a cleaned kame_finetune checkpoint (kame.model.formats)
    user_stream_dropped: int = 0  # depformer steps of the user's codebooks dropped on load (kame_finetune)
    assumed: str = ""  # why Moshi 7B's config was assumed (a repo without config.json), else ""

    @property
    def sampling(self) -> Sampling:  # moshi's LMGen: use_sampling false = argmax
        s = Sampling.from_lm_gen_config(self.lm_gen_config)
        return replace(s, greedy=True) if self.lm_gen_config.get("use_sampling") is False else s

    @property
    def kame(self) -> dict:  # config.json's "kame" object: what kame trained it with ({}: nothing said)
        return dict(self.config.meta.get("kame") or {})

    def text_tokenizer(self):
        """The SentencePiece processor of `tokenizer` (whole-text use; for streaming replies use
        kame.backend.tokenizer)."""
        import sentencepiece

        if self.tokenizer is None:
            raise CheckpointError(f"{self.source}: no text tokenizer file (config.json tokenizer_name)")
        return sentencepiece.SentencePieceProcessor(model_file=str(self.tokenizer))


@dataclass
class Frontend:
    """What the "frontend" registry entries return: the model and where its companions are."""

    model: LMModel
    info: FrontendInfo

    def stepper(self, batch_size: int = 1, sampling: Sampling | None = None,
                generator: torch.Generator | None = None, *, seed: int | None = None) -> Stepper:
        """A Stepper of this front-end with its checkpoint's sampling unless given; ``seed``:
        per-row random streams, ``generator``: one shared by the batch (kame.model.stepper)."""
        return Stepper(self.model, batch_size, sampling or self.info.sampling, generator, seed=seed)


def parse_device(device: Any) -> torch.device:
    """A device option as a torch.device this machine can use (cpu; cuda / cuda:N / mps when
    present), else ConfigError. (kame.config checks only the option's form, without torch.)"""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')") from None
    ok = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not ok.get(dev.type, False):
        raise ConfigError(f"device {device!r} is not available here (torch {torch.__version__}); use 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= (n := torch.cuda.device_count()):
        raise ConfigError(f"device {device!r} is not available here: this machine has {n} CUDA device(s) "
                          f"(cuda:0 to cuda:{n - 1}); use one of them, or 'cuda'")
    return dev


def auto_device(option: str) -> str:
    """A command's --device option with "auto" made a device: cuda when this machine has one, else
    cpu; any other option as it is (kame train, kame eval follow)."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if option == "auto" else option


def parse_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    if dtype is None:  # CPU matmuls are fastest and exact in float32
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ConfigError(f"dtype must be a floating point type, got {dtype}")
        if dtype not in WEIGHT_DTYPES:  # (float8: accepted, then the first step failed in torch)
            raise ConfigError(f"dtype {dtype} is not supported: kame runs in float32, bfloat16, float16 or float64 "
                              f"(float8 and other quantized formats are not)")
        return dtype
    if str(dtype) not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    return DTYPES[str(dtype)]


SpecForm = tuple[str, str | None, Path | None]  # what check_frontend_spec returns


# ------------------------------------------------------------------------------------------
def local_name(name: str) -> Path | None:
    """A name config.json gives as file://PATH or an absolute PATH (~ expanded): that Path; None for
    hf:// names and names relative to the checkpoint's folder or repo."""
    path = local_path(name)
    return path if name.startswith("file://") or path.is_absolute() else None


def resolve_named(name: str, folder: Path | None, repo: str | None, revision: str | None) -> Path:
    """A file named by config.json (moshi_name, mimi_name, tokenizer_name): hf://ORG/REPO[@REV]/FILE,
    file://PATH, an absolute or ~/ path, or a name relative to the folder / hf repo the config.json is in.
    The one resolution of these names: the front-end loader's and the Mimi loader's."""
    if name.startswith("hf://"):
        other, rev, filename = split_hf(name)
        if filename is None:
            raise ConfigError(f"{name!r}: expected hf://ORG/REPO[@REVISION]/FILE")
        return hf_download(other, filename, rev)
    local = local_name(name)
    if local is not None:
        return local
    if repo is not None:
        return hf_download(repo, name, revision)
    assert folder is not None
    return folder / name


def _try_resolve(name: str, folder, repo, revision, missing: list[str]) -> Path | None:
    try:
        p = resolve_named(name, folder, repo, revision)
    except Exception as exc:  # not in the cache / offline / not in the repo
        missing.append(f"{name} ({type(exc).__name__})")
        return None
    if not p.is_file():
        missing.append(name)
        return None
    return p


def _resolve_mimi(meta, needs: bool, folder, repo, revision, missing: list[str]) -> Path | None:
    """The Mimi file config.json names (mimi_name), else Moshi's default name, listed in ``missing``
    when not found only if named or ``needs`` (trained on Mimi codes). A codec recorded in kame.codec
    is the runtime's to create from its spec: no Mimi is looked for then."""
    if meta.get("mimi_name"):
        return _try_resolve(meta["mimi_name"], folder, repo, revision, missing)
    if (meta.get("kame") or {}).get("codec"):
        return None
    return _try_resolve(MIMI_NAME, folder, repo, revision, missing if needs else [])


def _resolve_tokenizer(meta, needs: bool, folder, repo, revision, missing: list[str]) -> Path | None:
    """The tokenizer config.json names (tokenizer_name, kame.tokenizer), else Moshi's default name,
    listed in ``missing`` when not found only if named or ``needs`` (kame's own front-ends that name
    none run with kame's default tokenizer)."""
    name = tokenizer_name(meta)
    named = bool(named_tokenizer(meta))
    if name != DEFAULT_TOKENIZER:
        return _try_resolve(name, folder, repo, revision, missing if named or needs else [])
    from ..backend.tokenizer import DEFAULT_MODEL  # (lazily: sentencepiece)

    if not DEFAULT_MODEL.is_file():
        missing.append(f"{name} ({DEFAULT_MODEL} is missing: python -m kame.backend.tokenizer train)")
        return None
    return DEFAULT_MODEL


def _cached_legacy_repo(repo: str, revision: str | None) -> str | None:
    """Offline: why `repo` may be taken for a repo without config.json (its absence recorded in
    the cache, or its weights cached without it), else None."""
    from huggingface_hub import _CACHED_NO_EXIST, try_to_load_from_cache

    src = f"hf://{repo}" + (f"@{revision}" if revision else "")
    if try_to_load_from_cache(repo, "config.json", revision=revision) is _CACHED_NO_EXIST:
        return f"{src} has no config.json (as recorded in the local Hugging Face cache)"
    if isinstance(try_to_load_from_cache(repo, MOSHI_NAME, revision=revision), str):
        return (f"the config.json of {src} is not in the local Hugging Face cache (offline: HF_HUB_OFFLINE or no "
                f"network), so whether the repo has one is unknown")
    return None


def read_config(folder: Path | None = None, repo: str | None = None,
                revision: str | None = None) -> tuple[dict | None, str, str]:
    """The config.json of a folder or hf repo -> (raw or None, where, why none): where names the
    file (in errors); why says whether the repo has none, or it is not cached (offline). A hub
    that cannot be asked, with nothing cached that tells, is the HubUnreachable error."""
    if repo is None:
        where = str(folder / "config.json")
        return (read_json(folder / "config.json"), where, "") if (folder / "config.json").is_file() else \
            (None, where, f"{folder} has no config.json")
    where = f"hf://{repo}" + (f"@{revision}" if revision else "") + "/config.json"
    try:
        return read_json(hf_download(repo, "config.json", revision), where), where, ""
    except HubFileNotFound:
        return None, where, f"hf://{repo} has no config.json"
    except HubUnreachable:
        why = _cached_legacy_repo(repo, revision)
        if why is None:
            raise
        return None, where, why


def check_frontend_spec(spec: str) -> SpecForm:
    """The form of a front-end spec, checked without loading anything (ConfigError, or a
    CheckpointError for a path that does not exist): ("random", "PRESET[;KEY=VALUE,...]", None), ("hf", repo@rev, None)
    or ("path", None, path). load_frontend takes it as ``spec_form`` (checked once per load)."""
    kind, name, path = frontend_spec_form(spec)  # the form (kame.config checks it too, at config load)
    if kind == "random" and isinstance(spec, str) and spec.strip() == "random" and Path("random").is_dir():
        log.warning("front-end spec 'random' means random weights (random:tiny), not the folder ./random here: "
                    "for the folder write ./random")
    if kind != "path":
        return kind, name, path
    if not path.exists():
        from ..train.saving import stopped_save_note  # (a kame train step-N left aside by a killed save)
        hint = " (a front-end spec is hf://ORG/REPO, a checkpoint folder or random:NAME)" if ":" in str(spec) else ""
        hint = f": {note}" if (note := stopped_save_note(path)) else hint
        raise CheckpointError(f"front-end checkpoint {str(path)!r} does not exist{hint}")
    return "path", None, path


class _Found(NamedTuple):
    raw: dict | None  # None: no config.json (Moshi 7B assumed, as `assumed` says why)
    folder: Path | None
    repo: str | None
    revision: str | None
    weights: str  # weights file name given by the spec (a .safetensors path), else ""
    where: str  # the config.json, for errors
    assumed: str = ""
    layout: str = "config.json"  # or KWARGS_NAME (kame_finetune's moshi_lm_kwargs.json, no config.json)


def _find_config(spec: str, form: SpecForm) -> _Found:
    """config.json of a front-end spec; ``form``: the spec's check_frontend_spec result."""
    kind, _, path = form
    if kind == "hf":
        repo, revision, _ = split_hf(spec)
        raw, where, why = read_config(None, repo, revision)
        kwargs = hf_kwargs(repo, revision) if raw is None else None
        if kwargs is not None:  # a cleaned kame_finetune checkpoint
            where = f"hf://{repo}" + (f"@{revision}" if revision else "") + f"/{KWARGS_NAME}"
            return _Found(read_kwargs(kwargs, where), None, repo, revision, "", where, layout=KWARGS_NAME)
        if raw is None:  # a legacy repo: Moshi 7B (as moshi does)
            log.warning("%s; assuming Moshi 7B (as the moshi package does for a repo without one)", why)
        return _Found(raw, None, repo, revision, "", where, why)
    weights = ""
    if path.is_file():
        if path.suffix in SAFETENSORS_SUFFIXES:
            weights, path = path.name, path.parent
        elif path.name == KWARGS_NAME:
            return _Found(read_kwargs(path), path.parent, None, None, "", str(path), layout=KWARGS_NAME)
        elif path.name.endswith(".json"):
            return _Found(read_json(path), path.parent, None, None, "", str(path))
        else:
            raise CheckpointError(f"{path}: expected a folder, a config.json or a .safetensors file")
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        kwargs = folder_kwargs(path, weights)  # kame_finetune's layouts (a training one: a CheckpointError)
        if kwargs is not None:
            return _Found(read_kwargs(kwargs), path, None, None, weights, str(kwargs), layout=KWARGS_NAME)
        files = [path / weights] if weights else sorted(path.glob("*.safetensors"))
        kinds = {f: file_kind(f) for f in files}
        lm = {"frontend", "stt"} & set(kinds.values())  # LM weights beside their Mimi: not a codec folder
        for f, kind_ in kinds.items():
            if kind_ in ("mimi", "embedded") and not lm:  # (names the file given, not its folder: "." for one in cwd)
                raise CheckpointError(f"{path / weights if weights else path} has no config.json and is not a "
                                      f"front-end checkpoint: {kind_hint(kind_, f)}")
        raise CheckpointError(f"{path} has no config.json (a front-end checkpoint folder needs one: the weights alone "
                              f"do not give the model's shapes){_run_folder_hint(path)}")
    return _Found(read_json(cfg_path), path, None, None, weights, str(cfg_path))


def _run_folder_hint(path: Path) -> str:
    """For a kame train output folder (OUT), the checkpoint in it to give instead: OUT/latest, else
    its newest OUT/step-N (where the system made no latest link); "" for any other folder."""
    steps = sorted((int(p.name[5:]), p) for p in path.glob("step-*")
                   if p.name[5:].isdigit() and (p / "config.json").is_file())
    pick = path / "latest" if (path / "latest" / "config.json").is_file() else steps[-1][1] if steps else None
    return f"; it is a kame train output folder: give its checkpoint, {pick}" if pick else ""


# --- safetensors files: reading, truncation, what kind of checkpoint ----------------------
def read_state(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    state, _ = read_safetensors(path, device, "LM weights")
    check_finite(state, path)
    return state


def _check_seed(seed: Any) -> int:
    """load_frontend's seed: an integer in [0, 2**64 - 1] (torch.manual_seed's; numpy ints too, not a
    bool) -> int, else ConfigError. (kame's callers pass frontend.seed's -1, nondeterministic, as 0.)"""
    try:
        n = operator.index(seed)
    except TypeError:
        n = None
    if n is None or isinstance(seed, bool) or not 0 <= n <= MAX_SEED:
        raise ConfigError(f"seed={seed!r}: a seed is an integer in [0, 2**64 - 1] (frontend.seed in kame's config)")
    return n


def check_fits(cfg: LMConfig, wpath: Path, found: _Found, user_q: int = 0) -> None:
    """CheckpointError (naming the config.json, the key and both values) if the config's sizes disagree
    with the weights file's header (config_conflict), before the model is built: a config.json sized
    far above its weights fails at once, not after minutes of building. (An unreadable header: read_state's.)"""
    try:
        header, _ = safetensors_header(wpath)
    except CheckpointError:
        return
    why = config_conflict(cfg, header, found.where if found.raw is not None else "the assumed config", user_q)
    if why is not None:
        raise mismatch(CheckpointError(why), wpath, header, cfg, found)


def build_meta(cfg: LMConfig) -> LMModel:
    with torch.device("meta"):
        return LMModel(cfg)


def load_frontend(spec: str | Path, device: str | torch.device = "cpu", dtype: Any = None,
                  oracle: bool | None = None, fetch_companions: bool = True,
                  seed: int = 0, *, spec_form: SpecForm | None = None, expect: str | None = None,
                  before_weights: Callable[[FrontendInfo], None] | None = None, weights: bool = True,
                  **config_overrides: Any) -> tuple[LMModel, FrontendInfo]:
    """Load a front-end LM. spec: "hf://org/repo[@rev]", a folder / config.json / .safetensors
    path, or "random:tiny|small|100m|stt-tiny" (random weights, seeded), with LMConfig keys after ';'
    (kame.model.config.random_config); a key also given here (``oracle``, ``config_overrides``)
    must have the same value.
    oracle: None = config's `oracle` key, else on (KAME) except for model_type "stt"; True / False
    (a bool: another value is a TypeError).
    spec_form: check_frontend_spec(spec), if the caller has checked the spec already.
    expect: "frontend" refuses a Kyutai STT checkpoint (dep_q 0: no audio out) and one that reads
    no user audio (n_q = dep_q), "stt" a speech-to-speech one, each with a CheckpointError saying
    why and where it goes; None takes any.
    before_weights: called with the FrontendInfo (config and companion files resolved) before a
    checkpoint's weights are read, so a caller's checks fail before a 7B load, not after.
    weights: False builds the model on the meta device and reads no weights (its config and
    companions are resolved and checked as for a load): a sharded training run's other processes
    get theirs from rank 0 (kame.train.parallel.prepare)."""
    if oracle is not None and not isinstance(oracle, bool):  # ("yes", 0 were taken as true / false)
        raise TypeError(f"load_frontend oracle must be True, False or None (the config's), got "
                        f"{type(oracle).__name__} {oracle!r}")
    form = spec_form if spec_form is not None else check_frontend_spec(spec)
    kind, name, _ = form
    seed = _check_seed(seed)
    device = parse_device(device)
    dt = parse_dtype(dtype, device)
    spec = str(spec)
    if kind == "random":
        cfg = random_config(name)
        given = {**config_overrides, **({"oracle": oracle} if oracle is not None else {})}
        clash = {k: v for k, v in given.items() if k in random_spec_options(name)[1] and getattr(cfg, k) != v}
        if clash:  # (the codec's card and codebooks, kame train's text_card, the runtime's oracle switch)
            k, v = next(iter(clash.items()))
            raise ConfigError(f"{spec}: {k}={getattr(cfg, k)!r} in the spec, but {v!r} here (the codec's, the "
                              f"tokenizer's or a setting's): leave {k} out of the spec, or make them agree")
        if oracle is not None or config_overrides:
            cfg = cfg.replace(**({"oracle": oracle} if oracle is not None else {}), **config_overrides)
        check_expected(expect, cfg, spec)
        info = FrontendInfo(spec, cfg, None, None, None, {}, cfg.meta.get("model_type", "moshi"))
        if not weights:
            return build_meta(cfg).to(dtype=dt).eval(), info
        gen_state = torch.random.get_rng_state()
        manual_seed(seed)  # (all 64 bits: kame.seeding)
        try:
            model = LMModel(cfg).to(device=device, dtype=dt).eval()
        finally:
            torch.random.set_rng_state(gen_state)
        return model, info
    found = _find_config(spec, form)
    if found.raw == {} and found.layout != KWARGS_NAME:  # (was: taken for a repo without config.json)
        raise ConfigError(f"{found.where} is empty (a JSON object without keys): it gives none of the model's "
                          f"config (n_q, dim, num_layers, ...) nor its files (moshi_name, ...); write the "
                          f"checkpoint's config.json (save_frontend writes one)")
    if found.raw is not None and found.layout != KWARGS_NAME:  # (kame's keys moshi refuses: kame.model.moshiform)
        found = found._replace(raw=lift_kame_lm(found.raw, found.where))
    raw, folder, repo, revision = found.raw, found.folder, found.repo, found.revision
    user_q, wpath = 0, None
    if found.layout == KWARGS_NAME:  # its LM keys only: companions by Moshi's default names (kame.model.formats)
        wpath = resolve_named(found.weights or MOSHI_NAME, folder, repo, revision)
        raw, user_q = finetune_config(raw, wpath, found.where)
    if raw is None:  # a legacy repo without config.json: Moshi 7B
        cfg, raw = moshi_7b(), {}
        if oracle is not None or config_overrides:
            cfg = cfg.replace(**({"oracle": oracle} if oracle is not None else {}), **config_overrides)
    else:
        raw_lm = dict(raw)
        if oracle is not None:
            raw_lm["oracle"] = oracle
        elif "oracle" not in raw_lm:
            raw_lm["oracle"] = raw_lm.get("model_type", "moshi") != "stt"
        try:
            cfg = LMConfig.from_dict(raw_lm, **config_overrides)
        except (ConfigError, NotAvailableError) as exc:  # name the file (and the caller's overrides)
            over = f" (with {', '.join(sorted(config_overrides))} given to load_frontend)" if config_overrides else ""
            raise type(exc)(f"{found.where}{over}: {exc}") from None
    check_expected(expect, cfg, spec)
    meta = cfg.meta
    missing: list[str] = []
    wname = found.weights or meta.get("moshi_name", MOSHI_NAME)
    # (a CheckpointError names the repo and file; a moshi_lm_kwargs.json's weights are resolved above)
    wpath = wpath or resolve_named(wname, folder, repo, revision)
    if not wpath.exists():
        raise CheckpointError(no_weights(wpath, found, named="moshi_name" in meta))
    mimi = tok = None
    if fetch_companions:  # Moshi's default names are needed by a checkpoint trained on Mimi codes (or Kyutai STT)
        needs = bool(mimi_trained(meta, bool(raw)) or meta.get("model_type") == "stt")
        mimi = _resolve_mimi(meta, needs, folder, repo, revision, missing)
        tok = _resolve_tokenizer(meta, needs, folder, repo, revision, missing)
    info = FrontendInfo(spec, cfg, wpath, mimi, tok, dict(meta.get("lm_gen_config") or {}),
                        meta.get("model_type", "moshi"), False, raw, missing, found.layout, user_q,
                        (found.assumed or "no config.json") if found.raw is None else "")
    if before_weights is not None:
        before_weights(info)
    check_fits(cfg, wpath, found, user_q)
    model = build_meta(cfg)
    if not weights:
        return model.to(dtype=dt).eval(), info
    state = read_state(wpath, device)
    if user_q:  # as kame_finetune's clean_moshi --remove_modules_for_user_stream
        state = drop_user_stream(state, cfg.dep_q)
        log.info("%s: dropped the depformer steps of the user's %d codebooks (dep_q %d -> %d)", wpath, user_q,
                 cfg.dep_q + user_q, cfg.dep_q)
    state = cast_checked(state, dt, wpath)  # (convert_state's cast is then none; its dtype check still sees ints)
    try:
        state, upgraded = convert_state(state, model, dt)
    except CheckpointError as exc:
        err = mismatch(exc, wpath, state, cfg, found)
        # (for the runtime's frontend.oracle hint: a KAME file whose config.json says "oracle": false)
        err.needs_oracle = (not cfg.oracle and any(k.endswith("oracle_emb.weight") for k in state)
                            and _fits(state, cfg.replace(oracle=True)))
        if err.needs_oracle:  # (said only when it would load so: was said of any oracle_emb key, a wrong-shape one too)
            err.args = (f"{err}{ORACLE_HINT}",)
        raise err from exc
    model.load_state_dict(state, assign=True)
    model.eval()
    if upgraded:
        log.info("%s has no oracle_emb: initialised it as a copy of text_emb", wpath)
    return model, replace(info, oracle_upgraded=upgraded)


ORACLE_HINT = " (a KAME checkpoint: load it with oracle=True)"  # load_frontend's own (kame run names its config key)


def _fits(state: Mapping[str, torch.Tensor], cfg: LMConfig) -> bool:
    """Whether the weights would load into a model of ``cfg`` (its keys and shapes: no weight is
    copied, none cast; a load's failure, e.g. ``needs_oracle``)."""
    try:
        convert_state(state, build_meta(cfg), None)
    except CheckpointError:
        return False
    return True


def save_frontend(model: LMModel, folder: str | Path, dtype: Any = None, *, codec: str | None = None,
                  codec_sha256: str | None = None, tokenizer: str | Path | None = None,
                  tokenizer_sha256: str | None = None, train: Mapping[str, Any] | None = None,
                  state_dict: Mapping[str, torch.Tensor] | None = None, **meta: Any) -> Path:
    """Write config.json + model.safetensors (moshi key names + oracle_emb.weight).
    Extra keyword arguments (mimi_name, tokenizer_name, lm_gen_config, model_type, ...) go to
    config.json; a model loaded with load_frontend keeps the metadata it was loaded with.
    codec (a codec spec: embedded, embedded:PATH, mimi:PATH), tokenizer ("default": kame's shipped
    one, else a file name as tokenizer_name takes it, also written as tokenizer_name) and train
    (free-form) go to config.json's "kame" object, with the sha256 of the codec (its fingerprint)
    and of the tokenizer file unless given: the runtime then runs the front-end with them and
    refuses others. state_dict: the weights to write instead of ``model.state_dict()`` (a
    training run's whole weights gathered from a sharded model: kame.train.parallel).
    Everything is checked as load_frontend checks it before anything is written (ConfigError; a
    ``dtype`` too narrow for the weights, float16 for one beyond 65504: CheckpointError, cast_checked),
    and the files are written under temporary names and then renamed: a failure leaves the folder
    as it was."""
    folder = Path(folder)
    dt = None if dtype is None else parse_dtype(dtype, torch.device("cpu"))
    given = {"codec": codec, "codec_sha256": codec_sha256, "tokenizer": tokenizer,
             "tokenizer_sha256": tokenizer_sha256, "train": train}
    if any(v is not None for v in given.values()):
        meta = kame_record(model.cfg, meta, folder, given)
    meta = stamped(model.cfg, meta)  # (this kame's format and version; a record it was loaded with: rewritten)
    raw = config_json(model.cfg, meta, MOSHI_NAME)
    if not model.cfg.oracle:  # the moshi package can load it (kame.model.moshiform)
        raw = moshi_form(raw)
    text = json.dumps(raw, indent=2)
    wpath = folder / raw["moshi_name"]
    for d in (wpath.parent, *wpath.parent.parents):  # (a file on the way: was a raw NotADirectoryError)
        if d.exists() or d.is_symlink():
            if not d.is_dir():
                raise CheckpointError(f"save_frontend: {d} exists and is not a folder")
            break
    if state_dict is not None and set(state_dict) != set(model.state_dict()):
        theirs, ours = set(state_dict), set(model.state_dict())
        raise CheckpointError(f"save_frontend: state_dict does not match the model's keys (missing "
                              f"{sorted(ours - theirs)[:5]}, unexpected {sorted(theirs - ours)[:5]})")
    weights = model.state_dict() if state_dict is None else state_dict
    if dt is not None:  # (a cast to float16 that overflows is refused here, not written as inf)
        weights = cast_checked({k: v.detach() for k, v in weights.items()}, dt, wpath)
    state = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    made = [d for d in (wpath.parent, *wpath.parent.parents) if not d.exists()][::-1]  # folders to create
    temps: list[Path] = []
    try:
        wpath.parent.mkdir(parents=True, exist_ok=True)
        for dst in (wpath, folder / "config.json"):  # (named as kame.paths' writers name theirs,
            # .NAME.HEX.tmp: kame train removes those a stopped save left in its OUT)
            temps.append(_new_temporary(dst))
        save_tensors(state, temps[0])
        temps[1].write_text(text)
        default_mode(temps[1])
        os.replace(temps[0], wpath)  # the weights first: config.json names them
        os.replace(temps[1], folder / "config.json")
    except BaseException:
        for t in temps:
            t.unlink(missing_ok=True)
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                break
        raise
    return folder


# --- registry factories (kame.components: kind "frontend") -------------------------------
def create_hf(arg: str | None, **kwargs: Any) -> Frontend:
    if not arg:
        raise ConfigError("frontend spec hf://ORG/REPO needs a repo")
    return Frontend(*load_frontend("hf://" + arg, **kwargs))


def create_path(arg: str | None, **kwargs: Any) -> Frontend:
    if not arg:
        raise ConfigError("frontend spec path:FOLDER needs a folder")
    return Frontend(*load_frontend(arg, **kwargs))


def create_random(arg: str | None, **kwargs: Any) -> Frontend:
    return Frontend(*load_frontend(f"random:{arg or 'tiny'}", **kwargs))
