"""kame.cli's options shared by every command, found by a CLI consistency sweep: the output
option's two spellings (-o/--out/--output), -v between a group and its command, help lines not
broken inside a word, the environment note saying what the code reads; and out-of-range values
of the options kame.cliargs checks (--tail, codec fit's) as argparse errors, exit status 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import kame
from kame.cli import COMMANDS, _build_parser, main


def leaf(path: tuple[str, ...]):
    """The parser of the command ``kame PATH`` (its module's arguments added)."""
    return _build_parser(list(path))[1][path]


def test_every_command_with_o_takes_out_and_output(capsys):
    """(was: `--out` in demo, train, data synth, eval follow and bench latency, `--output` in six
    others; `--output` refused by the first five)"""
    with_o = []
    for path in COMMANDS:
        p = leaf(path)
        actions = p._option_string_actions
        if "-o" not in actions:
            continue
        with_o.append(path)
        assert actions.get("--out") is actions.get("--output") is actions["-o"], path
        shown = re.findall(r"--out(?:put)?\b", p.format_help())
        assert len(set(shown)) == 1, (path, shown)  # (the help shows the spelling declared)
    assert len(with_o) >= 11, with_o
    # a whole parse, each spelling, where each was declared
    for argv, dest in ((["run", "in.wav", "--out", "x.wav"], "output"), (["demo", "--output", "d"], "out"),
                       (["bench", "latency", "--output", "d"], "out"),
                       (["client", "ws://h", "in.wav", "--out", "x"], "output")):
        assert getattr(_build_parser(argv)[0].parse_args(argv), dest) == argv[-1], argv


def test_verbose_between_a_group_and_its_command():
    """(was: `kame bench -v step`: "unrecognized arguments: -v"; `kame -v bench step` worked)"""
    for argv in (["bench", "-v", "step"], ["-v", "bench", "step"], ["bench", "step", "-v"],
                 ["codec", "--verbose", "roundtrip", "i", "-o", "o"]):
        assert _build_parser(argv)[0].parse_args(argv).verbose is True, argv
    argv = ["bench", "step"]
    assert _build_parser(argv)[0].parse_args(argv).verbose is False


def test_plugin_between_a_group_and_its_command():
    """(was: `kame bench --plugin x.py step`: "invalid choice: 'x.py'"; `kame --plugin x.py bench step`
    and `kame bench step --plugin x.py` worked). Every grouped command; the order given is kept."""
    grouped = [path for path in COMMANDS if len(path) == 2]
    assert {path[0] for path in grouped} >= {"bench", "codec", "data", "eval"}
    for path in grouped:
        needed = []  # (its required arguments, any value: the parse is what is tested)
        for action in leaf(path)._actions:
            if action.required:
                needed += [*action.option_strings[:1], "x"]
        argv = ["--plugin", "a.py", path[0], "--plugin", "b.py", path[1], *needed, "--plugin", "c.py"]
        assert _build_parser(argv)[0].parse_args(argv).plugin == ["a.py", "b.py", "c.py"], argv
        argv = [path[0], "--plugin", "b.py", path[1], *needed]
        assert _build_parser(argv)[0].parse_args(argv).plugin == ["b.py"], argv


def test_help_lines_do_not_break_inside_a_word(monkeypatch):
    """(was: `kame train --help` at 80 columns broke its --frontend example inside the quotes:
    ...depformer_num_la / yers=2')"""
    monkeypatch.setenv("COLUMNS", "80")
    text = leaf(("train",)).format_help()
    assert "'random:small;depformer_dim=256,depformer_num_layers=2'" in text, text


def test_environment_note_names_what_the_code_reads(capsys):
    """(was: "OPENAI_STT_* and OPENAI_TTS_* override them": there is no OPENAI_STT_MODEL, and
    OPENAI_MODEL is not read for the TTS)"""
    with pytest.raises(SystemExit):
        main(["--help"])
    note = " ".join(capsys.readouterr().out.split("environment:", 1)[1].split())
    backend = Path(kame.__file__).parent / "backend"
    read = {n for f in backend.rglob("*.py") for n in re.findall(r"OPENAI_[A-Z_]*[A-Z]", f.read_text())}
    named = set(re.findall(r"OPENAI_[A-Z_]*", note))
    assert named <= read, named - read  # (each one a variable kame reads: no OPENAI_STT_* wildcard)
    assert {"OPENAI_STT_API_KEY", "OPENAI_STT_BASE_URL", "OPENAI_TTS_API_KEY", "OPENAI_TTS_BASE_URL",
            "OPENAI_TTS_MODEL", "OPENAI_MODEL"} <= named, named
    assert "OPENAI_STT_MODEL" not in note and "*" not in note


def usage_error(capsys, argv) -> str:
    """The argparse error kame gives for ``argv`` (exit status 2), on one line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2, argv
    return " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("argv", [["run", "in.wav", "-o", "o.wav"], ["demo"],
                                  ["eval", "mtbench", "q.jsonl", "-o", "o", "--judge", "embedded"]])
def test_an_out_of_range_tail_is_a_usage_error(capsys, tmp_path, argv):
    """(was: "kame: error: --tail must be seconds in [0, 3600), got -1.0", exit status 1)"""
    for option, value, said in (("--tail", "-1", "must be seconds in [0, 3600), got -1"),
                                ("--tail", "3600", "must be seconds in [0, 3600), got 3600"),
                                ("--max-tail", "nan", "expected a finite number, got 'nan'")):
        if option == "--max-tail" and argv[0] == "demo":
            continue  # (kame demo has no --max-tail)
        err = usage_error(capsys, [*argv, option, value])
        assert f"argument {option}: {said}" in err, err


def test_codec_fit_out_of_range_values_are_usage_errors(capsys, tmp_path):
    """(was: --cardinality 0 and --augment 2 "kame: error: ...", exit status 1, when --iters -1 was 2)"""
    base = ["codec", "fit", "-o", str(tmp_path / "c.safetensors")]
    assert "argument --cardinality: must be >= 2, got 0" in usage_error(capsys, [*base, "--cardinality", "0"])
    assert "argument --cardinality: must be <= 2048, got 4096" in usage_error(capsys, [*base, "--cardinality", "4096"])
    assert "argument --augment: must be <= 1, got 2" in usage_error(capsys, [*base, "--augment", "2"])
    assert not list(tmp_path.iterdir())


def test_help_states_defaults_and_units(monkeypatch):
    """(was: codec fit's "default: config" without a config option; no default said for codec fit
    --sentences, bench train --steps/--batch-size, codec-quality --threads/--channel; bench
    sessions --mode without help; --window's unit not said)"""
    monkeypatch.setenv("COLUMNS", "200")

    def helps(path) -> dict[str, str]:  # dest -> its help
        return {a.dest: " ".join((a.help or "").split()) for a in leaf(path)._actions}

    fit = helps(("codec", "fit"))
    assert "config" not in fit["iters"] + fit["augment"]
    assert "default 20" in fit["iters"] and "default 0" in fit["augment"] and "default 3000" in fit["sentences"]
    train = helps(("bench", "train"))
    assert "default 6" in train["steps"] and "default 1" in train["batch_size"] and "frames" in train["window"]
    quality = helps(("bench", "codec-quality"))
    assert "default 1" in quality["threads"] and "default clean" in quality["channel"]
    sessions = helps(("bench", "sessions"))
    assert "batched" in sessions["mode"] and "not tandem/cascade" in sessions["mode"]
    assert "seconds" in helps(("bench", "latency"))["window"]
    assert "both (the default" in helps(("demo",))["mode"]
    client = helps(("client",))
    assert "flac" in client["input"].lower() and "flac" in client["output"] and "mp3" in client["output"]
    assert "the config's" in helps(("eval", "mtbench"))["mode"]
