"""kame.cliargs: the argparse types every command shares, without the commands importing
each other (the server and the codec fit do not load the benchmarks)."""

import argparse
import subprocess
import sys

import pytest

from kame.cliargs import at_least, tail_seconds


def test_at_least_parses_and_refuses():
    assert at_least(1)("3") == 3 and at_least(0.1, float)("0.5") == 0.5
    for parse, text, said in [(at_least(1), "0", "must be >= 1, got 0"),
                              (at_least(1), "1.5", "expected an integer, got '1.5'"),
                              (at_least(0, float), "x", "expected a number, got 'x'"),
                              (at_least(0, float), "inf", "expected a finite number, got 'inf'"),
                              (at_least(1, maximum=256), "300", "must be <= 256, got 300")]:
        with pytest.raises(argparse.ArgumentTypeError, match=said):
            parse(text)
    assert at_least(1, maximum=256)("256") == 256


def test_tail_seconds_parses_and_refuses():
    """--tail/--max-tail's bounds (kame.runtime.filemode.check_tail's), said as an argparse error."""
    assert tail_seconds("0") == 0.0 and tail_seconds("2.5") == 2.5 and tail_seconds("3599.9") == 3599.9
    for text, said in [("-1", r"must be seconds in \[0, 3600\), got -1"), ("3600", "got 3600"),
                       ("nan", "expected a finite number, got 'nan'"), ("x", "expected a number, got 'x'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=said):
            tail_seconds(text)


def test_bench_sessions_names_its_own_option_for_too_many_sessions(capsys):
    from kame.bench.sessions import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--sessions", "300"])
    assert "argument --sessions: must be <= 256, got 300" in capsys.readouterr().err


def _loaded_after_add_arguments(modules: str, loaded: str) -> list[str]:
    """In a fresh interpreter: import each of ``modules`` (an expression) and build its parser;
    then which of the modules ``loaded`` (an expression over sys.modules names) got imported."""
    code = (
        "import argparse, importlib, sys\n"
        f"for name in {modules}:\n"
        "    importlib.import_module(name).add_arguments(argparse.ArgumentParser())\n"
        f"print(sorted(m for m in sys.modules if {loaded}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout)


def test_server_and_codec_fit_do_not_import_the_benchmarks():
    assert _loaded_after_add_arguments("['kame.server.app', 'kame.codec.embedded.fit']",
                                       "m == 'kame.bench' or m.startswith('kame.bench.')") == []


def test_no_command_imports_torch_or_scipy_to_show_its_options():
    # `kame CMD --help` (and an argument error) only needs the command's add_arguments: the heavy
    # libraries load when the command runs, so help comes back at once.
    assert _loaded_after_add_arguments("[m for m, _ in __import__('kame.cli').cli.COMMANDS.values()]",
                                       "m in ('torch', 'scipy', 'faster_whisper', 'onnxruntime')") == []


@pytest.mark.parametrize("command", [["run", "in.wav", "-o", "o.wav"], ["serve"], ["demo"], ["bench", "soak"]])
def test_config_is_given_once(command, capsys):
    # (was: the second --config silently replaced the first)
    from kame.cli import main

    with pytest.raises(SystemExit) as e:
        main([*command, "--config", "a.toml", "--config", "b.toml"])
    assert e.value.code == 2
    assert "argument --config: given twice ('a.toml', then 'b.toml'); give one" in capsys.readouterr().err
