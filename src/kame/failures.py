"""Why a component could not be made, as kame.registry says it: a factory that raised
(``raised_at``: where), and a failed import, told apart as a package not installed
(``not_installed``) or an installed one failing to load (``import_failed``: its own message).
Back-ends that import their packages lazily use these too (kame.backend.stt.whisper,
kame.backend.llm.base). ``plain_return``: a plain ``def`` method whose source shows it never
returns an async iterator (kame.registry.async_method_problem).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import traceback
from pathlib import Path

from .errors import KameError, MissingPackageError, NotAvailableError


def raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised, its innermost frame: " (at mycomps.py:12)", "" without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def defined_at(func) -> str:
    """Where ``func`` (a function, a method, a class) is defined: " (mycomps.py:8)", "" if that cannot be found."""
    try:
        return f" ({Path(inspect.getsourcefile(func)).name}:{inspect.getsourcelines(func)[1]})"
    except (TypeError, OSError):
        return ""


def creation_failed(kind: str, spec: str, exc: BaseException) -> KameError:
    """A factory's unexpected exception, as one line naming the spec and where it was raised."""
    return KameError(f"{kind} {spec!r} could not be created: {type(exc).__name__}: {exc}{raised_at(exc)}")


def not_installed(exc: ImportError) -> bool:
    """Whether a failed import means a package is not installed: a ModuleNotFoundError (the package,
    or one of its own dependencies that pip would install), or a MissingPackageError (said after its
    own check). Any other ImportError is an installed package that failed to load (a shared library
    unmappable under a memory limit: "failed to map segment from shared object"; a broken install:
    "cannot import name"), reported with its own message (``import_failed``)."""
    return isinstance(exc, (ModuleNotFoundError, MissingPackageError))


def kames_own(exc: ImportError) -> bool:
    """An import error of kame's own modules ("cannot import name X from kame...", no module kame.x):
    a bug (a renamed name, a circular import), not a package to install or a broken install. (An
    extension module that fails to load names itself: ctranslate2._ext.)"""
    return bool(exc.name) and exc.name.split(".")[0] == "kame"


def import_failed(what: str, exc: ImportError) -> NotAvailableError:
    """The error for an installed package ``what`` (e.g. "faster-whisper") whose import failed
    with ``exc``, not a missing module (``not_installed``): its own message, and the likely causes."""
    return NotAvailableError(f"{what} is installed but failed to import: {type(exc).__name__}: {exc} "
                             "(out of memory, e.g. under ulimit -v? a broken install?)")


def broken_import(kind: str, spec: str, exc: ImportError) -> NotAvailableError:
    mod = getattr(exc, "name", None)
    return import_failed(f"{kind} {spec!r}: a package it needs" + (f" ({mod})" if mod else ""), exc)


# what a ``return`` of these gives, by its syntax (never an async iterator)
_LITERALS = {ast.JoinedStr: "str", ast.List: "list", ast.Tuple: "tuple", ast.Set: "set", ast.Dict: "dict",
             ast.ListComp: "list", ast.SetComp: "set", ast.DictComp: "dict", ast.GeneratorExp: "a plain generator"}


def plain_return(method) -> str | None:
    """For a plain ``def`` method (not a generator, not ``async def``) whose source shows that it
    never returns an async iterator, what it returns and where: "str 'hi' (mycomps.py:14)", "None
    (no return: mycomps.py:12)"; else None. Read from the source, never by calling it (the call
    could start a request): known only when every ``return`` gives a literal (text, a number, a
    list, None...) or there is none and nothing is raised; a ``return`` of anything else (a call, a
    name: it may be an async iterator, kame's ``async for`` then checks it), a decorated, wrapped or
    lambda function, or source that cannot be read is None."""
    func = getattr(method, "__func__", method)
    if not inspect.isfunction(func) or hasattr(func, "__wrapped__") or func.__name__ == "<lambda>":
        return None
    try:
        lines, first = inspect.getsourcelines(func)
        node = ast.parse(textwrap.dedent("".join(lines))).body[0]
        where = Path(inspect.getsourcefile(func)).name
    except (OSError, TypeError, SyntaxError, IndexError):
        return None
    if not isinstance(node, ast.FunctionDef) or node.name != func.__name__ or node.decorator_list:
        return None
    returns, raises, todo = [], False, list(node.body)
    while todo:  # (the function's own statements: not those of a function or class defined in it)
        n = todo.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        returns += [n] if isinstance(n, ast.Return) else []
        raises = raises or isinstance(n, ast.Raise)
        todo.extend(ast.iter_child_nodes(n))
    if not returns:
        return None if raises else f"None (no return: {where}:{first})"
    said = []
    for r in sorted(returns, key=lambda r: r.lineno):
        if r.value is None or (isinstance(r.value, ast.Constant) and r.value.value is None):
            what = "None"
        elif isinstance(r.value, ast.Constant):
            what = f"{type(r.value.value).__name__} {r.value.value!r:.40}"
        elif type(r.value) in _LITERALS:
            what = _LITERALS[type(r.value)]
        else:
            return None
        said.append(f"{what} ({where}:{first + r.lineno - 1})")
    return " or ".join(dict.fromkeys(said))
