"""Fixtures shared by the kame.train tests: kame's default tokenizer, a tiny front-end config
whose text vocabulary holds it, and the exact fake codec registered as the codec spec "fake"."""

from __future__ import annotations

import pytest

from kame.backend.tokenizer import default_tokenizer
from kame.model.config import preset


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer()


@pytest.fixture(scope="module")
def cfg():
    return preset("tiny").replace(text_card=4000)  # kame's tokenizer has 4000 pieces


@pytest.fixture
def fake_codec():
    from kame import registry

    from ._fakes import FakeCodec

    registry.register("codec", "fake", lambda arg=None, **kw: FakeCodec(), replace=True)
    yield "fake"
    registry._ENTRIES["codec"].pop("fake", None)  # (the later tests list the known schemes)
