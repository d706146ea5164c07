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
