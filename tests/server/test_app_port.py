"""`kame serve --port` is checked as it is parsed, as kame.cliargs' policy says: a port outside
0..65535 is argparse's error naming the option, exit status 2 (was: "kame: error: port 70000:
must be in 0..65535" from listen_socket, exit status 1)."""

from __future__ import annotations

import pytest

from kame.cli import main


@pytest.mark.parametrize("value, said", [("70000", "must be <= 65535, got 70000"), ("-1", "must be >= 0, got -1"),
                                         ("http", "expected an integer, got 'http'")])
def test_a_port_out_of_range_is_a_usage_error(capsys, value, said):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--agent", "echo", "--port", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --port: {said}" in err, err


def test_the_ports_at_the_limits_are_taken():
    import argparse

    from kame.server.app import add_arguments

    p = argparse.ArgumentParser(prog="kame serve")
    add_arguments(p)
    assert p.parse_args(["--port", "0"]).port == 0 and p.parse_args(["--port", "65535"]).port == 65535
