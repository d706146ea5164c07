"""One small registry of pluggable components, chosen by short spec strings.

A spec is ``scheme`` or ``scheme:arg`` or ``scheme://arg``:
    "pocketsphinx"          -> kind "stt", scheme "pocketsphinx", arg None
    "openai:gpt-4.1"        -> kind "llm", scheme "openai",       arg "gpt-4.1"
    "hf://SakanaAI/kame"    -> kind "frontend", scheme "hf",      arg "SakanaAI/kame"
    "/path/to/folder"       -> scheme "path", arg the path (anything starting with / . or ~)
A component that takes options reads them after a ';' (``split_options``):
    "openai:gpt-4o-transcribe;response_format=json,language=de"

Factories are registered as dotted strings ("module:callable") so that nothing heavy is
imported until a component is created; a missing optional dependency becomes a
kame.errors.MissingPackageError naming the extra to install (a plugin's: the package it needs), and
one installed but failing to import a NotAvailableError with its own message (kame.failures.not_installed).

    from kame import registry
    llm = registry.create("llm", "openai:gpt-4.1", base_url=...)

Your own components: a module that calls ``register`` (a target "module:callable" or the
callable itself) is loaded as a *plugin*, so that its schemes work in configs and on the
command line (``--set backend.llm=mine``), from any of
    kame --plugin mycomps run ...            # a module on the Python path, or a file: ./mycomps.py
    KAME_PLUGINS=mycomps,./other.py kame serve
    [project.entry-points."kame.components"] mycomps = "mycomps"   # in an installed package ("mycomps:setup":
                                                                   # imported, then setup() called)
A factory that raises, or returns an object without the kind's methods and numbers
(REQUIRED_METHODS, REQUIRED_ATTRIBUTES: a codec's are all of kame.codec.base.Codec), is a KameError
naming the spec and where it failed (or what it lacks); one kame cannot call as factory(arg,
**options), a ConfigError naming it and the signature it needs. Replacing a scheme: ``register``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, KameError, MissingPackageError, PluginError, install_hint
from .failures import broken_import, creation_failed, defined_at, kames_own, not_installed, plain_return
from .paths import expand_user

PLUGINS_ENV = "KAME_PLUGINS"  # comma-separated plugin modules or .py files
ENTRY_POINT_GROUP = "kame.components"  # installed packages' plugin modules
KINDS = ("codec", "frontend", "stt", "llm", "tts")  # the kinds of component kame looks up
# the methods a created component must have, by kind (the interfaces in kame.backend / kame.codec)
REQUIRED_METHODS = {"stt": ("stream",), "llm": ("stream_chat",), "tts": ("synthesize",),
                    "codec": ("encode", "decode", "stream", "set_num_codebooks")}
# ... and the numbers it must have (a codec's: its token layout, kame.codec.base.Codec)
REQUIRED_ATTRIBUTES = {"codec": ("sample_rate", "frame_rate", "frame_size", "num_codebooks", "cardinality")}
# the methods kame reads with ``async for`` (a plain generator or a coroutine function is a mistake
# found at creation, not by the first request)
ASYNC_ITERATORS = {"stt": "stream", "llm": "stream_chat", "tts": "synthesize"}
# where a kind's whole interface is, for the error of a component that lacks part of it
_INTERFACE = {"codec": "subclass kame.codec.base.Codec, which has them all: docs/codecs.md"}
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# schemes written only as "scheme://ARG": kame.config reads a front-end's file://PATH, and refuses
# file:PATH (not a path to it: kame.paths.local_path), so the registry refuses it too
_SLASHES_ONLY = {("frontend", "file")}


@dataclass(frozen=True)
class Entry:
    target: str | Callable  # "package.module:callable" (imported when used) or the callable; called as f(arg, **kwargs)
    extra: str | None  # pip extra providing its dependencies, e.g. "stt"
    help: str = ""
    needs: str | None = None  # what the part after "scheme:" names when the spec must have one, e.g. "MODEL"
    needs_env: str | None = None  # ... unless this environment variable gives it (the factory reads it)
    # takes NAME=VALUE options after ';' (None: a plugin's, its factory decides; a "module:callable" or
    # callable: takes them, and check_spec calls it as f(arg, where) to check them)
    options: bool | str | Callable | None = None
    # the plugin whose loading registered it (its file, else its name; None: outside plugin loading)
    origin: str | None = None


_ENTRIES: dict[str, dict[str, Entry]] = {}
_BUILTIN: set[tuple[str, str]] = set()  # (kind, scheme) of kame's own table (kame/components.py)
_OWN: dict[tuple[str, str], Entry] = {}  # ... and their entries (one replaced by a plugin is no longer there)
_LOADED = _TABLE_LOADED = False  # _load_builtin's (table, plugins) and _load_table's (the table alone) done
_PLUGINS: set[str] = set()  # the plugins loaded (names, files, entry points' values): each once


def register(kind: str, scheme: str, target: str | Callable, *, extra: str | None = None, help: str = "",
             needs: str | None = None, needs_env: str | None = None, options: bool | str | Callable | None = None,
             replace: bool = False) -> None:
    """Register ``scheme`` for component ``kind`` (one of KINDS); ``target``: "module:callable" or a
    callable, called as target(arg, **kwargs); ``needs``: the spec must name this after the scheme
    (``openai:MODEL``), unless env ``needs_env`` is set; ``options``: it takes NAME=VALUE options after
    ';' (False: a spec with them is refused at the config check; None: the factory decides, as a
    plugin's does unless it says; a "module:callable" or a callable: takes them, and the config check
    calls it as f(arg, where) to raise a ConfigError starting with ``where`` for an unknown option or
    a bad value before anything loads). A plugin replaces a built-in scheme, or another plugin's, only
    with ``replace=True``; the same plugin registering it again (its module loaded by file and by
    name) replaces it, as does any register() outside plugin loading (a program's, a notebook cell).
    The registering plugin is the one being loaded (load_plugins, an entry point), not the file of
    the register() call: two plugins registering through a shared helper or decorator clash too."""
    if kind not in KINDS:  # (a typo would register a scheme nobody looks up)
        raise ConfigError(f"register({kind!r}, {scheme!r}, ...): unknown component kind {kind!r}; "
                          f"the kinds are {', '.join(KINDS)}")
    if not (callable(target) or (isinstance(target, str) and _TARGET.match(target))):
        raise ConfigError(f"register({kind!r}, {scheme!r}, {target!r}): the target must be 'module:callable' "
                          "(e.g. 'mycomps:create_llm') or the factory itself")
    if not isinstance(scheme, str) or not re.match(r"^[A-Za-z_][\w.+-]*$", scheme):
        raise ConfigError(f"register({kind!r}, {scheme!r}, ...): a scheme is a name such as 'mine' (letters, "
                          "digits, _ . + -), the part of a spec before ':'")
    _load_table()  # kame's own first: checked against here, and never loaded over a plugin's later
    if (kind, scheme) in _BUILTIN and not replace:
        raise ConfigError(f"register({kind!r}, {scheme!r}, ...): {scheme!r} is kame's built-in {kind} scheme "
                          f"({_ENTRIES[kind][scheme].help or _ENTRIES[kind][scheme].target}); pick another "
                          f"scheme name, or pass replace=True to use yours instead of kame's")
    origin = _LOADING.get()
    old = _ENTRIES.get(kind, {}).get(scheme)
    if old is not None and (kind, scheme) not in _BUILTIN and not replace and None not in (old.origin, origin) \
            and old.origin != origin:
        raise ConfigError(f"register({kind!r}, {scheme!r}, ...): {scheme!r} is already a {kind} scheme, registered "
                          f"by the plugin {old.origin} ({old.help or _target_name(old.target)}); pick another "
                          f"scheme name, or pass replace=True to use yours instead")
    _ENTRIES.setdefault(kind, {})[scheme] = Entry(target, extra, help, needs, needs_env, options, origin)


# the plugin being loaded (load_plugins, _load_entry_point): the origin of the schemes it registers
_LOADING: contextvars.ContextVar[str | None] = contextvars.ContextVar("kame_plugin_loading", default=None)


@contextmanager
def _loading(name: str, is_file: bool = False):
    """register() calls inside are the plugin ``name``'s (a module name, or a .py file's path if
    ``is_file``): its origin is the module's file, so one plugin loaded by name and by path is one."""
    token = _LOADING.set(name)  # (before find_spec: it imports a dotted name's parent packages, which may register)
    try:
        try:
            if is_file:
                _LOADING.set(os.path.realpath(name))
            elif (found := importlib.util.find_spec(name)) is not None and found.origin:
                _LOADING.set(os.path.realpath(found.origin))
        except Exception:  # noqa: BLE001 - (its import, next, says what is wrong with it)
            pass
        yield
    finally:
        _LOADING.reset(token)


def _target_name(target: str | Callable) -> str:
    return target if isinstance(target, str) else _describe(target)


def plugin_scheme(kind: str, spec: Any) -> str | None:
    """The scheme of ``spec`` if a plugin registered it (its own, or a built-in it replaced with
    replace=True), else None: kame's own schemes, and a spec that is no registry spec at all (a
    front-end's relative folder "ck/fe"), are the caller's to read as it always did."""
    _load_builtin()
    if not isinstance(spec, str):
        return None
    try:
        scheme = parse_spec(spec)[0]
    except ConfigError:
        return None
    entry = _ENTRIES.get(kind, {}).get(scheme)
    return scheme if entry is not None and entry is not _OWN.get((kind, scheme)) else None


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split a spec string into (scheme, arg)."""
    if not isinstance(spec, str):
        raise ConfigError(f"a component spec is a string such as 'random:tiny' or 'openai:gpt-4.1', got {spec!r}")
    spec = spec.strip()
    if not spec:
        raise ConfigError("empty component spec")
    if spec[0] in "/.~":
        return "path", spec
    semi = spec.find(";")
    if "://" in spec and spec.index("://") <= spec.find(":") and not 0 < semi < spec.index("://"):
        # "hf://org/repo" -> ("hf", "org/repo"); "mimi:hf://org/repo" keeps its arg whole (below)
        scheme, arg = spec.split("://", 1)
        return scheme, arg or None
    if semi > 0 and (":" not in spec or semi < spec.index(":")):
        # "embedded;whisper_interval=1.0": options straight after a scheme without an argument
        return spec[:semi].strip(), spec[semi:]
    if ":" in spec:
        scheme, arg = spec.split(":", 1)
        return scheme, arg or None
    return spec, None


def split_options(text: str | None, where: str, allowed: tuple[str, ...] | None = None,
                  example: str = "") -> tuple[str, dict[str, str]]:
    """ "HEAD;NAME=VALUE,NAME=VALUE" -> (HEAD, {NAME: VALUE}), values as text. ConfigError
    (starting with ``where``) for a malformed or repeated option, or one not in ``allowed``."""
    head, _, opts = (text or "").partition(";")
    options: dict[str, str] = {}
    for kv in filter(str.strip, opts.split(",")):
        name, eq, value = kv.partition("=")
        name = name.strip()
        if not eq or not name or name in options or (allowed is not None and name not in allowed):
            why = (f"{kv.strip()!r} is not NAME=VALUE" if not eq or not name else
                   f"{name!r} given twice" if name in options else f"unknown option {name!r}")
            names = f", NAME one of {', '.join(allowed)}" if allowed is not None else ""
            raise ConfigError(f"{where}: {why}; options after ';' are NAME=VALUE, comma-separated{names}"
                              + (f" (e.g. {example})" if example else ""))
        options[name] = value.strip()
    return head.strip(), options


def spec_kwargs(kind: str, scheme: str, arg: str | None, kwargs: dict, allowed: tuple[str, ...],
                example: str = "") -> tuple[str | None, dict]:
    """A factory's spec argument "HEAD;NAME=VALUE,..." -> (HEAD or None, the constructor's keyword
    arguments: ``kwargs`` plus the spec's options, values as text for the constructor to check).
    ConfigError for an option not in ``allowed``, a malformed or repeated one, or (an
    OptionGivenTwiceError) one also in ``kwargs``."""
    sep = "" if not arg or arg.startswith(";") else ":"
    where = f"{kind} spec '{scheme}{sep}{arg or ''}'"
    head, options = split_options(arg, where, allowed, example)
    if twice := sorted(options.keys() & kwargs.keys()):
        raise OptionGivenTwiceError(f"{where}: option {twice[0]!r} is also given as a keyword argument", twice[0])
    return head or None, {**kwargs, **options}


def schemes(kind: str) -> dict[str, Entry]:
    _load_builtin()
    return dict(_ENTRIES.get(kind, {}))


def check_spec(kind: str, spec: str, also: tuple[str, ...] = ()) -> tuple[Entry, str | None]:
    """(entry, arg) of a spec whose scheme is registered for ``kind``, else ConfigError (``also``:
    other values the caller takes, e.g. "none", named beside the schemes where the error is which
    spec to give: an unknown scheme or no spec at all). Imports nothing (but a scheme's light
    check of its options, Entry.options), so config checks can call it before any component loads."""
    _load_builtin()
    if kind not in KINDS:
        raise ConfigError(f"unknown component kind {kind!r}; the kinds are {', '.join(KINDS)}")
    alt = "".join(f", or {a!r}" for a in also)
    try:
        scheme, arg = parse_spec(spec)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{alt}") from None
    entry = _ENTRIES.get(kind, {}).get(scheme)
    if entry is None:
        raise ConfigError(
            f"unknown {kind} spec {spec!r}: scheme {scheme!r} is not one of {sorted(_ENTRIES.get(kind, {}))}{alt}"
            + (_path_hint(kind, spec) or _scheme_hint(kind, scheme, spec))
        )
    if (kind, scheme) in _SLASHES_ONLY and not spec.strip().startswith(f"{scheme}://"):
        path = arg or "PATH"
        plain = path if path[0] in "/.~" else f"./{path}"
        raise ConfigError(f"{kind} spec {spec!r}: write {scheme}://{path} (or {plain}, path:{path}); "
                          f"'{scheme}:' without '//' is not a path")
    # (the scheme is right from here: ``also``'s values are no answer to what is wrong after it)
    if entry.options is False and (arg or "").partition(";")[2].strip():
        raise ConfigError(f"{kind} spec {spec!r}: {scheme} takes no options after ';'")
    if (check := entry.options) is not None and not isinstance(check, bool):  # (its own check of them)
        if isinstance(check, str):  # "module:callable", imported
            check = _load_target(kind, spec, entry, check)
        check(arg, f"{kind} spec {spec!r}")
    if entry.needs and not (arg or "").partition(";")[0].strip(": ") and not (entry.needs_env and os.environ.get(entry.needs_env)):
        raise ConfigError(f"{kind} spec {spec!r} names no {entry.needs}: give {scheme}:{entry.needs}"
                          + (f" (or set {entry.needs_env})" if entry.needs_env else ""))
    return entry, arg


def check_key_spec(key: str, kind: str, spec: str, also: tuple[str, ...] = (), note: str = ""):
    """check_spec for a config key or option: its error names ``key`` ("backend.llm: unknown llm
    spec ...", then ``note``), by kame.cliargs.naming's one rule (a plugin that cannot be loaded is
    said as it is: a PluginError is not the key's fault, though its check loaded the plugins)."""
    from .cliargs import naming

    with naming(key):
        try:
            return check_spec(kind, spec, also)
        except ConfigError as exc:
            if note and not isinstance(exc, PluginError):
                exc.args = (f"{exc}{note}",)
            raise


def _path_hint(kind: str, spec: str) -> str:
    """For a spec that looks like a path ("ck/mimi-full"; Windows' "C:\\models", no scheme C): how to write it."""
    spec = spec.strip()
    drive = spec[:1].isalpha() and spec[1:3] in (":\\", ":/")
    if not drive and (":" in spec or not ("/" in spec or os.path.exists(spec))):
        return ""
    if "path" in _ENTRIES[kind]:
        return f"; {spec!r} looks like a path: write {'' if drive else f'./{spec} or '}path:{spec}"
    takes = " or ".join(f"{s}:{spec}" for s, e in _ENTRIES[kind].items() if "PATH" in e.help)
    return f"; {spec!r} looks like a path: put a scheme first, e.g. {takes}" if takes else ""


def _scheme_hint(kind: str, scheme: str, spec: str) -> str:
    """For a misspelled or miscased scheme ("Embedded", "embeded"), the one meant; for a bare
    hf:// spec where the kind takes hf:// after a scheme (codecs), how to write it."""
    import difflib

    known = _ENTRIES[kind]
    rest = spec.strip()[len(scheme):]
    if scheme.lower() in known:
        return f"; schemes are lower case: {scheme.lower()}{rest}"
    close = difflib.get_close_matches(scheme.lower(), list(known), n=1, cutoff=0.75)
    if close:
        return f"; did you mean {close[0]}{rest}?"
    takes_hf = [s for s, e in known.items() if "hf://" in e.help]
    if scheme == "hf" and takes_hf:
        return "; put a scheme first, e.g. " + " or ".join(f"{s}:{spec.strip()}" for s in takes_hf)
    return ""


def resolve(kind: str, spec: str) -> tuple[Callable[..., Any], str | None]:
    """Return (factory, arg) for a spec, importing the factory's module lazily."""
    entry, arg = check_spec(kind, spec)
    return (entry.target if callable(entry.target) else _load_target(kind, spec, entry, entry.target)), arg


def _load_target(kind: str, spec: str, entry: Entry, target: str) -> Callable[..., Any]:
    """The callable ``target`` ("module:callable": ``entry``'s factory or check of options) names,
    imported; a failed import is a ConfigError for a plugin's module, else ``_import_error``'s."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if not entry.extra and module_name.split(".")[0] != "kame":  # a plugin's module, no extra to install
            raise ConfigError(f"{kind} {spec!r}: cannot import {module_name!r}, registered for it: "
                              f"{type(exc).__name__}: {exc}") from exc
        raise _import_error(kind, spec, entry, exc) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{kind} {spec!r}: module {module_name!r} has no {attr!r}, registered for it") from None


def _import_error(kind: str, spec: str, entry: Entry, exc: ImportError) -> KameError:
    """The error of a component whose code (its factory's module, a package the factory imports)
    failed to import: kame's own (a bug, said where), a package not installed, one failing to load."""
    if kames_own(exc) or (not exc.name and isinstance(exc, ModuleNotFoundError)):
        return creation_failed(kind, spec, exc)
    if not_installed(exc):
        return _missing(kind, spec, entry, exc)
    return broken_import(kind, spec, exc)


class _OptionError(ConfigError):
    def __init__(self, message: str, option: str) -> None:  # (``option``: the keyword option it is about)
        super().__init__(message)
        self.option = option


class UnknownOptionError(_OptionError):
    """create() was given a keyword option the component does not take (``option`` names it)."""


class OptionGivenTwiceError(_OptionError):
    """create() was given a keyword option the spec also sets after ';' (``option`` names it)."""


_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def create(kind: str, spec: str, **kwargs: Any) -> Any:
    """Create the component named by ``spec``; extra keyword arguments go to its factory (one it
    does not take is an UnknownOptionError, a ConfigError)."""
    factory, arg = resolve(kind, spec)
    _check_call(kind, spec, factory, arg, kwargs)
    try:
        made = factory(arg, **kwargs)
    except MissingPackageError as exc:  # a component's own "not installed": so only if it is not
        cause = exc.__cause__  # (raised from an ImportError that is not a missing module)
        if isinstance(cause, ImportError) and not not_installed(cause):
            raise broken_import(kind, spec, cause) from cause
        raise
    except (KameError, KeyboardInterrupt, SystemExit):
        raise
    except ImportError as exc:  # a package the factory imports lazily: missing, or failing to load
        raise _import_error(kind, spec, check_spec(kind, spec)[0], exc) from exc
    except TypeError as exc:  # factories pass their options on to the component's constructor
        m = _UNEXPECTED.search(str(exc))
        if m is None or m[1] not in kwargs:
            raise creation_failed(kind, spec, exc) from exc
        raise UnknownOptionError(f"{kind} {spec!r} has no option {m[1]!r}", m[1]) from None
    except Exception as exc:  # noqa: BLE001 - a factory's own bug or failure: named, with where
        raise creation_failed(kind, spec, exc) from exc
    from .backend.options import is_real_number  # (a codec's numbers: numpy's too, not a bool)

    if inspect.isclass(made):  # (its methods unbound: it failed at the first call)
        raise ConfigError(f"{kind} {spec!r}: its factory returned the class {made.__name__}, not an instance "
                          f"of it: return {made.__name__}(...)")
    lacks = [m + "()" for m in REQUIRED_METHODS.get(kind, ()) if not callable(getattr(made, m, None))]
    lacks += [a for a in REQUIRED_ATTRIBUTES.get(kind, ()) if not is_real_number(getattr(made, a, None))]
    if lacks:
        how = f"; {_INTERFACE[kind]}" if kind in _INTERFACE else ""
        raise ConfigError(f"{kind} {spec!r}: its factory returned {type(made).__name__}, which has no "
                          f"{', '.join(lacks)} (a {kind} implements kame's {kind.upper()} interface{how})")
    wrong = async_method_problem(kind, made)
    if wrong:
        name = ASYNC_ITERATORS[kind]
        raise ConfigError(f"{kind} {spec!r}: its {type(made).__name__}.{name}() is {wrong}, but kame reads it "
                          f"with 'async for': write it as an async generator, 'async def {name}(...)' that yields")
    return made


def async_method_problem(kind: str, obj: Any) -> str | None:
    """What is wrong with ``obj``'s method that kame reads with ``async for`` (ASYNC_ITERATORS[kind]):
    "missing", "a plain generator ...", "a coroutine function ...", "a plain function (def) that
    returns str 'hi' (mycomps.py:14) ..." (its source shows it never returns an async iterator:
    kame.failures.plain_return; it is not called), or None (also for other kinds). A plain ``def``
    that returns an async iterator (a wrapper: ``return self._reply(...)``) is right: what it
    returns is checked when kame calls it (kame.backend.llm.base.check_stream)."""
    name = ASYNC_ITERATORS.get(kind)
    if name is None:
        return None
    method = getattr(obj, name, None)
    if not callable(method):
        return "missing"
    if inspect.isgeneratorfunction(method):
        return "a plain generator (def ... yield)"
    if inspect.iscoroutinefunction(method):
        return "a coroutine function (async def without yield)"
    if (gives := plain_return(method)) is not None:
        return f"a plain function (def) that returns {gives}, not an async iterator"
    return None


def _check_call(kind: str, spec: str, factory: Callable, arg: str | None, kwargs: dict[str, Any]) -> None:
    """Bind the call before making it, so that a factory kame cannot call as factory(arg, **kwargs)
    is said as that, naming it (not a TypeError at kame's line), and a keyword it does not take is
    an UnknownOptionError; a TypeError raised inside the factory stays the factory's."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # (no signature to read, e.g. some builtins: the call will tell)
        return
    try:
        sig.bind(arg, **kwargs)
        return
    except TypeError as exc:
        error = exc
    params = sig.parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unknown = [k for k in kwargs if k not in named]
        if unknown and _binds(sig, arg, {k: v for k, v in kwargs.items() if k in named}):
            raise UnknownOptionError(f"{kind} {spec!r} has no option {unknown[0]!r}", unknown[0])
    scheme = parse_spec(spec)[0]
    given = "".join(f", {k}=..." for k in kwargs)
    raise ConfigError(f"{kind} {spec!r}: its factory {_describe(factory)} has the signature {sig}, so it cannot be "
                      f"called as factory(arg{given}): {error}. A factory takes the spec's arg first (the part after "
                      f"'{scheme}:', None without it), then keyword options: def create(arg=None, **kwargs)") from None


def _binds(sig: inspect.Signature, arg: Any, kwargs: dict[str, Any]) -> bool:
    try:
        sig.bind(arg, **kwargs)
    except TypeError:
        return False
    return True


def _describe(factory: Callable) -> str:
    """module:qualname of a factory, and its file and line where they can be found."""
    name = f"{getattr(factory, '__module__', None) or '?'}:{getattr(factory, '__qualname__', None) or repr(factory)}"
    return name + defined_at(factory)


def create_with_optional(kind: str, spec: str, **optional: Any) -> Any:
    """create() passing each ``optional`` keyword (shared context such as the agent's clock, a default
    seed) that the component takes and its spec does not set (``;seed=5`` wins over seed=0)."""
    while True:
        try:
            return create(kind, spec, **optional)
        except (UnknownOptionError, OptionGivenTwiceError) as exc:
            if exc.option not in optional:
                raise
            optional.pop(exc.option)


def _missing(kind: str, spec: str, entry: Entry, exc: ImportError) -> MissingPackageError:
    """kame's extra to install; for a plugin's (or a program's) component, the package it needs."""
    if entry.extra or not plugin_scheme(kind, spec):
        hint = f"run: {install_hint(entry.extra) if entry.extra else 'reinstall kame'}"
    else:
        by = f"the plugin {entry.origin}" if entry.origin else f"its factory {_target_name(entry.target)}"
        hint = f"install the package {by} needs ({exc.name or exc})"
    return MissingPackageError(f"{kind} {spec!r} needs a package that is not installed ({exc.name or exc}); {hint}")


def _load_table() -> None:
    # Built-in entries live in one table (kame/components.py) so they are easy to read.
    global _TABLE_LOADED
    if not _TABLE_LOADED:
        _TABLE_LOADED = True  # (its own register() calls come back here)
        try:
            importlib.import_module("kame.components")
        except BaseException:
            _TABLE_LOADED = False
            raise
        _BUILTIN.update((kind, scheme) for kind, entries in _ENTRIES.items() for scheme in entries)
        for kind, entries in _ENTRIES.items():  # a built-in that does not say it takes options takes none
            for scheme, e in entries.items():
                if e.options is None:
                    entries[scheme] = dataclasses.replace(e, options=False)
                _OWN[(kind, scheme)] = entries[scheme]


def _load_builtin() -> None:
    # The built-in table, then the plugins of installed packages and of KAME_PLUGINS.
    global _LOADED
    if not _LOADED:
        _LOADED = True
        try:
            _load_table()
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                _load_entry_point(ep)
            load_plugins(filter(None, os.environ.get(PLUGINS_ENV, "").split(",")), PLUGINS_ENV)
        except BaseException:
            _LOADED = False  # the next call tries again (and reports the same failure), not skips the rest
            raise


def _load_entry_point(ep) -> None:
    """An installed package's plugin: ``"module"`` (imported: its register() calls) or
    ``"module:function"`` (imported, then function() called to register)."""
    if ep.value in _PLUGINS:
        return
    try:
        with _loading(ep.module):
            hook = ep.load()
            if ep.attr and callable(hook):
                hook()
    except (PluginError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the plugin's failure (a bad register() call: not the config key's)
        raise PluginError(f"plugin {ep.value!r} (entry point {ep.name!r} of {ENTRY_POINT_GROUP!r}) could not be "
                          f"loaded: {_why(exc)}") from exc
    _PLUGINS.add(ep.value)


def _why(exc: Exception) -> str:  # a plugin's failure: a KameError's own message, else the exception's
    return str(exc) if isinstance(exc, KameError) else f"{type(exc).__name__}: {exc}"


def load_plugins(names, source: str = "--plugin") -> None:
    """Import plugin modules (a module name, or a .py file's path) once each; their register()
    calls add schemes. ConfigError naming ``source`` if one cannot be imported."""
    _load_builtin()  # first: a plugin's register() is checked against the built-in schemes
    for name in (n.strip() for n in names):
        if not name or name in _PLUGINS:
            continue
        path = expand_user(name, source)  # (no home directory for a ~: a ConfigError naming the source)
        try:
            if name.endswith(".py") or os.sep in name:
                if not path.is_file():
                    raise FileNotFoundError(f"no file {str(path)!r}")
                spec = importlib.util.spec_from_file_location(f"kame_plugin_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                with _loading(str(path), is_file=True):
                    spec.loader.exec_module(module)
            else:
                with _loading(name):
                    importlib.import_module(name)
        except (PluginError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the plugin's import (a bad register() call), named
            hint = (f" (a module on the Python path, or the file's path: ./{name}.py)"
                    if isinstance(exc, ModuleNotFoundError) and exc.name == name and Path(f"{name}.py").is_file()
                    else "")
            raise PluginError(f"plugin {name!r} (from {source}) could not be loaded: {_why(exc)}{hint}") from exc
        _PLUGINS.add(name)
