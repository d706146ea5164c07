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
kame.errors.MissingPackageError (an ImportError and a NotAvailableError) naming the extra to install.

    from kame import registry
    llm = registry.create("llm", "openai:gpt-4.1", base_url=...)
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError, MissingPackageError


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:callable"; called as callable(arg, **kwargs)
    extra: str | None  # pip extra providing its dependencies, e.g. "stt"
    help: str = ""
    needs: str | None = None  # what the part after "scheme:" names when the spec must have one, e.g. "MODEL"
    needs_env: str | None = None  # ... unless this environment variable gives it (the factory reads it)


_ENTRIES: dict[str, dict[str, Entry]] = {}


def register(kind: str, scheme: str, target: str, *, extra: str | None = None, help: str = "",
             needs: str | None = None, needs_env: str | None = None) -> None:
    """Register ``scheme`` for component ``kind``; ``target`` is "module:callable"; ``needs``: the
    spec must name this after the scheme (``openai:MODEL``), unless env ``needs_env`` is set."""
    _ENTRIES.setdefault(kind, {})[scheme] = Entry(target, extra, help, needs, needs_env)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split a spec string into (scheme, arg)."""
    if not isinstance(spec, str):
        raise ConfigError(f"a component spec is a string such as 'random:tiny' or 'openai:gpt-4.1', got {spec!r}")
    spec = spec.strip()
    if not spec:
        raise ConfigError("empty component spec")
    if spec[0] in "/.~":
        return "path", spec
    if "://" in spec and spec.index("://") <= spec.find(":"):
        # "hf://org/repo" -> ("hf", "org/repo"); "mimi:hf://org/repo" keeps its arg whole (below)
        scheme, arg = spec.split("://", 1)
        return scheme, arg or None
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


def schemes(kind: str) -> dict[str, Entry]:
    _load_builtin()
    return dict(_ENTRIES.get(kind, {}))


def check_spec(kind: str, spec: str) -> tuple[Entry, str | None]:
    """(entry, arg) of a spec whose scheme is registered for ``kind``, else ConfigError. Imports
    nothing, so config checks can call it before any component loads."""
    _load_builtin()
    if kind not in _ENTRIES:
        raise ConfigError(f"unknown component kind {kind!r}; known: {sorted(_ENTRIES)}")
    scheme, arg = parse_spec(spec)
    entry = _ENTRIES[kind].get(scheme)
    if entry is None:
        raise ConfigError(
            f"unknown {kind} spec {spec!r}: scheme {scheme!r} is not one of {sorted(_ENTRIES[kind])}"
        )
    if entry.needs and not (arg or "").strip(": ") and not (entry.needs_env and os.environ.get(entry.needs_env)):
        raise ConfigError(f"{kind} spec {spec!r} names no {entry.needs}: give {scheme}:{entry.needs}"
                          + (f" (or set {entry.needs_env})" if entry.needs_env else ""))
    return entry, arg


def resolve(kind: str, spec: str) -> tuple[Callable[..., Any], str | None]:
    """Return (factory, arg) for a spec, importing the factory's module lazily."""
    entry, arg = check_spec(kind, spec)
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _missing(kind, spec, entry, exc) from exc
    return getattr(module, attr), arg


class UnknownOptionError(ConfigError):
    """create() was given a keyword option the component does not take (``option`` names it)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def create(kind: str, spec: str, **kwargs: Any) -> Any:
    """Create the component named by ``spec``; extra keyword arguments go to its factory (one it
    does not take is an UnknownOptionError, a ConfigError)."""
    factory, arg = resolve(kind, spec)
    try:
        return factory(arg, **kwargs)
    except ModuleNotFoundError as exc:  # a package the factory imports lazily
        if not exc.name or exc.name.split(".")[0] == "kame":
            raise
        raise _missing(kind, spec, check_spec(kind, spec)[0], exc) from exc
    except TypeError as exc:  # factories pass their options on to the component's constructor
        m = _UNEXPECTED.search(str(exc))
        if m is None or m[1] not in kwargs:
            raise
        raise UnknownOptionError(f"{kind} {spec!r} has no option {m[1]!r}", m[1]) from None


def create_with_optional(kind: str, spec: str, **optional: Any) -> Any:
    """create() passing each of the ``optional`` keyword arguments (shared context such as the
    agent's clock) that the component takes, and leaving out those it does not."""
    while True:
        try:
            return create(kind, spec, **optional)
        except UnknownOptionError as exc:
            if exc.option not in optional:
                raise
            optional.pop(exc.option)


def _missing(kind: str, spec: str, entry: Entry, exc: ImportError) -> MissingPackageError:
    hint = f"pip install 'kame-tandem[{entry.extra}]'" if entry.extra else "reinstall kame"
    return MissingPackageError(f"{kind} {spec!r} needs a package that is not installed ({exc.name or exc}); run: {hint}")


_LOADED = False


def _load_builtin() -> None:
    # Built-in entries live in one table (kame/components.py) so they are easy to read.
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module("kame.components")
