"""A back-end component whose optional package is missing raises kame.errors.MissingPackageError:
an ImportError (so `except ImportError` works) and a NotAvailableError naming the extra to install."""

import re
import sys

import pytest

from kame import registry
from kame.errors import MissingPackageError, NotAvailableError


@pytest.mark.parametrize("kind, spec, module, extra", [
    ("tts", "piper", "piper", "kame-tandem[tts]"),
    ("tts", "espeak", "espeakng_loader", "kame-tandem[tts]"),
])
def test_missing_optional_package_is_an_import_error_naming_the_extra(monkeypatch, kind, spec, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    if "kame.backend.tts.espeak" in sys.modules:  # a library an earlier test loaded is not imported again
        monkeypatch.setattr("kame.backend.tts.espeak._LIB", None)
    with pytest.raises(MissingPackageError, match=re.escape(f"pip install '{extra}'")) as e:
        registry.create(kind, spec)
    assert isinstance(e.value, ImportError) and isinstance(e.value, NotAvailableError)
    assert f"in a kame checkout: .venv/bin/pip install -e '.[{extra[12:-1]}]'" in str(e.value)  # not on PyPI
