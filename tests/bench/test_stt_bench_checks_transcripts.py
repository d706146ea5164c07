"""`kame bench backend` reads an STT's stream as sessions do: each item through
kame.backend.stt.base.check_transcript (review r5, finding 6). Was: a plugin's item that is no
Transcript, or a word whose text is no str, failed the scoring with Python's AttributeError at a
line of the bench, the STT unnamed; now a BackendError names the STT and what it yielded, and the
STT is closed. The STTs are fakes registered for the test; no synthesis."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from kame import registry
from kame.backend.types import Transcript, Word
from kame.bench import backend_stt
from kame.errors import BackendError

CLOSED: list[str] = []


class OddSTT:
    """Yields ``item`` once the frames end; its aclose is recorded."""

    def __init__(self, arg: str) -> None:
        self.name, self.arg = arg, arg

    async def stream(self, frames):
        last = 0.0
        async for f in frames:
            last = f.t
        if self.arg == "dict":
            yield {"text": "hi"}
        elif self.arg == "inttext":
            yield Transcript((Word(7, last, last + 0.1),), True, last + 0.2)
        else:
            yield Transcript((Word("hi\x00", last, last + 0.1), Word("\x07", last, last + 0.1)), True, last + 0.2)

    async def aclose(self) -> None:
        CLOSED.append(self.arg)


@pytest.fixture
def odd_stts(monkeypatch):
    registry.schemes("stt")  # the built-in table first
    registry.register("stt", "oddbench", lambda arg=None, **kw: OddSTT(arg))
    CLOSED.clear()
    monkeypatch.setattr(backend_stt, "make_corpus", lambda n: [
        dict(text="hi", voice="none", group="piper", pcm=np.zeros(1920, np.float32))])
    yield
    registry._ENTRIES.get("stt", {}).pop("oddbench", None)


def _run(name: str) -> list[dict]:
    args = argparse.Namespace(stt=[f"oddbench:{name}"], sentences=1, gap=0.0)
    return backend_stt.run_stt_bench(args, backend_stt.stt_specs(args))


@pytest.mark.parametrize("name,what", [
    ("dict", r"yielded dict \{'text': 'hi'\}, expected Transcript"),
    ("inttext", r"a transcript word's text is int 7, expected str"),
])
def test_an_item_that_breaks_the_interface_is_named_and_the_stt_closed(odd_stts, name, what):
    with pytest.raises(BackendError, match=rf"^STT {name} broke its interface: {what}"):
        _run(name)
    assert CLOSED == [name]


def test_odd_words_are_scored_cleaned(odd_stts):
    """A word of control characters only is dropped (as a session drops it), "hi\\x00" is "hi"."""
    (row,) = _run("odd")
    assert row["wer"] == 0.0 and CLOSED == ["odd"]
