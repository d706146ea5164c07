"""The front-end `kame train` trains, with its codec and tokenizer, loaded by kame run's rule
(``load_for_training``; kame eval follow and the benches load theirs with it too).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def load_for_training(spec: str, codec_spec: str, text_card: int | None, device, *, command: str = "train",
                      options: str = "codec.spec is --codec, frontend.spec --frontend or --resume",
                      weights: bool = True):
    """(model, codec, codec spec, tokenizer, tokenizer spec for save_frontend) of a front-end to
    train, by kame run's rule (kame.runtime.frontend): a checkpoint's codec ("auto": the one it
    records, else its Mimi) and tokenizer pass kame.runtime.loading's checks before its weights
    load; a random: one takes the embedded codec for "auto" and a text vocabulary that holds the
    tokenizer's pieces (``text_card`` or the tokenizer's size). Errors are worded for `kame
    COMMAND`, whose ``options`` stand for the runtime's config keys. ``weights`` False: the
    front-end on the meta device, no weights read (a sharded run's processes but rank 0)."""
    from .. import registry
    from ..backend.tokenizer import DEFAULT_MODEL, default_tokenizer
    from ..cliargs import naming
    from ..errors import CheckpointError
    from ..codec.base import fit_codec
    from ..model.config import random_config
    from ..model.loaders import load_frontend
    from ..runtime.frontend import frontend_form, load_frontend_checked, random_overrides

    with naming("--frontend"):  # (--resume's checkpoint exists: its form is no error; was: no option named)
        form = frontend_form(spec)  # (a plugin's front-end: load_frontend_checked's, as kame run's)
    if form[0] == "random":
        codec_spec = "embedded" if codec_spec == "auto" else codec_spec
        with naming("--codec"):
            codec = registry.create("codec", codec_spec)
        tok = default_tokenizer()
        card = text_card if text_card is not None else max(random_config(form[1]).text_card, tok.vocab_size)
        model, _ = load_frontend(spec, device=device, dtype="fp32", text_card=card, expect="frontend",
                                 weights=weights, **random_overrides(codec))
        fit_codec(codec, codec_spec, model.cfg, spec)
        return model, codec, codec_spec, tok, "default"
    if text_card is not None:
        raise ConfigError(f"{command}: --text-card is for a random: front-end; {spec} has its own vocabulary")
    # (a KAME file whose config.json says "oracle": false: kame COMMAND has no frontend.oracle option)
    oracle_fix = (f'its config.json says "oracle": false, but its weights hold a trained oracle stream: set '
                  f'"oracle": true in {_config_json(form, spec)} to load it with that stream (kame {command} '
                  f'loads a front-end as its config.json says; it has no oracle option)')
    try:
        model, codec, codec_spec, tok, info = load_frontend_checked(spec, "fp32", device, 0, codec_spec,
                                                                    weights=weights, oracle_fix=oracle_fix)
    except (ConfigError, CheckpointError) as exc:  # (the runtime's words: its config keys are our options)
        tail = "" if getattr(exc, "config_key", None) == "frontend.oracle" else f" (in kame {command}: {options})"
        exc.args = (f"{command}: {exc}{tail}",)
        raise
    if tok is None or (tok.path is not None and Path(tok.path).resolve() == DEFAULT_MODEL.resolve()):
        return model, codec, codec_spec, default_tokenizer(), "default"
    return model, codec, codec_spec, tok, info["tokenizer"]


def _config_json(form, spec: str) -> str:
    """The config.json of the front-end ``spec`` (``form``: frontend_form's), as errors name it."""
    from ..paths import form_folder

    kind, repo, path = form
    if form_folder(form) is not None:
        return str(form_folder(form) / "config.json")
    return f"hf://{repo}/config.json" if kind == "hf" else f"the config.json of {spec}"
