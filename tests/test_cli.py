"""kame.cli: the command line's own behaviour (the commands are tested in their areas)."""

from kame.cli import main


def test_a_command_group_alone_prints_its_own_subcommands(capsys):
    """`kame codec` with no subcommand (was: the top-level help, listing demo/run/serve...)."""
    assert main(["codec"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: kame codec") and "roundtrip" in out and "fit" in out and "serve" not in out
    assert main([]) == 2 and "serve" in capsys.readouterr().out
