"""Every `kame bench` takes only sensible counts: a zero or negative count is an argparse error
naming the option (not a traceback from inside the benchmark)."""

import pytest

from kame.cli import main


@pytest.mark.parametrize("argv, option", [
    (["bench", "codec", "--frames", "0"], "--frames: must be >= 1, got 0"),
    (["bench", "codec", "--warmup", "-1"], "--warmup: must be >= 0, got -1"),
    (["bench", "step", "--batch", "0"], "--batch: must be >= 1, got 0"),
    (["bench", "step", "--frames", "x"], "--frames: expected an integer, got 'x'"),
    (["bench", "codec", "--frames", "1.5"], "--frames: expected an integer, got '1.5'"),
    (["bench", "soak", "--seconds", "nan"], "--seconds: expected a finite number, got 'nan'"),
    (["bench", "soak", "--sessions", "0"], "--sessions: must be >= 1, got 0"),
    (["bench", "soak", "--seconds", "0"], "--seconds: must be >= 0.1, got 0"),
    (["bench", "backend", "--prompts", "0"], "--prompts: must be >= 1, got 0"),
    (["bench", "latency", "--turns", "0"], "--turns: must be >= 1, got 0"),
    (["bench", "latency", "--window", "nan"], "--window: expected a finite number, got 'nan'"),
    (["bench", "sessions", "--seconds", "nan"], "--seconds: expected a finite number, got 'nan'"),
    (["bench", "sessions", "--sessions", "0"], "--sessions: must be >= 1, got 0"),
])
def test_bad_counts_are_argument_errors(argv, option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and option in capsys.readouterr().err


def test_latency_checks_its_output_folder_before_running(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["bench", "latency", "--out", str(blocker / "x"), "--turns", "1"]) == 1
    assert "cannot create the folder" in capsys.readouterr().err
