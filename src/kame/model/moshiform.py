"""config.json in the form the moshi package loads, for a front-end without KAME's oracle stream.

The moshi package (``moshi.models.loaders.CheckpointInfo.from_hf_repo`` then ``get_moshi`` /
``get_moshi_lm``) pops its metadata keys (MOSHI_META) from config.json and gives every other key
to its LMModel as a keyword argument: a key it does not know (kame's ``oracle``, metadata such as
``version``) is a TypeError there, and so is a null ``depformer_kv_repeat``. save_frontend writes
the config.json of a model without the oracle stream with ``moshi_form``: those keys left out
where their absence means the same to both loaders, the rest under ``model_id.kame_lm`` (moshi
keeps ``model_id`` as free-form provenance and ignores it), which load_frontend reads back as
top-level keys (``lift_kame_lm``), so kame loads its save as it was saved.

Not moved: config.json's ``kame`` object (what kame trained the front-end with, read at the top
by kame train's --resume and the runtime), so a save that has one is kame's alone (moshi's LMModel
refuses the key), as is a KAME front-end (its ``oracle_emb.weight`` is no weight moshi's LMModel
has; save_frontend leaves its config.json as it was, "oracle" at the top).

    raw = moshi_form(config_json(...))      # save_frontend, for cfg.oracle False
    raw = lift_kame_lm(read_json(path), where)
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigError
from .config import META_KEYS

log = logging.getLogger(__name__)

# The keys moshi's CheckpointInfo.from_hf_repo pops before building its LMModel (moshi 0.2).
MOSHI_META = ("moshi_name", "mimi_name", "mimi_config_name", "tokenizer_name", "lora_name", "model_type",
              "lm_gen_config", "tts_config", "stt_config", "model_id")
KAME_LM = "kame_lm"  # model_id's object of the config.json keys kame reads and moshi's LMModel refuses
_KEEP = ("kame",)  # kame's record stays at the top (its readers look there)


def oracle_default(raw: dict[str, Any]) -> bool:
    """The oracle switch of a config.json without an "oracle" key: on except for Kyutai STT
    (load_frontend's reading)."""
    return raw.get("model_type", "moshi") != "stt"


def moshi_form(raw: dict[str, Any]) -> dict[str, Any]:
    """save_frontend's config.json dict (kame.model.config.config_json) of a model without the
    oracle stream, in the form moshi's loader takes: a null depformer_kv_repeat left out (both
    read its absence as kv_repeat's), a null depformer_gating written as gating's value (what it
    means; a null is moshi's TypeError), "oracle" left out when it is what its absence means, else
    moved, with the metadata keys moshi does not pop, to model_id.kame_lm. A model_id that is not
    an object (a third party's "org/repo" string) is kept as it is and those keys stay at the top,
    with a warning: a save kame loads and the moshi package does not (was: a ConfigError)."""
    out = dict(raw)
    if "depformer_kv_repeat" in out and out["depformer_kv_repeat"] is None:
        del out["depformer_kv_repeat"]
    if "depformer_gating" in out and out["depformer_gating"] is None:
        out["depformer_gating"] = out.get("gating", "silu")
    kept: dict[str, Any] = {}
    if "oracle" in out and out.pop("oracle") != oracle_default(out):
        kept["oracle"] = raw["oracle"]
    for key in [k for k in out if k in META_KEYS and k not in MOSHI_META and k not in _KEEP]:
        kept[key] = out.pop(key)
    if kept:
        ids = out.get("model_id", {})
        if isinstance(ids, dict) and isinstance(ids.get(KAME_LM), dict):  # (one already: these keys added to it)
            kept = {**ids[KAME_LM], **kept}
            ids = {k: v for k, v in ids.items() if k != KAME_LM}
        if not isinstance(ids, dict) or KAME_LM in ids:  # (another's model_id: kept as it is, the save kame's alone)
            log.warning("save_frontend: model_id=%r is not an object kame can add %r to: kame's keys %s stay at the "
                        "top of config.json, which the moshi package's loader then refuses (a kame-only save)",
                        ids, KAME_LM, ", ".join(sorted(kept)))
            return {**out, **kept}
        out["model_id"] = {**ids, KAME_LM: kept}
    return out


def lift_kame_lm(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A config.json dict with the keys of its model_id.kame_lm (moshi_form's) back at the top
    (model_id dropped when nothing else is in it); ConfigError naming ``where`` for a kame_lm that
    is not an object, or that repeats a top-level key."""
    ids = raw.get("model_id")
    if not isinstance(ids, dict) or KAME_LM not in ids:
        return raw
    kept = ids[KAME_LM]
    if not isinstance(kept, dict):
        raise ConfigError(f"{where}: model_id.{KAME_LM}={kept!r}: expected an object of config keys")
    both = sorted(k for k in kept if k in raw)
    if both:
        raise ConfigError(f"{where}: {both[0]!r} is both a top-level key and in model_id.{KAME_LM}: keep one")
    out = {**raw, **kept}
    rest = {k: v for k, v in ids.items() if k != KAME_LM}
    if rest:
        out["model_id"] = rest
    else:
        del out["model_id"]
    return out
