"""`kame train` and `kame data synth` check their numeric options as they are parsed, as
kame.cliargs' policy says: a value out of range is argparse's error naming the option, exit
status 2, before any work (was: --steps, --window, --seed, --start, --limit, --jobs, --turns and
--max-answer-words were checked after parsing, exit status 1, or not at all)."""

from __future__ import annotations

import argparse

import pytest

from kame.train import finetune, synth

from .test_bad_input_sweep import refused_by_argparse


def _parser(add_arguments) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kame")
    add_arguments(p)
    return p


@pytest.mark.parametrize("option, value, said", [
    ("--steps", "0", "must be >= 1, got 0"),
    ("--window", "1", "must be >= 2, got 1"),
    ("--seed", "-1", "must be >= 0, got -1"),
    ("--seed", str(2**32), f"must be <= {2**32 - 1}, got {2**32}"),
    ("--seed", "x", "expected an integer, got 'x'"),
])
def test_train_options_out_of_range_are_usage_errors(tmp_path, capsys, option, value, said):
    err = refused_by_argparse(capsys, ["train", str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "o"), option, value])
    assert f"argument {option}: {said}" in err, err
    assert not (tmp_path / "o").exists()


def test_train_options_at_their_limits_are_taken_and_the_window_says_its_unit():
    p = _parser(finetune.add_arguments)
    args = p.parse_args(["m", "-o", "o", "--steps", "1", "--window", "2", "--seed", str(2**32 - 1)])
    assert (args.steps, args.window, args.seed) == (1, 2, 2**32 - 1)
    window = next(a for a in p._actions if a.dest == "window")
    assert "80 ms" in window.help, window.help


@pytest.mark.parametrize("option, value, said", [
    ("--start", "-1", "must be >= 0, got -1"),
    ("--limit", "0", "must be >= 1, got 0"),
    ("--jobs", "0", "must be >= 1, got 0"),
    ("--turns", "0", "must be >= 1, got 0"),
    ("--max-answer-words", "0", "must be >= 1, got 0"),
    ("--max-answer-words", "ten", "expected an integer, got 'ten'"),
])
def test_synth_options_out_of_range_are_usage_errors(tmp_path, capsys, option, value, said):
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "Why?", "answer": "Because."}\n')
    err = refused_by_argparse(capsys, ["data", "synth", str(qa), "-o", str(tmp_path / "o"), "--llm", "none", option, value])
    assert f"argument {option}: {said}" in err, err
    assert not (tmp_path / "o").exists()


def test_synth_options_at_their_limits_are_taken_and_max_answer_words_has_help():
    p = _parser(synth.add_arguments)
    args = p.parse_args(["qa.jsonl", "-o", "o", "--llm", "none", "--start", "0", "--limit", "1", "--jobs", "1",
                         "--turns", "1", "--max-answer-words", "1"])
    assert (args.start, args.limit, args.jobs, args.turns, args.max_answer_words) == (0, 1, 1, 1, 1)
    words = next(a for a in p._actions if a.dest == "max_answer_words")
    assert words.help and f"default {synth.SynthConfig.max_answer_words}" in words.help, words.help
    assert synth.SynthConfig.max_answer_words == 60
