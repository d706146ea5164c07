"""`kame bench backend --stt SPEC` builds the STT as the agent builds its backend.stt
(kame.runtime.backend.create_stt): the whole spec, ';options' included, goes to the component's
factory (was: the bench read the options as constructor keywords of its own, so one spec meant
one thing in the bench and another in a config)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from kame import registry
from kame.backend.types import Transcript, Word
from kame.bench import backend_stt
from kame.config import load_config
from kame.errors import ConfigError
from kame.runtime.backend import load_backend
from kame.runtime.clock import FakeClock

CALLS: list[tuple[str | None, dict]] = []


class RecordingSTT:
    """Hears nothing, says one word per stream."""

    async def stream(self, frames):
        last = None
        async for f in frames:
            last = f.t
        yield Transcript((Word("hi", last, last + 0.1),), True, last + 0.2)


def create(arg: str | None = None, **kwargs) -> RecordingSTT:
    CALLS.append((arg, kwargs))
    return RecordingSTT()


@pytest.fixture
def recording_stt():
    registry.schemes("stt")  # the built-in table first
    registry.register("stt", "benchrec", create)
    CALLS.clear()
    yield
    registry._ENTRIES.get("stt", {}).pop("benchrec", None)


def _made(call) -> tuple:
    arg, kwargs = call
    return arg, sorted(kwargs), kwargs.get("nice")


def test_the_bench_builds_an_stt_as_the_agent_does(recording_stt, monkeypatch):
    spec = "benchrec:m;opt=1,other=x"
    load_backend(load_config(None, [f"backend.stt={spec}", "backend.llm=none", "backend.nice=0"]), FakeClock())
    (agent_call,) = CALLS
    assert agent_call[0] == "m;opt=1,other=x"  # the factory reads its options
    CALLS.clear()
    monkeypatch.setattr(backend_stt, "make_corpus", lambda n: [
        dict(text="hi", voice="none", group="piper", pcm=np.zeros(1920, np.float32))])
    args = argparse.Namespace(stt=[spec], sentences=1, gap=0.0)
    (row,) = backend_stt.run_stt_bench(args, backend_stt.stt_specs(args))
    (bench_call,) = CALLS
    assert _made(bench_call) == _made(agent_call)  # one code path: same arg, same keywords, nice 0
    assert row["stt"] == spec and row["finals"] == 1


def test_a_spec_the_config_refuses_is_refused_before_any_work(recording_stt, monkeypatch):
    monkeypatch.setattr(backend_stt, "make_corpus", lambda n: pytest.fail("synthesized before the check"))
    for spec in ("nosuch;opt=1", "openai;response_format=json"):  # an unknown scheme; options but no MODEL
        with pytest.raises(ConfigError) as bench:
            backend_stt.stt_specs(argparse.Namespace(stt=[spec]))
        with pytest.raises(ConfigError) as config:
            load_config(None, [f"backend.stt={spec}"])
        said = str(config.value).removeprefix("backend.stt: ").replace(", or 'none'", "")  # (the bench: --no-stt)
        assert str(bench.value) == f"--stt: {said}"
    assert CALLS == []


def test_kame_bench_backend_refuses_a_bad_stt_spec_at_once(capsys):
    from kame.cli import main

    assert main(["bench", "backend", "--stt", "embedded;foo=1", "--llm", "none", "--sentences", "1"]) == 1
    assert "stt spec 'embedded;foo=1': unknown option 'foo'" in capsys.readouterr().err


def test_an_stt_that_cannot_be_built_fails_before_the_synthesis(monkeypatch):
    """(an openai STT's unknown option: its factory's error, as in a config)"""
    monkeypatch.setattr(backend_stt, "make_corpus", lambda n: pytest.fail("synthesized before the STTs were built"))
    args = argparse.Namespace(stt=["openai:whisper-1;base_url=http://127.0.0.1:8000/v1"], sentences=1, gap=0.0)
    with pytest.raises(ConfigError, match="unknown option 'base_url'"):
        backend_stt.run_stt_bench(args, backend_stt.stt_specs(args))
