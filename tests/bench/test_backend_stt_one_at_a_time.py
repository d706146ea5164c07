"""`kame bench backend` builds, measures and closes one STT at a time (was: all built first, all
their models in memory at once, and those built were never closed when a later one failed to
build or the synthesis failed). The STTs are fakes registered for the test; no synthesis."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from kame import registry
from kame.backend.types import Transcript, Word
from kame.bench import backend_stt
from kame.errors import BackendError, ConfigError

EVENTS: list[str] = []


class FakeSTT:
    """Hears the stream, says one word; its aclose is recorded."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def stream(self, frames):
        last = None
        async for f in frames:
            last = f.t
        EVENTS.append(f"ran {self.name}")
        yield Transcript((Word("hi", last, last + 0.1),), True, last + 0.2)

    async def aclose(self) -> None:
        EVENTS.append(f"closed {self.name}")


class PlainDefSTT(FakeSTT):
    """A plugin STT whose plain ``def stream`` returns a call (allowed when it is created) that is
    a coroutine, not an async iterator."""

    def stream(self, frames):
        return self._transcripts(frames)

    async def _transcripts(self, frames):
        return []


def create(arg: str | None = None, **kwargs) -> FakeSTT:
    if arg == "broken":
        raise ConfigError("stt spec 'onebyone:broken': no such model")
    if arg == "plaindef":
        EVENTS.append("built plaindef")
        return PlainDefSTT(arg)
    EVENTS.append(f"built {arg}")
    return FakeSTT(arg)


@pytest.fixture
def fake_stts(monkeypatch):
    registry.schemes("stt")  # the built-in table first
    registry.register("stt", "onebyone", create)
    EVENTS.clear()
    monkeypatch.setattr(backend_stt, "make_corpus", lambda n: (EVENTS.append("synthesized"), [
        dict(text="hi", voice="none", group="piper", pcm=np.zeros(1920, np.float32))])[1])
    yield
    registry._ENTRIES.get("stt", {}).pop("onebyone", None)


def _args(*names: str) -> argparse.Namespace:
    return argparse.Namespace(stt=[f"onebyone:{n}" for n in names], sentences=1, gap=0.0)


def test_each_stt_is_built_run_and_closed_before_the_next_is_built(fake_stts):
    args = _args("a", "b")
    rows = backend_stt.run_stt_bench(args, backend_stt.stt_specs(args))
    assert [r["stt"] for r in rows] == ["onebyone:a", "onebyone:b"] and all(r["finals"] == 1 for r in rows)
    assert EVENTS == ["built a", "synthesized", "ran a", "closed a", "built b", "ran b", "closed b"]


def test_a_later_stt_that_cannot_be_built_leaves_none_open(fake_stts):
    args = _args("a", "broken")
    with pytest.raises(ConfigError, match="no such model"):
        backend_stt.run_stt_bench(args, backend_stt.stt_specs(args))
    assert EVENTS == ["built a", "synthesized", "ran a", "closed a"]


def test_the_stt_built_is_closed_when_the_synthesis_fails(fake_stts, monkeypatch):
    def no_voice(n):
        raise RuntimeError("no piper voice")

    monkeypatch.setattr(backend_stt, "make_corpus", no_voice)
    args = _args("a", "b")
    with pytest.raises(RuntimeError, match="no piper voice"):
        backend_stt.run_stt_bench(args, backend_stt.stt_specs(args))
    assert EVENTS == ["built a", "closed a"]


def test_kame_bench_backend_prints_the_same_header_and_table(fake_stts, capsys):
    from kame.cli import main

    assert main(["bench", "backend", "--stt", "onebyone:a", "--stt", "onebyone:b", "--llm", "none",
                 "--sentences", "1", "--gap", "0"]) == 0
    out = capsys.readouterr().out
    # (--llm none: no LLM's thread said; was "(the STT's; the embedded LLM's child: 1)")
    assert "torch threads 1 (the STT's)\n\n## STT\n\n| STT | sentences (words) |" in out and "LLM" not in out, out
    assert out.index("`onebyone:a`") < out.index("`onebyone:b`")
    assert EVENTS == ["built a", "synthesized", "ran a", "closed a", "built b", "ran b", "closed b"]


def test_a_first_stt_that_cannot_be_built_fails_before_any_output(fake_stts, capsys):
    from kame.cli import main

    assert main(["bench", "backend", "--stt", "onebyone:broken", "--llm", "none", "--sentences", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "no such model" in err and EVENTS == []


def test_an_stt_whose_stream_is_no_async_iterator_is_named_and_closed(fake_stts):
    """(was: Python's "'async for' requires an object with __aiter__ method, got coroutine", at a
    line of the bench: the bench read stt.stream without kame.backend.stt.base.open_stream)"""
    args = _args("plaindef")
    with pytest.raises(BackendError, match=r"^STT .*broke its interface: its PlainDefSTT\.stream\(\) .*returned "
                                           r"coroutine.*expected an async iterator"):
        backend_stt.run_stt_bench(args, backend_stt.stt_specs(args))
    assert EVENTS == ["built plaindef", "synthesized", "closed plaindef"]
