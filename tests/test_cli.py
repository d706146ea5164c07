"""kame.cli: the command line's own behaviour (the commands are tested in their areas)."""

from kame import cli
from kame.cli import main


def test_a_command_group_alone_prints_its_own_subcommands(capsys):
    """`kame codec` with no subcommand (was: the top-level help, listing demo/run/serve...)."""
    assert main(["codec"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: kame codec") and "roundtrip" in out and "fit" in out and "serve" not in out
    assert main([]) == 2 and "serve" in capsys.readouterr().out


def test_help_names_the_environment_variables(capsys):
    """(deployment hunt: only KAME_AUTH_TOKEN and KAME_PLUGINS were told, in option texts)"""
    import pytest

    from kame.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("KAME_AUTH_TOKEN", "KAME_PLUGINS", "KAME_CACHE", "HF_HUB_OFFLINE", "OPENAI_API_KEY",
                 "OPENAI_BASE_URL"):
        assert name in out, name


def test_ctrl_c_while_kame_starts_exits_130_without_a_traceback(monkeypatch):
    # (building the parser imports the command's module, a second or more on a busy machine; a Ctrl-C
    # then printed a 30-line traceback: the KeyboardInterrupt was outside main's try)
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_build_parser", interrupted)
    try:
        status = cli.main(["run", "in.wav", "-o", "out.wav"])
    except KeyboardInterrupt:  # (caught here: left alone it would stop the whole test run)
        raise AssertionError("the Ctrl-C went past kame's main (a traceback for the user)") from None
    assert status == 130
