"""`kame bench backend` plumbing: arguments, and the LLM and oracle-lag measurements on a scripted LLM."""

import argparse

import pytest

from kame.backend.tokenizer import default_tokenizer
from kame.bench.backend import _bench_llm, _bench_oracle, add_arguments

from .scripted_llm import ScriptedLLM


def test_arguments_parse():
    p = argparse.ArgumentParser()
    add_arguments(p)
    a = p.parse_args(["--no-stt", "--llm", "embedded", "--llm", "openai:m", "--turns", "2"])
    assert a.no_stt and a.llm == ["embedded", "openai:m"] and a.turns == 2


async def test_llm_and_oracle_lag_measured():
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--no-stt", "--prompts", "2", "--turns", "2", "--word-s", "0.02", "--stt-delay", "0.01"])
    llm = ScriptedLLM(auto=["The capital ", "is Paris."])
    tok = default_tokenizer()
    r = await _bench_llm(llm, args, tok)
    assert r["n"] == 2 and r["ttft50"] >= 0 and r["words"] == 4
    o = await _bench_oracle(llm, args, tok)
    assert o["answered"] == 2 and o["failed"] == 0 and o["end50"] > 0
    assert "agent: The capital is Paris." in llm.calls[-1].messages[1].content  # spoken answer in history


def test_bad_arguments_are_named():
    p = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(p)
    for argv in (["--sentences", "0"], ["--turns", "-1"], ["--gap", "x"]):
        with pytest.raises(argparse.ArgumentError, match=argv[0]):
            p.parse_args(argv)


@pytest.mark.parametrize("reply", [
    "**Sure!** Here are some ideas 😊:\n- Visit the museum 🏛️\n- Walk along the river 🌊",  # cleaned: fewer ids
    " ".join(f"word{i}" for i in range(45)),  # the live oracle cuts it at 30 words: its rate ends there
])
async def test_the_text_stream_rate_is_the_live_oracles(monkeypatch, reply):
    """`kame bench backend`'s "text-stream tokens/s" is the live oracle's llm_tokens_per_s (what kame
    run's late-token warning and kame train --slow-rate speak of) for the same pieces at the same
    times: the cleaned, cut reply's ids after the first, from the first piece on (was: the raw
    reply's ids over request -> last piece, the time to the first token counted: 2 s of it here)."""
    import types

    from kame.backend.oracle import OracleProducer
    from kame.backend.policy import OraclePolicy
    from kame.bench import backend
    from kame.runtime.clock import FakeClock
    from kame.runtime.metrics import MetricsLog

    from .test_oracle_routed import said, settle

    words = reply.split(" ")
    pieces = [words[0]] + [" " + w for w in words[1:]]
    times = iter([0.0] + [2.0 + 0.1 * k for k in range(len(pieces))])  # (request, then each piece)
    monkeypatch.setattr(backend, "time", types.SimpleNamespace(perf_counter=lambda: next(times)))
    p = argparse.ArgumentParser()
    add_arguments(p)
    bench = await _bench_llm(ScriptedLLM(auto=pieces), p.parse_args(["--no-stt", "--prompts", "1"]),
                             default_tokenizer())

    clock, log, llm = FakeClock(), MetricsLog(), ScriptedLLM()
    producer = OracleProducer(llm, default_tokenizer(), OraclePolicy(), clock=clock, metrics=log)
    await producer.on_transcript(said("what is there to do", 0.0, final=False))
    await settle()
    base = clock.now() + 2.0
    for k, piece in enumerate(pieces):
        clock.set(base + 0.1 * k)
        if not llm.calls[0].closed:
            llm.calls[0].send(piece)
        await settle()
    if not llm.calls[0].closed:
        llm.calls[0].end()
        await settle()
    await producer.aclose()
    live = log.values("llm_tokens_per_s")
    assert len(live) == 1 and bench["text_tps"] == pytest.approx(live[0])
