"""Load and save front-end checkpoints in the published Moshi / KAME / Kyutai-STT format.

A checkpoint is a folder (or a Hugging Face repo) with ``config.json`` (the LM keys plus
``moshi_name``, ``mimi_name``, ``tokenizer_name``, ``lm_gen_config``, ...) and the weights file it
names (default ``model.safetensors``, bf16 or fp32). Weight names are those of moshi's LMModel;
``oracle_emb.weight`` is added by KAME and is cloned from ``text_emb.weight`` when absent.

    from kame.model.loaders import load_frontend, save_frontend
    model, info = load_frontend("hf://SakanaAI/kame", dtype="bf16")   # HF cache (kame.hub)
    model, info = load_frontend("/path/to/folder")                      # config.json + weights
    model, info = load_frontend("random:tiny")                          # random weights, preset config
    info.mimi, info.tokenizer, info.lm_gen_config, info.sampling
    save_frontend(model, "out/", mimi_name=..., tokenizer_name=...)     # same format back

The model is built on the meta device and the weights are assigned (no double allocation).
Errors: CheckpointError (missing file, missing/unknown key, shape or dtype mismatch, NaN/inf
weights), ConfigError (bad config key or value).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import frontend_spec_form
from ..errors import CheckpointError, ConfigError
from ..hub import HubFileNotFound, HubUnreachable, hf_download, split_hf
from .config import LMConfig, moshi_7b, preset
from .lm import LMModel
from .stepper import Sampling, Stepper

log = logging.getLogger(__name__)

MOSHI_NAME = "model.safetensors"
MIMI_NAME = "tokenizer-e351c8d8-checkpoint125.safetensors"
TOKENIZER_NAME = "tokenizer_spm_32k_3.model"
DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32,
          "float": torch.float32, "fp16": torch.float16, "float16": torch.float16, "half": torch.float16}


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
    missing_files: list[str] = field(default_factory=list)  # named by config.json, not found

    @property
    def sampling(self) -> Sampling:
        return Sampling.from_lm_gen_config(self.lm_gen_config)

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
                generator: torch.Generator | None = None) -> Stepper:
        return Stepper(self.model, batch_size, sampling or self.info.sampling, generator)


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


def parse_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    if dtype is None:  # CPU matmuls are fastest and exact in float32
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ConfigError(f"dtype must be a floating point type, got {dtype}")
        return dtype
    if str(dtype) not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    return DTYPES[str(dtype)]


SpecForm = tuple[str, str | None, Path | None]  # what check_frontend_spec returns


def check_finite(tensors: Mapping[str, torch.Tensor], where: str | Path) -> None:
    """CheckpointError naming ``where`` (the file) and the first floating-point tensor holding NaN
    or inf: such weights would load and give NaN audio later. Shared by the front-end, Mimi and
    embedded codec loaders. One sum per tensor (a 7B load: ~1 s; an element-wise isfinite: ~40 s
    on 2 CPU cores); only a non-finite sum, which finite values can also give by overflowing, is
    confirmed element by element."""
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: tensor {key!r} has NaN or infinite values (a corrupt or diverged "
                                  f"checkpoint)")


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, the file then given the permissions any new file gets here
    (safetensors writes it 0600, so a checkpoint or fitted codec could not be shared or served).
    Shared by the front-end, Mimi and embedded codec writers."""
    save_file(dict(tensors), str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process's umask, read without setting it (os.umask would change it for a moment, for
    every thread): Linux's /proc; elsewhere the usual 022."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0o022


# ------------------------------------------------------------------------------------------
def _resolve(name: str, folder: Path | None, repo: str | None, revision: str | None) -> Path:
    """A file named by config.json: hf://org/repo/file, file://path, relative to the folder/repo."""
    if name.startswith("hf://"):
        other, rev, filename = split_hf(name)
        if filename is None:
            raise ConfigError(f"{name!r}: expected hf://ORG/REPO[@REVISION]/FILE")
        return hf_download(other, filename, rev)
    if name.startswith("file://"):
        return Path(name[7:])
    if Path(name).is_absolute():
        return Path(name)
    if repo is not None:
        return hf_download(repo, name, revision)
    assert folder is not None
    return folder / name


def _try_resolve(name: str, folder, repo, revision, missing: list[str]) -> Path | None:
    try:
        p = _resolve(name, folder, repo, revision)
    except Exception as exc:  # not in the cache / offline / not in the repo
        missing.append(f"{name} ({type(exc).__name__})")
        return None
    if not p.is_file():
        missing.append(name)
        return None
    return p


def _cached_legacy_repo(repo: str, revision: str | None) -> bool:
    """Offline: is `repo` a cached repo without config.json (known absent, or weights cached)?"""
    from huggingface_hub import _CACHED_NO_EXIST, try_to_load_from_cache

    if try_to_load_from_cache(repo, "config.json", revision=revision) is _CACHED_NO_EXIST:
        return True
    return isinstance(try_to_load_from_cache(repo, MOSHI_NAME, revision=revision), str)


def check_frontend_spec(spec: str) -> SpecForm:
    """The form of a front-end spec, checked without loading anything (ConfigError, or a
    CheckpointError for a path that does not exist): ("random", preset, None), ("hf", repo@rev, None)
    or ("path", None, path). load_frontend takes it as ``spec_form`` (checked once per load)."""
    kind, name, path = frontend_spec_form(spec)  # the form (kame.config checks it too, at config load)
    if kind != "path":
        return kind, name, path
    if not path.exists():
        hint = " (a front-end spec is hf://ORG/REPO, a checkpoint folder or random:NAME)" if ":" in str(spec) else ""
        raise CheckpointError(f"front-end checkpoint {str(path)!r} does not exist{hint}")
    return "path", None, path


def _find_config(spec: str, form: SpecForm) -> tuple[dict | None, Path | None, str | None, str | None, str]:
    """-> (raw config or None, folder, hf repo, revision, weights name override); ``form``: the
    spec's check_frontend_spec result."""
    kind, _, path = form
    if kind == "hf":
        repo, revision, _ = split_hf(spec)
        try:
            cfg_path = hf_download(repo, "config.json", revision)
        except (HubFileNotFound, HubUnreachable) as exc:  # a legacy repo: Moshi 7B (as moshi does)
            if isinstance(exc, HubUnreachable) and not _cached_legacy_repo(repo, revision):
                raise
            log.warning("repo %s has no config.json; assuming Moshi 7B", repo)
            return None, None, repo, revision, ""
        return _read_json(cfg_path), None, repo, revision, ""
    weights = ""
    if path.is_file():
        if path.suffix in (".safetensors", ".sft"):
            weights, path = path.name, path.parent
        elif path.name.endswith(".json"):
            return _read_json(path), path.parent, None, None, ""
        else:
            raise CheckpointError(f"{path}: expected a folder, a config.json or a .safetensors file")
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise CheckpointError(f"{path} has no config.json (a front-end checkpoint folder needs one)")
    return _read_json(cfg_path), path, None, None, weights


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable JSON file: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object of config keys, got {type(raw).__name__}")
    return raw


def read_state(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    if path.suffix not in (".safetensors", ".sft", ".sfts"):
        raise CheckpointError(f"{path}: only .safetensors weights are supported")
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"weights file {path} is not a file")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    check_finite(state, path)
    return state


def convert_state(state: dict[str, torch.Tensor], model: LMModel, dtype: torch.dtype,
                  upgrade_oracle: bool = True) -> tuple[dict[str, torch.Tensor], bool]:
    """Map a published state dict onto `model`'s names, check keys/shapes/dtypes, cast.
    Returns (state, oracle_upgraded)."""
    state = dict(state)
    expected = model.state_dict()  # meta tensors: names and shapes only
    if "text_emb.weight" not in state:  # a training wrapper's prefix, e.g. "model." / "lm."
        for k in state:
            if k.endswith(".text_emb.weight"):
                pre = k[: -len("text_emb.weight")]
                state = {(x[len(pre):] if x.startswith(pre) else x): v for x, v in state.items()}
                break
    # Fused attention weights of published checkpoints: in_proj_weight [S * O, I] -> in_projs.S.weight.
    for key in [k for k in state if k.endswith(("self_attn.in_proj_weight", "self_attn.in_proj.weight",
                                                "self_attn.out_proj.weight"))]:
        prefix, name = key.rsplit("self_attn.", 1)
        dst = "in_projs" if name.startswith("in_proj") else "out_projs"
        n = sum(1 for k in expected if k.startswith(f"{prefix}self_attn.{dst}."))
        w = state.pop(key)
        if n == 0 or w.shape[0] % n:
            raise CheckpointError(f"checkpoint key {key} shape {tuple(w.shape)} does not fit the config")
        for i, part in enumerate(w.view(n, -1, *w.shape[1:])):
            state[f"{prefix}self_attn.{dst}.{i}.weight"] = part
    upgraded = False
    if model.has_oracle and "oracle_emb.weight" not in state and upgrade_oracle:
        for k in [k for k in state if k.startswith("text_emb.")]:
            state["oracle_emb." + k[len("text_emb."):]] = state[k].clone()
        upgraded = True
    missing = [k for k in expected if k not in state]
    unknown = [k for k in state if k not in expected]
    if unknown:
        hint = " (a KAME checkpoint: load it with oracle=True)" if any(k.startswith("oracle_emb.") for k in unknown) else ""
        raise CheckpointError(f"checkpoint has {len(unknown)} key(s) the config does not define{hint}: "
                              f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} key(s): {', '.join(missing[:8])}"
                              f"{' ...' if len(missing) > 8 else ''}")
    for k, v in state.items():
        want = expected[k]
        if tuple(v.shape) != tuple(want.shape):
            raise CheckpointError(f"shape mismatch for {k}: checkpoint {tuple(v.shape)}, config expects {tuple(want.shape)}")
        if not v.dtype.is_floating_point:
            raise CheckpointError(f"{k} has dtype {v.dtype} (quantized?); expected floating point weights")
        state[k] = v.to(dtype)
    return state, upgraded


def build_meta(cfg: LMConfig) -> LMModel:
    with torch.device("meta"):
        return LMModel(cfg)


def load_frontend(spec: str | Path, device: str | torch.device = "cpu", dtype: Any = None,
                  oracle: bool | None = None, fetch_companions: bool = True,
                  seed: int = 0, *, spec_form: SpecForm | None = None,
                  **config_overrides: Any) -> tuple[LMModel, FrontendInfo]:
    """Load a front-end LM. spec: "hf://org/repo[@rev]", a folder / config.json / .safetensors
    path, or "random:tiny|small|100m|stt-tiny" (random weights, seeded).
    oracle: None = config's `oracle` key, else on (KAME) except for model_type "stt".
    spec_form: check_frontend_spec(spec), if the caller has checked the spec already."""
    form = spec_form if spec_form is not None else check_frontend_spec(spec)
    kind, name, _ = form
    device = parse_device(device)
    dt = parse_dtype(dtype, device)
    spec = str(spec)
    if kind == "random":
        cfg = preset(name)
        if oracle is not None or config_overrides:
            cfg = cfg.replace(**({"oracle": oracle} if oracle is not None else {}), **config_overrides)
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = LMModel(cfg).to(device=device, dtype=dt).eval()
        finally:
            torch.random.set_rng_state(gen_state)
        return model, FrontendInfo(spec, cfg, None, None, None, {}, cfg.meta.get("model_type", "moshi"))
    raw, folder, repo, revision, weights_name = _find_config(spec, form)
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
        cfg = LMConfig.from_dict(raw_lm, **config_overrides)
    meta = cfg.meta
    missing: list[str] = []
    wname = weights_name or meta.get("moshi_name", MOSHI_NAME)
    wpath = _resolve(wname, folder, repo, revision)  # a CheckpointError names the repo and file
    if not wpath.exists():
        raise CheckpointError(f"LM weights {wpath} (named by config.json moshi_name) do not exist")
    mimi = tok = None
    if fetch_companions:
        mimi = _try_resolve(meta.get("mimi_name", MIMI_NAME), folder, repo, revision, missing)
        tok = _try_resolve(meta.get("tokenizer_name", TOKENIZER_NAME), folder, repo, revision, missing)
    model = build_meta(cfg)
    state, upgraded = convert_state(read_state(wpath, device), model, dt)
    model.load_state_dict(state, assign=True)
    model.eval()
    if upgraded:
        log.info("%s has no oracle_emb: initialised it as a copy of text_emb", wpath)
    info = FrontendInfo(spec, cfg, wpath, mimi, tok, dict(meta.get("lm_gen_config") or {}),
                        meta.get("model_type", "moshi"), upgraded, raw, missing)
    return model, info


def save_frontend(model: LMModel, folder: str | Path, dtype: Any = None, **meta: Any) -> Path:
    """Write config.json + model.safetensors (moshi key names + oracle_emb.weight).
    Extra keyword arguments (mimi_name, tokenizer_name, lm_gen_config, model_type, ...) go to
    config.json; a model loaded with load_frontend keeps the metadata it was loaded with."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    raw = cfg.to_dict()
    raw.update(meta)
    raw.setdefault("moshi_name", MOSHI_NAME)
    dt = None if dtype is None else parse_dtype(dtype, torch.device("cpu"))
    state = {k: (v if dt is None else v.to(dt)).detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_tensors(state, folder / raw["moshi_name"])
    (folder / "config.json").write_text(json.dumps(raw, indent=2))
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
