"""A Ctrl-C that reaches kame's main (while kame starts: imports, the parser, the logging set-up;
or one the command did not take) exits 130 with one line on stderr and no traceback (was: a
silent exit 130, or a traceback when it came just after the parser was built)."""

import logging
import subprocess
import sys

import pytest

from kame import cli

STARTING = "kame run: interrupted (Ctrl-C) before it started; nothing was done\n"

# kame's own Ctrl-C handler is not installed yet while the command's module is imported: Python raises
# KeyboardInterrupt wherever the import is; an import hook raises it there, as a Ctrl-C would
IMPORT_INTERRUPTED = """
import importlib.abc, sys

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "kame.runtime.filemode":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
from kame.cli import main
sys.exit(main(["run", "in.wav", "-o", "out.wav"]))
"""


def test_ctrl_c_while_the_command_is_imported(tmp_path):
    p = subprocess.run([sys.executable, "-c", IMPORT_INTERRUPTED], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert p.returncode == 130 and p.stderr == STARTING, p.stderr  # (was: 130, nothing said)
    assert not list(tmp_path.iterdir())


def test_ctrl_c_while_logging_is_set_up(monkeypatch, capsys):
    def interrupted(**kw):  # (just after the parser: was outside main's catch, a traceback)
        raise KeyboardInterrupt

    monkeypatch.setattr(logging, "basicConfig", interrupted)
    try:
        status = cli.main(["run", "in.wav", "-o", "out.wav"])
    except KeyboardInterrupt:  # (caught here: left alone it would stop the whole test run)
        pytest.fail("the Ctrl-C went past kame's main (a traceback for the user)")
    assert status == 130 and capsys.readouterr().err == STARTING


def test_a_ctrl_c_the_command_does_not_take(monkeypatch, capsys):
    from kame.runtime import filemode

    def interrupted(args):  # (e.g. while it imports its models, before its own handler is installed)
        raise KeyboardInterrupt

    monkeypatch.setattr(filemode, "main", interrupted)
    assert cli.main(["run", "in.wav", "-o", "out.wav"]) == 130
    assert capsys.readouterr().err == "kame run: interrupted\n"  # (was: nothing)
    monkeypatch.setattr(cli, "_build_parser", lambda argv: interrupted(None))
    assert cli.main(["bench", "step"]) == 130
    assert capsys.readouterr().err == "kame bench step: interrupted (Ctrl-C) before it started; nothing was done\n"
