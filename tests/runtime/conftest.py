"""Fixtures of the runtime tests: fake components registered in kame's registry for the
duration of one test (removed afterwards, so other areas' tests never see them)."""

import pytest

from kame import registry

FAKES = {
    ("stt", "fake"): "tests.runtime.fakes:create_stt",
    ("stt", "fake_question"): "tests.runtime.fakes:create_question_stt",
    ("llm", "fake"): "tests.runtime.fakes:create_llm",
    ("llm", "fake_nice"): "tests.runtime.fakes:create_nice_llm",
    ("tts", "fake"): "tests.runtime.fakes:create_tts",
}


@pytest.fixture
def fake_components():
    registry.schemes("stt")  # load the built-in table first
    for (kind, scheme), target in FAKES.items():
        registry.register(kind, scheme, target)
    yield
    from .fakes import CREATED

    CREATED.clear()  # the components the fake factories made (tests read them)
    for kind, scheme in FAKES:
        registry._ENTRIES.get(kind, {}).pop(scheme, None)
