"""What the README and --help list: every `kame bench` command in the README's table (was: no
train), and kame bench sessions' defaults as they are typed (was: a Python list)."""

import re
from pathlib import Path

from kame.cli import COMMANDS, main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_lists_every_bench_command():
    line = next(ln for ln in README.read_text().splitlines() if "`kame bench step" in ln)
    listed = re.search(r"`kame bench ([^`]+)`", line).group(1).replace("\\|", "|").split("|")
    assert sorted(listed) == sorted(path[1] for path in COMMANDS if path[0] == "bench")


def test_bench_sessions_help_shows_its_defaults_as_typed(capsys):
    try:
        main(["bench", "sessions", "--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.split())  # (argparse wraps lines)
    assert "default random:tiny, random:small" in text and "default 1, 2, 4, 8" in text
    assert "['" not in text and "[1," not in text
