"""Loading the config's models: the checks a front-end checkpoint passes before its weights are
read (its codec, its tokenizer, their sha256), and load errors that name the config key to change.

    with config_keys(cfg):                       # a load error, tagged below, names its key:
        with config_key("codec.spec"):           #   "codec.spec = 'mimi:/x' (from kame.toml): codec ..."
            codec = registry.create("codec", cfg.codec.spec)

A ConfigError, CheckpointError or NotAvailableError (or a component's could-not-be-created
KameError) raised inside ``config_key(KEY)`` is tagged with KEY (the innermost tag wins);
``config_keys(cfg)`` leads its message with the key, its value and the config file that set it
(kame.config.key_source), and keeps the rest of the message as it was. A PluginError is left
as it is (the plugin's fault, not the key's).
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager

from ..config import KameConfig, key_source
from ..errors import CheckpointError, ConfigError, KameError, NotAvailableError, PluginError
from ..paths import form_folder, local_path, relative_local

log = logging.getLogger("kame.runtime.frontend")  # (these checks' warnings are the front-end's)


def _keyable(exc: BaseException) -> bool:
    return (isinstance(exc, (ConfigError, CheckpointError, NotAvailableError)) or type(exc) is KameError) \
        and not isinstance(exc, PluginError)


@contextmanager
def config_key(key: str):
    """Tag a load error raised inside with the config key ``key`` ("codec.spec"), unless an inner
    config_key tagged it already."""
    try:
        yield
    except BaseException as exc:
        if _keyable(exc) and getattr(exc, "config_key", None) is None:
            exc.config_key = key
        raise


@contextmanager
def config_keys(cfg: KameConfig):
    """Lead the message of a load error tagged by config_key with its key, the key's value in
    ``cfg`` and the file that set it (if a file did): the key to change, not only the component."""
    try:
        yield
    except BaseException as exc:
        key = getattr(exc, "config_key", None)
        if key is not None and _keyable(exc) and not getattr(exc, "config_key_named", False):
            _name_key(exc, key, cfg)
        raise


def _name_key(exc: BaseException, key: str, cfg: KameConfig) -> None:
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    source = key_source(cfg, key)
    where = f" (from {source})" if source else ""
    said = _message(exc)
    if re.match(rf"{re.escape(key)}(?![\w.])", said):  # it names the key already (and the value): add where
        if not source:
            return
        said = f"{key}{where}{said[len(key):]}"
    else:
        said = f"{key} = {value!r}{where}: {said}"
    exc.args = (said,)
    if isinstance(exc, ImportError):  # (its str() is its msg)
        exc.msg = said
    exc.config_key_named = True


def _message(exc: BaseException) -> str:
    """The error's own text: str() of an error with one argument; the arguments of one raised with
    several, joined by "; " (str() gives their tuple: "('a', 'b')"); its type's name if it has none."""
    if len(exc.args) > 1 and not (isinstance(exc, ImportError) and exc.msg is not None):
        return "; ".join(str(a) for a in exc.args)
    return str(exc) or type(exc).__name__


def check_codec(finfo, spec: str, codec, codec_spec: str) -> None:
    """ConfigError if a named codec cannot be the checkpoint's: one whose config.json records its
    codec (kame.codec) hears and speaks only that kind of codec's codes, one trained on Mimi codes
    only Mimi's."""
    from .. import registry

    recorded = finfo.kame.get("codec")
    if codec is not None and recorded and registry.parse_spec(codec_spec)[0] != registry.parse_spec(recorded)[0]:
        raise ConfigError(f"codec.spec {codec_spec!r} does not fit the front-end {spec!r}: it was trained with the "
                          f"codec {recorded!r} (its config.json kame.codec), and another codec's codes stand for other "
                          f"sounds, so the front-end would hear noise and answer with noise. Use codec.spec=auto "
                          f"(that codec) or name that codec")
    mimi_why = _mimi_trained(finfo)
    if codec is not None and mimi_why and registry.parse_spec(codec_spec)[0] != "mimi":
        raise ConfigError(f"codec.spec {codec_spec!r} does not fit the front-end {spec!r}: it was trained on "
                          f"Mimi codes ({mimi_why}), and this codec's codes stand for other sounds, so the "
                          f"front-end would hear noise and answer with noise. Use codec.spec=auto (its own "
                          f"Mimi) or mimi:PATH")


def check_tokenizer(finfo, spec: str, form) -> None:
    """CheckpointError if the checkpoint's text tokenizer is missing (kame's default vocabulary is
    another one: the oracle's ids and the agent's text would be wrong), does not fit its text
    vocabulary (kame's default one too: the oracle's ids are folded into the vocabulary of random
    weights only), or is not the file its config.json records the sha256 of."""
    from ..backend.tokenizer import DEFAULT_MODEL, TextTokenizer
    from ..model.meta import tokenizer_name

    text_card, meta = finfo.config.text_card, finfo.config.meta
    named_key = "tokenizer_name" if "tokenizer_name" in meta else "kame.tokenizer" if "tokenizer" in finfo.kame else None
    if finfo.tokenizer is not None or not (named_key or _mimi_trained(finfo)):
        # its own, or kame's default for kame's own front-ends that name none
        path = finfo.tokenizer or DEFAULT_MODEL
        size = TextTokenizer(path).vocab_size
        if size > text_card and finfo.tokenizer is not None:  # its oracle and text ids would not fit the model
            check = (f"check {named_key or 'tokenizer_name'} in its config.json" if not _finetune(finfo) else
                     f"put the tokenizer it was trained with there, as {finfo.tokenizer.name}")
            raise CheckpointError(f"front-end {spec!r}: its tokenizer {finfo.tokenizer} has {size} pieces, more "
                                  f"than its text vocabulary (text_card {text_card}): the two do not belong "
                                  f"together ({check})")
        if size > text_card:
            raise CheckpointError(f"front-end {spec!r}: its config.json names no text tokenizer (tokenizer_name or "
                                  f"kame.tokenizer), so kame's default one would be used ({path}, {size} pieces), "
                                  f"which does not fit its text vocabulary (text_card {text_card}): the oracle's "
                                  f"token ids and the agent's text must come from the vocabulary it was trained with. "
                                  f"Name it in its config.json: tokenizer_name (the file), or save it with "
                                  f"save_frontend(..., tokenizer=...) (kame.tokenizer)")
        _check_tokenizer_sha(path, finfo, spec)
    else:
        # a config.json without the key: kame's default vocabulary only for kame's own front-ends
        # (not trained on Mimi codes); Moshi/KAME (and moshi's loader) mean Moshi's tokenizer
        name = tokenizer_name(meta)
        if _finetune(finfo):  # kame_finetune's layout names no companion file
            raise CheckpointError(f"front-end {spec!r}: its text tokenizer was not found: looked for "
                                  f"{_where(name, form, finfo)}. I{_finetune(finfo)[1:]}, which names no tokenizer: "
                                  f"kame takes the one it was trained with from its folder, by Moshi's default name "
                                  f"{name!r}. Copy that file there (Moshi's: {_MOSHI_REPO}/{name}; a model trained "
                                  f"with another tokenizer needs that one, under this name), or give the folder "
                                  f"a config.json ({finfo.layout}'s keys plus tokenizer_name, docs/frontend.md)")
        if named_key:
            named = f"config.json {named_key}"
        elif getattr(finfo, "assumed", ""):  # (the loader's word: a plugin's FrontendInfo may have no raw_config)
            named = "the Moshi default, the repo has no config.json"
        else:
            named = (f"the Moshi default: its config.json names no tokenizer_name, and it was trained on Mimi "
                     f"codes ({_mimi_trained(finfo)})")
        raise CheckpointError(f"front-end {spec!r}: its text tokenizer {name!r} ({named}) was not found: looked for "
                              f"{_where(name, form, finfo)}. The oracle's token ids and the agent's text must come "
                              f"from the vocabulary the front-end was trained with; put the file there or "
                              f"{'fix ' + named_key if named_key else 'set tokenizer_name'} in its config.json")


def _check_tokenizer_sha(path, finfo, spec: str) -> None:
    """CheckpointError if its config.json records the sha256 of the tokenizer it was trained with
    (kame.tokenizer_sha256) and ``path`` (the one it would run with) has another."""
    from ..paths import file_sha256

    want = finfo.kame.get("tokenizer_sha256")
    if want is None or (got := file_sha256(path)) == want:
        return
    raise CheckpointError(f"front-end {spec!r} was trained with a text tokenizer of sha256 {want} (its config.json "
                          f"kame.tokenizer_sha256), but {path} has sha256 {got}: another vocabulary, so the oracle's "
                          f"token ids and the agent's text would mean other words. Use the tokenizer file it was "
                          f"trained with (tokenizer_name / kame.tokenizer in its config.json), or retrain the "
                          f"tokenizer with the same command and corpus (python -m kame.backend.tokenizer train; "
                          f"its sha256 must be {want})")


def _mimi_trained(finfo) -> str | None:
    """Why a loaded checkpoint's audio codes are Mimi's (kame.model.meta.mimi_trained's rule;
    kame_finetune trains on Moshi's Mimi codes)."""
    from ..model.meta import mimi_trained

    if _finetune(finfo):
        return f"{_finetune(finfo)}: kame_finetune trains on Moshi's Mimi codes"
    return mimi_trained(finfo.config.meta, has_config=bool(finfo.raw_config))


_MOSHI_REPO = "hf://kyutai/moshiko-pytorch-bf16"  # Moshi's Mimi and tokenizer, which kame_finetune starts from


def _finetune(finfo) -> str:
    """What a checkpoint in kame_finetune's cleaned layout is, for errors ("": another layout)."""
    layout = getattr(finfo, "layout", "config.json")
    if layout == "config.json":
        return ""
    return f"it is a kame_finetune checkpoint ({layout} and its weights, no config.json)"


def _where(name: str, form, finfo) -> str:
    """Where the loader looked for a companion file named ``name`` by config.json (and why it was
    not taken, from ``info.missing_files``); ``form``: check_frontend_spec's, its path None where no
    folder is known (a plugin's front-end: the name alone)."""
    from ..model.loaders import local_name

    kind, repo, path = form
    local = local_name(name)
    if name.startswith("hf://"):
        where = name
    elif local is not None:
        where = str(local)
    elif kind == "hf":
        where = f"hf://{repo}/{name}"
    elif path is None:  # no folder known (a plugin's front-end that says none): the name alone
        where = name
    else:
        where = str(form_folder(form) / name)
    why = [m[len(name):].strip(" ()") for m in finfo.missing_files if m.startswith(name + " (")]
    return where + (f" ({_HUB_WHY.get(why[0], why[0])})" if why else "")


_HUB_WHY = {"HubUnreachable": "not in the local Hugging Face cache, and the hub cannot be asked",
            "HubFileNotFound": "the repo has no such file"}


def recorded_codec(codec_spec: str, spec: str, form=None, finfo=None):
    """codec.spec "auto" for a checkpoint whose config.json records its codec (kame.codec): that
    codec -> (codec, the spec it was created from). A relative local path in the spec is where the
    checkpoint is: kame train's record of the Mimi it carries (mimi:NAME, NAME its mimi_name) is
    the checkpoint's own Mimi (``finfo.mimi``, its folder's or its repo's), never the working
    directory's; so is the embedded codec's fit it carries (embedded:NAME, NAME a plain file name);
    another relative path (an older record) the checkpoint folder's or repo's first (made
    absolute), then as given (relative to where it was trained). A recorded
    Mimi that cannot be loaded (moved, deleted, another machine's), or that loads but is not of the
    recorded kame.codec_sha256, gives way to the checkpoint's own Mimi (mimi_name) when that
    file's sha256 is the recorded one. So does the shipped embedded fit (a plain ``embedded``)
    when this kame ships another one than the recorded sha256: to the copy kame train put in the
    checkpoint (CARRIED_FITS) when that is of the recorded sha256."""
    from .. import registry

    scheme, arg = registry.parse_spec(codec_spec)
    own, want = getattr(finfo, "mimi", None), (finfo.kame.get("codec_sha256") if finfo else None)
    failed, why = None, ""
    for cspec in _recorded_places(scheme, arg, codec_spec, form, finfo):
        try:
            codec = registry.create("codec", cspec)
        except (ConfigError, CheckpointError, NotAvailableError) as exc:
            if failed is None:  # (the first place's error: where it should be)
                failed, codec_spec = exc, cspec
            continue
        got = getattr(codec, "fingerprint", None)
        if scheme == "embedded" and not arg and want and got not in (None, want):
            # another kame's shipped fit: the one it was trained with, if it carries that
            carried = _carried_fit(form, want)
            if carried is not None:
                log.info("front-end %s was trained with the embedded codec fit of sha256 %s (its config.json "
                         "kame.codec_sha256), and this kame ships another (sha256 %s): running the copy its folder "
                         "carries, %s", spec, want, got, carried[1].partition(":")[2])
                return carried
            return codec, cspec  # (check_fingerprint names both)
        if scheme != "mimi" or not want or got in (None, want) or own is None or _names(cspec, own):
            return codec, cspec
        try:  # another Mimi where the record points: the checkpoint's own, if that is the recorded one
            mine = _own_mimi(own)
        except KameError:
            return codec, cspec  # (check_fingerprint names it)
        if mine[0].fingerprint != want:
            return codec, cspec
        log.info("front-end %s: its recorded codec %r has sha256 %s, not the recorded kame.codec_sha256: running "
                 "its own Mimi %s, of that sha256", spec, cspec, got, own)
        return mine
    exc = failed or CheckpointError(f"{codec_spec!r} is not where the checkpoint is "
                                    f"({'its mimi_name' if scheme == 'mimi' else 'its folder or repo'})")
    if scheme == "mimi" and own is not None and want:
        try:
            codec, own_spec = _own_mimi(own)
        except KameError as own_exc:
            why = f"; its own Mimi {own} cannot be loaded either: {own_exc}"
        else:
            if codec.fingerprint == want:
                log.info("front-end %s: its recorded codec %r cannot be loaded (%s): running its own Mimi %s, "
                         "of the recorded sha256", spec, codec_spec, exc, own)
                return codec, own_spec
            why = (f"; its own Mimi {own} (mimi_name) has sha256 {codec.fingerprint}, not the recorded "
                   f"kame.codec_sha256 {want}")
    elif scheme == "mimi" and finfo is not None and own is None and finfo.config.meta.get("mimi_name"):
        named = finfo.config.meta["mimi_name"]
        why = (f"; nor is its own Mimi there (mimi_name {named!r}: looked for {_where(named, form, finfo)}): "
               f"put the Mimi it was trained with there (sha256 {want}), or set codec.spec=mimi:PATH"
               if want and form is not None else "")
    raise type(exc)(f"codec.spec 'auto' for the front-end {spec!r}: the codec it was trained with, {codec_spec!r} "
                    f"(its config.json kame.codec), cannot be loaded: {exc}{why}") from exc


# the copy of the shipped embedded fit kame train puts in a checkpoint it records as `embedded`
# (kame.train.saving.portable_codec: the shipped file's name, or embedded-SHA8 when that is taken)
CARRIED_FITS = ("embedded_codec.safetensors", "embedded-{sha8}.safetensors")


def _carried_fit(form, want: str):
    """The copy of the shipped embedded fit in the checkpoint's folder or repo (CARRIED_FITS) whose
    sha256 is ``want`` -> (codec, its spec); None when it carries none, or another, or one that
    cannot be loaded."""
    from .. import registry

    for name in (n.format(sha8=want[:8]) for n in CARRIED_FITS):
        path = _checkpoint_file(form, name)
        if path is None or not path.is_file():
            continue
        cspec = f"embedded:{path.absolute()}"
        try:
            codec = registry.create("codec", cspec)
        except (ConfigError, CheckpointError, NotAvailableError):
            continue
        if getattr(codec, "fingerprint", None) == want:
            return codec, cspec
    return None


def _recorded_places(scheme: str, arg: str | None, codec_spec: str, form, finfo) -> list[str]:
    """The specs recorded_codec tries for a recorded ``codec_spec``, in order (see there)."""
    rel = relative_local(arg)
    if rel is None:
        return [codec_spec]
    named = finfo.config.meta.get("mimi_name") if finfo is not None else None
    carried = scheme == "mimi" and isinstance(named, str) and rel == local_path(named)  # kame train's record
    own = getattr(finfo, "mimi", None)
    if carried:  # the checkpoint's own Mimi, where its mimi_name is looked for; not there: nowhere else
        return [f"mimi:{own.absolute()}"] if own is not None else []
    folder, got = form_folder(form), _checkpoint_file(form, rel)
    places = [f"{scheme}:{got.absolute()}"] if got is not None else []
    if scheme == "embedded" and len(rel.parts) == 1 and form is not None:
        # kame train's record of the fit it carries (embedded:NAME): the checkpoint's own, as its
        # Mimi; not there: nowhere else (a fit of that name in the working directory is another)
        return places or ([f"{scheme}:{(folder / rel).absolute()}"] if folder is not None else [])
    return places + [codec_spec]  # then as given: an older record, relative to where it was trained


def _checkpoint_file(form, rel):
    """The file ``rel`` (a relative path) of the front-end checkpoint of ``form``: in its folder,
    or (an hf repo) its copy in the Hugging Face cache, fetched if need be (the embedded codec reads
    local files only); None when it is not there."""
    from pathlib import PurePath

    folder = form_folder(form)
    if folder is not None:
        return folder / rel if (folder / rel).exists() else None
    if form is not None and form[0] == "hf":
        return _repo_file(form[1], PurePath(rel).as_posix())
    return None


def _repo_file(repo: str, name: str):
    """The local file (in the Hugging Face cache) of the file ``name`` of the hf repo ``repo``
    (REPO[@REV]), None when it has none or it cannot be had."""
    from ..hub import split_hf
    from ..model.loaders import resolve_named

    try:
        repo_id, rev, _ = split_hf(f"hf://{repo}")
        return resolve_named(name, None, repo_id, rev)
    except KameError:
        return None


def _names(cspec: str, path) -> bool:
    """Whether the codec spec ``cspec`` (SCHEME:PATH) names the file ``path``."""
    import os

    given = local_path(cspec.partition(":")[2])
    try:
        return given.is_file() and os.path.samefile(given, path)
    except OSError:
        return False


def _own_mimi(own):
    """The checkpoint's own Mimi file ``own`` -> (codec, its spec)."""
    from .. import registry

    own_spec = f"mimi:{own.absolute()}"
    return registry.create("codec", own_spec), own_spec


def check_fingerprint(codec, codec_spec: str, finfo, spec: str) -> None:
    """CheckpointError if its config.json records the sha256 of the codec it was trained with
    (kame.codec_sha256) and ``codec``'s fingerprint differs (another fit or file: its codes stand
    for other sounds); a codec without a fingerprint (None: unknown) cannot be checked: a warning."""
    from .. import registry

    want = finfo.kame.get("codec_sha256")
    if want is None:
        return
    got = getattr(codec, "fingerprint", None)
    if got is None:
        log.warning("front-end %s was trained with a codec of sha256 %s (its config.json kame.codec_sha256); codec %s "
                    "has no fingerprint (random weights, or a codec that sets none), so kame cannot check that it "
                    "is the same", spec, want, codec_spec)
        return
    if got == want:
        return
    scheme = registry.parse_spec(codec_spec)[0]
    refit = (f", or refit it with the seed and command it was fitted with (kame codec fit --seed S ... -o FILE, "
             f"docs/codecs.md) until its sha256 is {want}" if scheme == "embedded" else "")
    trained = f" {finfo.kame['codec']!r}" if finfo.kame.get("codec") else ""
    raise CheckpointError(f"front-end {spec!r} was trained with the codec{trained} of sha256 {want} (its config.json "
                          f"kame.codec_sha256), but codec {codec_spec!r} has sha256 {got}: another fit or file, whose "
                          f"codes stand for other sounds, so the front-end would hear noise. Use the codec file it was "
                          f"trained with (codec.spec={scheme}:PATH){refit}")


def auto_codec(codec_spec: str, spec: str, form, finfo):
    """codec.spec "auto" for a checkpoint: the Mimi its config.json names, else the published one:
    for a missing mimi_name only if it is Moshi's file name (a published repo without its own copy;
    said in the log), else a CheckpointError (was: silently the published one, as --codec
    mimi:FOLDER refuses: a front-end fine-tuned with its own Mimi would hear other codes)."""
    from .. import registry
    from ..model.loaders import MIMI_NAME

    named = finfo.config.meta.get("mimi_name")
    stand_in = finfo.mimi is None and bool(named) and codec_spec == "mimi"  # (the published Mimi for a missing one)
    if stand_in and named.rstrip("/").rsplit("/", 1)[-1] != MIMI_NAME:
        raise CheckpointError(
            f"codec.spec 'auto' for the front-end {spec!r}: its config.json mimi_name {named!r} was not found (looked "
            f"for {_where(named, form, finfo)}), and that is not Moshi's published Mimi ({MIMI_NAME}), so kame does "
            f"not run the published one in its place (a front-end trained with its own Mimi would hear other codes): "
            f"add the file, fix mimi_name, or set codec.spec=mimi:PATH (the Mimi it was trained with)")
    try:
        codec = registry.create("codec", codec_spec)
    except CheckpointError as exc:
        if finfo.mimi is not None:
            raise
        why = (f"its config.json mimi_name {named!r} was not found (looked for {_where(named, form, finfo)})"
               if named else "its config.json names no mimi_name")
        if _finetune(finfo):
            why = (f"{_finetune(finfo)}, which names no Mimi, and Moshi's Mimi is not in its folder (looked for "
                   f"{_where(MIMI_NAME, form, finfo)}; copy the Mimi it was trained with there, Moshi's: "
                   f"{_MOSHI_REPO}/{MIMI_NAME})")
        # a front-end trained on Mimi codes needs Mimi: another codec's codes stand for other sounds
        hint = "mimi:PATH, the Mimi it was trained with" if _mimi_trained(finfo) else "mimi:PATH or embedded"
        raise CheckpointError(f"codec.spec 'auto' for the front-end {spec!r}: {why}, and the published Mimi is not "
                              f"available either ({exc}); set codec.spec ({hint})") from exc
    if stand_in:
        log.info("front-end %s: its Mimi %s (mimi_name) was not found (looked for %s); running with the published "
                 "one of that name, %s/%s", spec, named, _where(named, form, finfo), _MOSHI_REPO, MIMI_NAME)
    return codec
