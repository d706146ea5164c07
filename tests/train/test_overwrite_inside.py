"""kame train --overwrite refuses a --frontend (or --codec) inside OUT, whose step-N folders it
removes before the first save copies the front-end's files (kame.train.checkpoint.check_overwrite;
was: a FileNotFoundError traceback and an empty step-N)."""

from __future__ import annotations

from kame.cli import main as cli_main

from .test_finetune import _data
from .test_portable_checkpoint import FAST, MIMI, moshi_folder, train


def test_overwrite_from_a_checkpoint_inside_out_is_refused(tmp_path, monkeypatch, capsys):
    data = _data(tmp_path / "data")
    moshi_folder(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    train(data, "--frontend", "src", "-o", "runs/ow", *FAST, capsys=capsys)
    for extra in (["--frontend", "runs/ow/latest"], ["--frontend", "src", "--codec", f"mimi:runs/ow/latest/{MIMI}"]):
        capsys.readouterr()
        assert cli_main(["train", str(data), *extra, "-o", "runs/ow", "--overwrite", *FAST]) == 1
        err = capsys.readouterr().err
        flag = extra[-2] if extra[-2] == "--codec" else "--frontend"
        assert err.startswith("kame: error: ") and f"train: {flag} " in err and "inside -o runs/ow" in err, err
        assert "--resume" in err and "Traceback" not in err, err
    assert (tmp_path / "runs" / "ow" / "step-2" / MIMI).is_file()  # nothing removed
    train(data, "--frontend", "src", "-o", "runs/ow", "--overwrite", *FAST, capsys=capsys)  # from elsewhere: as before
