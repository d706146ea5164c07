"""`kame demo` refuses what it cannot do before it loads anything (the full run is the README's
first command)."""

from kame.cli import main


def test_demo_argument_errors(tmp_path, capsys):
    assert main(["demo", "--question", " ?! ", "--out", str(tmp_path / "d")]) == 1
    assert "--question has nothing to say" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--out", str(blocker / "d")]) == 1
    assert "cannot create the folder" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
