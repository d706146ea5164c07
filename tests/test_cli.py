"""kame.cli: the command line's own behaviour (the commands are tested in their areas)."""

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
