"""The checkpoint layouts of SakanaAI/kame_finetune, Sakana's fine-tuning workflow for KAME.

Its training run ends in two conversions (run in kame_finetune):

    uv run -m tools.zero_to_fp32 RUN/step_N RUN/step_N_fp32 --moshi_lm_kwargs_path INIT/moshi_lm_kwargs.json
    uv run -m tools.clean_moshi --moshi_ft_dir RUN/step_N_fp32 --save_dir OUT --oracle_embedding_mode MODE

kame loads the second's output, a **cleaned folder** (or an hf:// repo holding the same files):
``model.safetensors`` (moshi's LMModel state dict plus ``oracle_emb.weight``) and
``moshi_lm_kwargs.json`` (the LMModel's keyword arguments, moshi's ``_lm_kwargs`` form), with
no config.json. It is read as a config.json holding those keys with ``model_type`` "kame"
("moshi" for weights without oracle_emb, e.g. nu-dialogue/moshi-finetune's, whose oracle_emb is
then cloned from text_emb as for Moshi). It names no companions: its Mimi and text tokenizer are
looked for by Moshi's default names in the folder (repo), as for a Moshi config.json that names
none (kame.model.loaders; the runtime's errors say which file to put there).

A model trained with the user's stream in its depformer (init_moshi_for_ft
--extend_modules_for_user_stream: dep_q 16 = the agent's 8 codebooks, then the user's 8) and
cleaned without --remove_modules_for_user_stream is loaded as clean_moshi's removal would leave
it: the depformer's first 8 steps (its steps are causal, so the agent's codebooks never depend on
the user's). At inference the user's codebooks are the user's audio, as for any Moshi.

The earlier outputs - the DeepSpeed ZeRO checkpoint and zero_to_fp32's MoshiForFinetuning folder
- are refused with the command that converts them: only clean_moshi knows how the oracle
embedding was trained (--oracle_embedding_mode tie copies text_emb into oracle_emb).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import torch

from ..errors import CheckpointError, ConfigError
from ..hub import HubFileNotFound, HubUnreachable, cache_hint, hf_download
from .tensorfiles import safetensors_header

KWARGS_NAME = "moshi_lm_kwargs.json"
WEIGHTS_NAME = "model.safetensors"  # the one name clean_moshi writes
_CLEAN = ("uv run -m tools.clean_moshi --moshi_ft_dir {src} --save_dir {src}_cleaned --oracle_embedding_mode "
          "MODE (separate or tie: the mode it was trained with)")
# MoshiForFinetuning exposes the gating linears' weights for ZeRO-3: "...gating.linear_in_weight"
_TRAINING_KEY = re.compile(r"(^|\.)gating\.(\d+\.)?linear_(in|out)_weight$")
# per-step modules of the depformer (moshi's names; the fused attention weights are handled apart)
_PER_STEP = re.compile(r"^(depformer_in|depformer_emb|depformer_norms|linears|depformer\.layers\.\d+\."
                       r"(gating|self_attn\.in_projs|self_attn\.out_projs))\.(\d+)\.")
_FUSED = re.compile(r"^depformer\.layers\.\d+\.self_attn\.(in_proj_weight|in_proj\.weight|out_proj\.weight)$")


def _fix(src: str | Path) -> str:
    return _CLEAN.format(src=src)


def read_json(path: Path, where: str | None = None, what: str = "config keys") -> dict:
    """A JSON file holding one object (config.json, moshi_lm_kwargs.json) as a dict; ConfigError
    naming the file (or ``where``) if it is unreadable (one of the Hugging Face cache: what to
    delete there, kame.hub.cache_fix) or not an object."""
    text = ""
    try:
        text = Path(path).read_text()
        raw = json.loads(text) if text.strip() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fix = cache_hint(path) if not isinstance(exc, OSError) else ""  # (damaged there: cut short)
        raise ConfigError(f"{where or path} is not a readable JSON file: {exc}{fix}") from exc
    if not text.strip():  # (was: "not a readable JSON file: Expecting value: line 1 column 1")
        raise ConfigError(f"{where or path} is empty ({len(text)} bytes): expected a JSON object of {what}"
                          f"{cache_hint(path)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or path}: expected a JSON object of {what}, got {type(raw).__name__}")
    return raw


def read_kwargs(path: Path, where: str | None = None) -> dict:
    """moshi_lm_kwargs.json as a dict."""
    return read_json(path, where, "LM keyword arguments")


def folder_kwargs(folder: Path, weights_name: str = "") -> Path | None:
    """A folder without config.json: its moshi_lm_kwargs.json (a cleaned kame_finetune folder),
    None when it has none and is no kame_finetune training output either, else the CheckpointError
    naming the conversion it still needs. ``weights_name``: the weights file the spec named."""
    kwargs = folder / KWARGS_NAME
    weights = folder / (weights_name or WEIGHTS_NAME)
    if weights.is_file():
        check_not_training(weights)  # zero_to_fp32's output, with or without its kwargs file
    elif kwargs.is_file():
        _no_weights(weights)
    if kwargs.is_file():
        return kwargs
    marker = _deepspeed_marker(folder)
    if marker is not None:
        raise CheckpointError(
            f"{folder} is a DeepSpeed ZeRO checkpoint ({marker}: kame_finetune's training output), not a front-end "
            f"checkpoint. Convert it in kame_finetune first: uv run -m tools.zero_to_fp32 {folder} {folder}_fp32 "
            f"--moshi_lm_kwargs_path INIT/moshi_lm_kwargs.json (INIT: the init_moshi_for_ft folder it was trained "
            f"from), then {_fix(f'{folder}_fp32')}, and give the cleaned folder as the front-end")
    return None


def _no_weights(weights: Path) -> None:
    """A moshi_lm_kwargs.json without its weights file: what is there instead, and what to do."""
    folder = weights.parent
    shards = sorted(p.name for p in folder.glob("model-*-of-*.safetensors"))
    other = [n for n in ("model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
             if (folder / n).exists()]
    if shards or other:
        raise CheckpointError(
            f"{folder} holds {', '.join((other + shards)[:3])}: the weights of a kame_finetune training model "
            f"(tools.zero_to_fp32's output), not a cleaned one. Clean it in kame_finetune: {_fix(folder)}, and give "
            f"the cleaned folder (model.safetensors + {KWARGS_NAME}) as the front-end")
    raise CheckpointError(f"{folder} has {KWARGS_NAME} but no {weights.name}: a cleaned kame_finetune folder holds "
                          f"{WEIGHTS_NAME} and {KWARGS_NAME} (tools.clean_moshi writes both); copy the weights file "
                          f"there")


def _deepspeed_marker(folder: Path) -> str | None:
    """What marks ``folder`` as a DeepSpeed checkpoint (its 'latest' tag file, or *_model_states.pt /
    *_optim_states.pt files in it or one level down), else None."""
    for pattern in ("*_model_states.pt", "*/*_model_states.pt", "*_optim_states.pt", "*/*_optim_states.pt"):
        found = next(iter(folder.glob(pattern)), None)
        if found is not None:
            return f"it holds {found.relative_to(folder)}"
    if (folder / "latest").is_file() and (folder / "zero_to_fp32.py").is_file():
        return "it holds 'latest' and zero_to_fp32.py"
    return None


def _header(weights: Path) -> dict:
    """The tensors a .safetensors file's header names ({} if it cannot be read: read_state says
    what is wrong with the file)."""
    try:
        return safetensors_header(weights)[0]
    except CheckpointError:
        return {}


def check_not_training(weights: Path) -> None:
    """CheckpointError if ``weights`` (a .safetensors file, its header only is read) holds a
    kame_finetune training model (MoshiForFinetuning, tools.zero_to_fp32's output)."""
    if (exc := training_error(weights, _header(weights))) is not None:
        raise exc


def training_error(weights: Path, keys: Iterable[str]) -> CheckpointError | None:
    """The error for weights holding a kame_finetune training model (``keys``: their tensor names),
    else None."""
    found = [k for k in keys if _TRAINING_KEY.search(k)]
    if not found:
        return None
    return CheckpointError(
        f"{weights} holds a kame_finetune training model (MoshiForFinetuning, as tools.zero_to_fp32 writes it: "
        f"tensors such as {found[0]!r}), not a cleaned one. kame cannot tell how its oracle embedding was "
        f"trained; clean it in kame_finetune: {_fix(weights.parent)}, and give the cleaned folder "
        f"(model.safetensors + {KWARGS_NAME}) as the front-end")


def hf_kwargs(repo: str, revision: str | None) -> Path | None:
    """moshi_lm_kwargs.json of an hf repo without config.json (downloaded or cached), else None
    (the repo has none, or it is not cached and the hub cannot be asked)."""
    try:
        return hf_download(repo, KWARGS_NAME, revision)
    except (HubFileNotFound, HubUnreachable):
        return None


def finetune_config(kwargs: dict, weights: Path, where: str) -> tuple[dict, int]:
    """The config.json-form dict of a cleaned kame_finetune checkpoint (moshi_lm_kwargs.json's keys
    plus model_type), and the number of depformer steps that model the user's
    stream (0, or dep_q // 2: dropped on load by drop_user_stream)."""
    for key in ("moshi_name", "mimi_name", "tokenizer_name", "model_type", "kame"):  # (config.json's, not the kwargs')
        if key in kwargs:
            raise ConfigError(f"{where}: unexpected key {key!r}: {KWARGS_NAME} holds the LM's keyword arguments only "
                              f"(companion files and metadata go in a config.json, docs/frontend.md)")
    if not weights.is_file():
        _no_weights(weights)
    header = _header(weights)
    if (exc := training_error(weights, header)) is not None:
        raise exc
    raw = dict(kwargs, model_type="kame" if "oracle_emb.weight" in header or not header else "moshi")
    dep_q, n_q = kwargs.get("dep_q"), kwargs.get("n_q")
    user_q = 0
    if isinstance(dep_q, int) and dep_q == n_q and dep_q >= 2 and dep_q % 2 == 0:
        # init_moshi_for_ft --extend_modules_for_user_stream: the agent's n_q/2 codebooks, then the user's
        if kwargs.get("depformer_weights_per_step") is not True or kwargs.get("depformer_weights_per_step_schedule"):
            raise CheckpointError(f"{where}: dep_q {dep_q} = n_q: its depformer also models the user's codebooks, "
                                  f"and without one set of weights per step (depformer_weights_per_step true, no "
                                  f"schedule) kame cannot drop those steps. Clean it in kame_finetune with "
                                  f"--remove_modules_for_user_stream: {_fix('RUN/step_N_fp32')} "
                                  f"--remove_modules_for_user_stream")
        user_q = dep_q // 2
        raw.update(dep_q=dep_q - user_q, depformer_context=dep_q - user_q)
    return raw, user_q


def drop_user_stream(state: dict[str, torch.Tensor], dep_q: int) -> dict[str, torch.Tensor]:
    """``state`` (moshi key names) of a depformer of ``2 * dep_q`` steps cut to its first ``dep_q``,
    as kame_finetune's clean_moshi --remove_modules_for_user_stream does: the per-step modules
    (depformer_in, depformer_emb: dep_q - 1 tables, norms, attention projections, gating, linears)
    of the user's steps go; the fused attention weights keep their first half of rows."""
    out = {}
    for key, value in state.items():
        m = _PER_STEP.match(key)
        if m is not None:
            limit = dep_q - 1 if m.group(1) == "depformer_emb" else dep_q
            if int(m.group(3)) >= limit:
                continue
        elif _FUSED.match(key):
            value = value[: value.shape[0] // 2]
        out[key] = value
    return out
