"""Loading and saving Mimi weights in the published checkpoint format.

A source is one of
    /path/to/tokenizer-e351c8d8-checkpoint125.safetensors     a local file
    /path/to/folder                 a folder holding it (or the file named by config.json's mimi_name)
    hf://kyutai/moshiko-pytorch-bf16[@REV][/FILE]   a Hugging Face repo (FILE defaults to the file its
                                    config.json names as mimi_name, else the Mimi name), fetched with
                                    kame.hub.hf_download (the cache first; HF_HUB_OFFLINE)
A folder's or repo's mimi_name is resolved by the front-end loader's own code
(kame.model.loaders.resolve_named: relative, absolute, ~/, file:// or hf://ORG/REPO/FILE).

Keys and shapes are those of the ``moshi`` package's MimiModel state_dict; older aliases that
moshi's own loader accepts (``self_attn.in_proj_weight``, ``embed_sum``, ``cluster_size`` ...)
are renamed on load and a wrapper prefix ("model.") is taken off (as for the front-end).
Mismatches raise CheckpointError naming the key; a front-end LM, Kyutai STT or embedded codec
file says what it is and where it goes; a truncated file says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ...errors import CheckpointError, ConfigError
from ...hub import HubUnreachable, hf_download, split_hf
from ...paths import local_path
from ..base import check_num_codebooks
from .config import MIMI_NAME, MimiConfig
from .model import MimiCodec, MimiModel

_ALIASES = [  # (regex on the key suffix, replacement), as accepted by moshi's load hooks
    (r"self_attn\.in_proj_weight$", "self_attn.in_projs.0.weight"),
    (r"self_attn\.in_proj\.weight$", "self_attn.in_projs.0.weight"),
    (r"self_attn\.out_proj\.weight$", "self_attn.out_projs.0.weight"),
    (r"_codebook\.inited$", "_codebook._initialized"),
    (r"_codebook\.cluster_size$", "_codebook.cluster_usage"),
    (r"_codebook\.embed_avg$", "_codebook.embedding_sum"),
    (r"_codebook\.embed_sum$", "_codebook.embedding_sum"),
]
_CONFIG_KEY = "kame_mimi_config"  # safetensors metadata written by save_mimi


def resolve_source(source: str | Path) -> Path:
    """Turn a file, folder or hf://org/repo[@rev][/file] into a local safetensors file path.
    A folder or repo is resolved as the front-end loader resolves it (kame.model.loaders:
    read_config, resolve_named): its config.json's ``mimi_name`` (relative, absolute, ~/, file:// or
    hf://ORG/REPO/FILE), else the published Mimi file name."""
    from ...model.loaders import read_config  # (lazily: loaders imports this package)

    s = str(source)
    if s.startswith("hf:"):
        repo, revision, filename = split_hf(s)
        if filename:
            return hf_download(repo, filename, revision)
        try:
            raw, where, why = read_config(None, repo, revision)
        except HubUnreachable:  # config.json not cached (offline): the default name may be
            raw, where, why = None, "", "not in the local"
        named = _named(raw, where, None, repo, revision)
        if named is not None:
            return named
        try:
            return hf_download(repo, MIMI_NAME, revision)
        except HubUnreachable as exc:
            if "not in the local" not in why:
                raise
            raise HubUnreachable(f"{exc} (nor is the repo's config.json, which may name another Mimi file as "
                                 f"mimi_name)") from None
    path = local_path(s)
    if path.is_dir():
        cfg = path / "config.json"
        raw = None
        if cfg.is_file():
            try:
                raw, _, _ = read_config(path)
            except ConfigError as exc:
                raise CheckpointError(str(exc)) from exc
        named = _named(raw, str(cfg), path, None, None)
        if named is not None:
            return named
        if (path / MIMI_NAME).is_file():
            return path / MIMI_NAME
        found = sorted(p for p in path.glob("*.safetensors") if "tokenizer" in p.name or "mimi" in p.name.lower())
        if len(found) == 1:
            return found[0]
        if found:
            raise CheckpointError(
                f"folder {path} holds {len(found)} candidate Mimi checkpoints: {', '.join(p.name for p in found)}; "
                f"pass the file's path, or name it as \"mimi_name\" in {cfg}"
            )
        raise CheckpointError(f"no Mimi checkpoint in folder {path} (looked for {MIMI_NAME!r} and *tokenizer*/*mimi*.safetensors)")
    if not path.is_file():
        raise CheckpointError(f"Mimi checkpoint not found: {path} (mimi:ARG takes a .safetensors file, a folder "
                              f"holding one, hf://ORG/REPO[/FILE], random or random-tiny)")
    return path


def _named(raw: dict | None, where: str, folder: Path | None, repo: str | None, revision: str | None) -> Path | None:
    """The Mimi file named by a config.json's mimi_name (None: it names none)."""
    from ...model.loaders import resolve_named

    if raw is None or "mimi_name" not in raw:
        return None
    name = raw["mimi_name"]
    if not isinstance(name, str) or not name.strip():
        raise CheckpointError(f"{where}: 'mimi_name' must be a file name, got {name!r}")
    try:
        path = resolve_named(name, folder, repo, revision)
    except (CheckpointError, ConfigError) as exc:
        raise type(exc)(f"{where} names the Mimi checkpoint {name!r} (mimi_name): {exc}") from None
    if not path.is_file():
        raise CheckpointError(f"{where} names the Mimi checkpoint {name!r} (mimi_name), but {path} does not exist: "
                              f"fix mimi_name or add the file")
    return path


def _rename(key: str) -> str:
    for pat, rep in _ALIASES:
        if re.search(pat, key):
            return re.sub(pat, rep, key)
    return key


_ANCHOR = "quantizer.rvq_first.vq.layers.0._codebook.embedding_sum"  # a key every Mimi file holds


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state with moshi's key names, metadata) of a Mimi file: aliases renamed and a training
    wrapper's prefix ("model." ...) taken off as the front-end loader does; CheckpointError for
    a file that is not safetensors or is truncated."""
    from ...model.tensorfiles import read_safetensors, strip_wrapper_prefix

    state, meta = read_safetensors(path, "cpu", "Mimi checkpoint")
    return strip_wrapper_prefix({_rename(k): v for k, v in state.items()}, _ANCHOR), meta


def load_state(model: MimiModel, state: dict[str, torch.Tensor], where: str = "checkpoint", note: str = "") -> None:
    """Strictly load ``state`` into ``model``; any missing/unexpected key, shape mismatch, float8 or
    NaN/inf weight raises (``note`` is added to the key and shape errors: where the config came from)."""
    from ...model.tensorfiles import check_finite, checkpoint_kind, kind_hint  # (lazily, as check_placement)

    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    kind = checkpoint_kind(state) if missing else "mimi"
    if kind not in ("mimi", None):  # a front-end LM, Kyutai STT or embedded codec file
        raise CheckpointError(f"{where} is not a Mimi codec checkpoint: {kind_hint(kind, Path(where))}")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        if unexpected:
            parts.append(f"unexpected key {unexpected[0]!r}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        raise CheckpointError(f"{where} does not match the Mimi config: {'; '.join(parts)}{note}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{where}: key {k!r} has shape {tuple(state[k].shape)}, the config expects "
                                  f"{tuple(v.shape)}{note}")
        if v.is_floating_point() and not state[k].is_floating_point():
            raise CheckpointError(f"{where}: key {k!r} has dtype {state[k].dtype} (quantized?); expected floating point weights")
    check_finite(state, where)
    model.load_state_dict({k: t.to(own[k].dtype) for k, t in state.items()}, strict=True)


def _infer_n_q(state: dict[str, torch.Tensor], cfg: MimiConfig) -> MimiConfig:
    """The published file stores 32 codebooks; adapt ``n_q`` to what the file holds."""
    rest = {int(m.group(1)) for k in state if (m := re.match(r"quantizer\.rvq_rest\.vq\.layers\.(\d+)\.", k))}
    if rest and len(rest) + cfg.n_q_semantic != cfg.n_q:
        n_q = len(rest) + cfg.n_q_semantic
        d = json.loads(cfg.to_json())
        d.update(n_q=n_q, num_codebooks=min(cfg.num_codebooks, n_q))
        return MimiConfig.from_dict(d)
    return cfg


def check_placement(device: str | torch.device, dtype: str | torch.dtype) -> tuple[torch.device, torch.dtype]:
    """The ``device`` and ``dtype`` options as torch objects, or a ConfigError naming the bad one."""
    from ...model.loaders import parse_device, parse_dtype

    dev = parse_device(device)
    return dev, parse_dtype(dtype, dev)


def load_mimi(
    source: str | Path,
    num_codebooks: int | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    config: MimiConfig | None = None,
) -> MimiCodec:
    """Load a Mimi checkpoint (file, folder or hf://org/repo[/file]) as a ``MimiCodec``.

    ``config`` defaults to the one stored by ``save_mimi`` in the file's metadata, else the
    published ``MimiConfig()`` (with ``n_q`` taken from the file). ``num_codebooks`` (the codebooks
    coded with, at most what the file holds) defaults to the config's ``num_codebooks``: Moshi's 8,
    or all the file holds when it holds fewer.
    """
    from ...model.tensorfiles import cast_checked  # (lazily, as check_placement)

    device, dtype = check_placement(device, dtype)
    path = resolve_source(source)
    state, meta = _read(path)
    if config is None and _CONFIG_KEY in meta:
        try:
            config = MimiConfig.from_json(meta[_CONFIG_KEY])
        except ValueError as exc:  # bad JSON (JSONDecodeError) or a bad config (ConfigError)
            raise CheckpointError(f"{path}: the {_CONFIG_KEY!r} metadata: {exc}") from exc
    note = ""
    if config is None:  # a file as published (no kame metadata): the published shapes
        config = _infer_n_q(state, MimiConfig())
        note = (" (the file holds no kame config, so the published Mimi's shapes were assumed; a Mimi of "
                "another size loads with load_mimi(path, config=MimiConfig(...)), and save_mimi stores its config)")
    if num_codebooks is None:
        num_codebooks = config.num_codebooks
    try:  # before the weights are loaded
        num_codebooks = check_num_codebooks(num_codebooks, config.n_q_semantic, config.n_q)
    except ConfigError as exc:
        raise ConfigError(f"{exc} ({path.name} holds {config.n_q} codebooks: {path})") from None
    state = cast_checked(state, dtype, path)  # (float16: a weight beyond its range refused, not run as inf)
    model = MimiModel(config)
    load_state(model, state, where=str(path), note=note)
    model.to(device=device, dtype=dtype)
    return MimiCodec(model, num_codebooks=num_codebooks, source=path)


def save_mimi(codec_or_model: MimiCodec | MimiModel, path: str | Path) -> Path:
    """Write the weights in the published format (plus the config as safetensors metadata)."""
    from ...model.tensorfiles import save_tensors  # (lazily, as check_finite)

    model = codec_or_model.model if isinstance(codec_or_model, MimiCodec) else codec_or_model
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_tensors(state, path, metadata={_CONFIG_KEY: model.cfg.to_json()})
    return path
