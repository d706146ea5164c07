"""config.json's "kame" object: what kame trained a front-end with.

    "kame": {"format": 1, "written_by": "0.1.0", "codec": "embedded", "codec_sha256": "4ad1...",
             "tokenizer": "default", "tokenizer_sha256": "f580...", "train": {...anything...}}

``format``: the checkpoint format (kame.model.config.KAME_FORMAT; a kame refuses a higher one with
"made by a newer kame ...: upgrade kame", and reads a record without one, written before formats
were numbered, as before); ``written_by``: the kame version that wrote it (both stamped on every
save: ``stamped``); ``codec``: the codec spec the front-end was trained on (codec.spec=auto runs it with that one);
``codec_sha256``: that codec's fingerprint (kame.codec.base.Codec.fingerprint: the embedded
codec's fitted file, Mimi's weights file); ``tokenizer``: "default" (kame's shipped vocabulary)
or a file name as tokenizer_name takes it; ``tokenizer_sha256``: that file's sha256; ``train``:
free-form notes (steps, data, command). LMConfig keeps it in ``meta`` (checked by
kame.model.config.check_kame); save_frontend writes it (``kame_record``); the runtime
(kame.runtime.frontend) refuses a codec or tokenizer whose sha256 differs, before the weights load.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePath
from typing import Any, Mapping

from ..errors import ConfigError, KameError
from .config import DEFAULT_TOKENIZER, KAME_FORMAT, KAME_KEYS, LMConfig, check_kame

log = logging.getLogger(__name__)

def named_tokenizer(meta: Mapping[str, Any]):
    """The text tokenizer a config.json names, if any: tokenizer_name, else kame.tokenizer
    (DEFAULT_TOKENIZER: kame's shipped one)."""
    return meta.get("tokenizer_name") or (meta.get("kame") or {}).get("tokenizer")


def tokenizer_name(meta: Mapping[str, Any]) -> str:
    """The text tokenizer a config.json names (named_tokenizer), else Moshi's default name (as the
    moshi package reads it)."""
    from .loaders import TOKENIZER_NAME  # (lazily: loaders imports this module)

    return named_tokenizer(meta) or TOKENIZER_NAME


def mimi_trained(meta: Mapping[str, Any], has_config: bool = True) -> str | None:
    """Why a checkpoint's audio codes are Mimi's (None: nothing says so, e.g. kame's own front-ends
    saved without a mimi_name). ``has_config``: False for a repo without config.json (Moshi 7B).
    A config.json's kame.codec says which codec it is; one with a "kame" object is kame's own (its
    model_type does not mean Mimi). The one rule: the loader's and the runtime's."""
    from .. import registry

    kame = meta.get("kame") or {}
    if isinstance(kame, Mapping) and kame.get("codec"):
        mimi = registry.parse_spec(kame["codec"])[0] == "mimi"
        return f"its config.json kame.codec is {kame['codec']!r}" if mimi else None
    if meta.get("mimi_name"):
        return f"its config.json names the Mimi file {meta['mimi_name']!r}"
    if meta.get("kame") is not None:
        return None
    if not has_config:
        return "a Moshi repo without config.json"
    if meta.get("model_type") in ("moshi", "kame"):
        return f"its config.json model_type is {meta['model_type']!r}"
    return None


def kame_record(cfg: LMConfig, meta: dict[str, Any], folder: Path, given: dict[str, Any]) -> dict[str, Any]:
    """save_frontend's meta with the "kame" object updated from ``given`` (codec, tokenizer, their
    sha256, train): a codec or tokenizer given replaces the recorded one and its sha256, which is
    computed unless given (the codec's fingerprint: None for random weights, then not recorded).
    A codec given must fit the model (kame.codec.base.fit_codec, as the runtime would refuse the
    checkpoint); it is created once for both (codec_identity), and not at all with its sha256 given
    (then only the embedded codec's fit is checked, from its file's header, if at hand)."""
    from .. import registry
    from ..backend.tokenizer import DEFAULT_MODEL  # (lazily: sentencepiece)
    from ..paths import file_sha256
    from .loaders import resolve_named

    meta = dict(meta)
    kame = meta.get("kame", cfg.meta.get("kame")) or {}
    try:
        if not isinstance(kame, Mapping):
            check_kame({"kame": kame})  # (the ConfigError saying what it must be)
        kame = dict(kame)
        for key, value in given.items():
            if value is not None:
                kame[key] = str(value) if isinstance(value, PurePath) else dict(value) if isinstance(value, Mapping) else value
        for key in ("codec", "tokenizer"):  # a new one: the old record's sha256 was another file's
            if given[key] is not None and given[f"{key}_sha256"] is None:
                kame.pop(f"{key}_sha256", None)
        tok = kame.get("tokenizer")
        if given["tokenizer"] is not None and tok != DEFAULT_TOKENIZER:
            meta.setdefault("tokenizer_name", tok)  # where moshi's reader (and kame's) looks for it
        check_kame({**meta, "kame": kame})
        if "codec" in kame:  # the runtime creates it from this spec
            registry.check_spec("codec", kame["codec"])
    except ConfigError as exc:
        raise ConfigError(f"save_frontend: {exc}") from None
    check_tokenizer_fits(cfg, {**meta, "kame": kame}, folder)  # (before a codec is built for its sha256)
    if given["codec"] is not None:
        fingerprint = _check_codec(cfg, kame["codec"], folder, "codec_sha256" not in kame)
        if "codec_sha256" in kame:  # (given: kept)
            fingerprint = kame["codec_sha256"]
        if fingerprint is None:
            log.warning("save_frontend: codec %s has no fingerprint (random weights?): config.json records its spec "
                        "only, and kame cannot check that the front-end runs with the same codec", kame["codec"])
        else:
            kame["codec_sha256"] = fingerprint
    if given["tokenizer"] is not None and "tokenizer_sha256" not in kame:
        path = DEFAULT_MODEL if tok == DEFAULT_TOKENIZER else resolve_named(tok, folder, None, None)
        if not path.is_file():
            raise ConfigError(f"save_frontend: tokenizer {tok!r}: no file at {path} to take its sha256 from (a name "
                              f"is resolved as tokenizer_name is, relative to the checkpoint folder): put the file "
                              f"there first, or give tokenizer_sha256")
        kame["tokenizer_sha256"] = file_sha256(path)
    meta["kame"] = {k: kame[k] for k in KAME_KEYS if k in kame}  # (check_kame refused any other key)
    return meta


def stamped(cfg: LMConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """save_frontend's meta with its "kame" object (meta's, else the model's: one it was loaded
    with) stamped with this kame's checkpoint format and version (kame.format, kame.written_by):
    the file is written by this kame, in its format. Unchanged without a kame object (Moshi's
    form: a published checkpoint saved back is not made kame's)."""
    from .. import __version__

    kame = meta.get("kame", cfg.meta.get("kame"))
    if not isinstance(kame, Mapping):
        return meta  # (none; or not an object: config_json's check names it)
    rest = {k: v for k, v in kame.items() if k not in ("format", "written_by")}
    return {**meta, "kame": {"format": KAME_FORMAT, "written_by": __version__, **rest}}


def check_tokenizer_fits(cfg: LMConfig, meta: Mapping[str, Any], folder: Path) -> None:
    """ConfigError if the text tokenizer kame would run a saved front-end with has more pieces than
    its text vocabulary (text_card): the runtime refuses such a checkpoint (kame.runtime.loading's
    check_tokenizer), so save_frontend does not write it. The tokenizer is the one config.json names
    (a file not in the folder yet, or on the hub, is not checked), else kame's default one, unless
    the front-end was trained on Mimi codes (then Moshi's, which the runtime asks for)."""
    from ..backend.tokenizer import DEFAULT_MODEL, TextTokenizer  # (lazily: sentencepiece)
    from .loaders import resolve_named

    name = named_tokenizer(meta)
    if name is None and mimi_trained(meta):
        return
    if name is None or name == DEFAULT_TOKENIZER:
        path = DEFAULT_MODEL
    elif name.startswith("hf://"):
        return
    else:
        path = resolve_named(name, folder, None, None)
        if not path.is_file():
            return
    size, card = TextTokenizer(path).vocab_size, cfg.text_card
    if size <= card:
        return
    fix = (f"save a model whose text_card fits the tokenizer (at least {size}; for random weights, e.g. "
           f"load_frontend('random:small', text_card={size})) or name the tokenizer it was trained with "
           f"(tokenizer=FILE, at most {card} pieces)")
    if name is None:
        raise ConfigError(f"save_frontend: the checkpoint names no text tokenizer (tokenizer= or tokenizer_name), so "
                          f"kame would run it with its default one ({path}, {size} pieces), which does not fit the "
                          f"model's text vocabulary (text_card {card}), and refuse to run it: {fix}")
    raise ConfigError(f"save_frontend: tokenizer {name!r} ({path}) has {size} pieces, more than the model's text "
                      f"vocabulary (text_card {card}): the oracle's token ids and the agent's text would not fit, and "
                      f"kame would refuse to run the checkpoint: {fix}")


def _check_codec(cfg: LMConfig, spec: str, folder: Path, fingerprint: bool) -> str | None:
    """kame_record's codec: its fingerprint (codec_identity's; None unless ``fingerprint``), its fit
    to the model checked (ConfigError "save_frontend: ..."). One that cannot be read or created is
    the caller's error (its own type), unless ``fingerprint`` is False (its sha256 given: it need
    not be at hand, and is not checked then)."""
    from .. import registry
    from ..codec.base import fit_codec  # (lazily: torch)
    from ..paths import relative_local

    try:
        found, layout = codec_identity(spec, fingerprint, folder)
    except KameError as exc:  # (a missing file, ...): the error's own type
        where = " (a relative path is read from the checkpoint folder, as the runtime reads it: put the file there first)" \
            if relative_local(registry.parse_spec(spec)[1]) is not None else ""
        raise type(exc)(f"save_frontend: codec {spec!r} (created for its sha256; give codec_sha256 to record it "
                        f"without it){where}: {exc}") from exc
    if layout is not None:  # (was: written, then refused by `kame run`: another card, too few codebooks)
        try:
            fit_codec(layout, spec, cfg, str(folder), "save it with the codec it was trained with (codec=...)")
        except ConfigError as exc:
            raise ConfigError(f"save_frontend: {exc}") from None
    return found


def codec_identity(spec: str, fingerprint: bool = True, folder: Path | None = None) -> tuple[str | None, Any]:
    """(fingerprint, layout) of the codec ``spec`` names (kame.codec.base.Codec.fingerprint, and
    what fit_codec reads), with at most one codec created: kame's embedded codec's both from its
    fitted file's header (kame.codec.embedded.layout: checked as loading it checks it, nothing
    built); any other codec's from the codec, created once (its own layout). ``fingerprint``
    False (its sha256 is known): only a layout that is cheap, the embedded codec's header (None if
    it cannot be read: such a codec need not be at hand), and no codec is created. ``folder``: the
    checkpoint folder a relative local path in ``spec`` is read from, as the runtime reads the
    record (kame.runtime.loading.recorded_codec), not the working directory: an embedded codec's
    fit named by a plain file name (embedded:NAME, the file kame train carries) only there; any
    other relative path there if it is there, else as given."""
    from .. import registry
    from ..codec.embedded import model as embedded
    from ..paths import relative_local

    try:
        factory, arg = registry.resolve("codec", spec)
        rel = relative_local(arg) if folder is not None else None
        place = Path(folder) / rel if rel is not None else None
        if factory is embedded.create:  # (not a plugin registered in its place)
            own = place is not None and (len(rel.parts) == 1 or place.exists())
            layout = embedded.layout(place if own else arg)
            return layout.fingerprint, layout
        if place is not None and place.exists():
            spec = f"{registry.parse_spec(spec)[0]}:{place.absolute()}"
    except KameError:
        if fingerprint:
            raise
        return None, None
    if not fingerprint:
        return None, None
    codec = registry.create("codec", spec)
    return getattr(codec, "fingerprint", None), codec
