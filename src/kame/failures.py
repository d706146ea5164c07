"""Why a component could not be made, as kame.registry says it: a factory that raised
(``raised_at``: where), and a failed import, told apart as a package not installed
(``not_installed``) or an installed one failing to load (``import_failed``: its own message).
Back-ends that import their packages lazily use these too (kame.backend.stt.whisper,
kame.backend.llm.base).
"""

from __future__ import annotations

import traceback
from pathlib import Path

from .errors import KameError, MissingPackageError, NotAvailableError


def raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised, its innermost frame: " (at mycomps.py:12)", "" without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def _failed(kind: str, spec: str, exc: BaseException) -> KameError:
    """A factory's unexpected exception, as one line naming the spec and where it was raised."""
    return KameError(f"{kind} {spec!r} could not be created: {type(exc).__name__}: {exc}{raised_at(exc)}")


def not_installed(exc: ImportError) -> bool:
    """Whether a failed import means a package is not installed: a ModuleNotFoundError (the package,
    or one of its own dependencies that pip would install), or a MissingPackageError (said after its
    own check). Any other ImportError is an installed package that failed to load (a shared library
    unmappable under a memory limit: "failed to map segment from shared object"; a broken install:
    "cannot import name"), reported with its own message (``import_failed``)."""
    return isinstance(exc, (ModuleNotFoundError, MissingPackageError))


def _kames(exc: ImportError) -> bool:
    """An import error of kame's own modules ("cannot import name X from kame...", no module kame.x):
    a bug (a renamed name, a circular import), not a package to install or a broken install. (An
    extension module that fails to load names itself: ctranslate2._ext.)"""
    return bool(exc.name) and exc.name.split(".")[0] == "kame"


def import_failed(what: str, exc: ImportError) -> NotAvailableError:
    """The error for an installed package ``what`` (e.g. "faster-whisper") whose import failed
    with ``exc``, not a missing module (``not_installed``): its own message, and the likely causes."""
    return NotAvailableError(f"{what} is installed but failed to import: {type(exc).__name__}: {exc} "
                             "(out of memory, e.g. under ulimit -v? a broken install?)")


def _broken(kind: str, spec: str, exc: ImportError) -> NotAvailableError:
    mod = getattr(exc, "name", None)
    return import_failed(f"{kind} {spec!r}: a package it needs" + (f" ({mod})" if mod else ""), exc)
