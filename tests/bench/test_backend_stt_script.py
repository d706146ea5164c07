"""bench/backend_stt.py (`kame bench backend --llm none`): its --help shows the options it takes
only, and an option it sets itself is refused (was: kame bench backend's usage, with --llm and
--no-stt, and `--llm x` measured that LLM too)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "backend_stt.py"


@pytest.fixture
def script():
    spec = importlib.util.spec_from_file_location("backend_stt_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_its_help_shows_only_the_options_it_takes(script, capsys):
    with pytest.raises(SystemExit) as exc:
        script.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python bench/backend_stt.py "), out
    for option in ("--stt SPEC", "--sentences", "--gap", "--threads", "--plugin", "--verbose"):
        assert option in out, option
    for option in ("kame bench backend [", "--llm", "--no-stt", "--prompts", "--base-url", "--turns"):
        assert option not in out, option


def test_an_option_it_sets_itself_is_refused_and_the_others_go_to_kame_bench_backend(script, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(script, "kame_main", lambda argv: ran.append(argv) or 0)
    with pytest.raises(SystemExit) as exc:
        script.main(["--llm", "embedded"])
    assert exc.value.code == 2 and "unrecognized arguments: --llm embedded" in capsys.readouterr().err
    assert script.main(["--stt", "pocketsphinx", "--sentences", "2", "--threads", "1"]) == 0
    assert ran == [["bench", "backend", "--llm", "none", "--stt", "pocketsphinx", "--sentences", "2", "--threads", "1"]]
