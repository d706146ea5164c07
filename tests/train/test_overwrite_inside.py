"""kame train --overwrite refuses a --frontend (or --codec) inside OUT, whose step-N folders it
removes before the first save copies the front-end's files (kame.train.checkpoint.check_overwrite;
was: a FileNotFoundError traceback and an empty step-N); and an OUT a killed save left: the advice
given for it, and its temporary files removed by the next run."""

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


def test_out_without_a_complete_checkpoint_sends_to_overwrite_not_resume(tmp_path, capsys):
    """A run killed in its first save leaves OUT/step-N/.NAME.HEX.tmp and no OUT/latest: the refusal
    does not send to --resume OUT/latest (was: it did, and that said "holds no train_state.pt"),
    and a --resume that does not exist says so."""
    data, out = _data(tmp_path / "data"), tmp_path / "t1"
    (out / "step-2").mkdir(parents=True)
    (out / "step-2" / ".model.safetensors.0123456789ab.tmp").write_bytes(b"cut")
    capsys.readouterr()
    assert cli_main(["train", str(data), "-o", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    assert "holds no complete checkpoint" in err and "--overwrite" in err and "--resume" not in err, err
    for missing in (out / "latest", tmp_path / "nonexistent" / "latest"):
        assert cli_main(["train", str(data), "-o", str(out), *FAST, "--resume", str(missing)]) == 1
        err = capsys.readouterr().err
        assert f"--resume {missing} does not exist" in err and "holds no" not in err, err
    train(data, "-o", out, "--overwrite", *FAST, capsys=capsys)  # (what it says to do: it works)
    assert (out / "latest" / "train_state.pt").is_file()


def test_a_stopped_saves_temporaries_are_removed_by_the_next_run(tmp_path, capsys):
    """A save killed midway leaves hidden temporaries as large as a checkpoint in OUT/step-N: a
    resume removes those untouched for an hour (kame's names only), and says so (was: never)."""
    import os
    import time

    data, out = _data(tmp_path / "data"), tmp_path / "t"
    train(data, "-o", out, *FAST, capsys=capsys)
    step = out / "step-2"
    stale = [step / ".model.safetensors.0123456789ab.tmp", step / ".tmpAbC123", step / ".train_state.pt.ba9876543210.tmp"]
    (step / ".optimizer.new").mkdir()
    (step / ".optimizer.new" / "__0_0.distcp").write_bytes(b"x" * 10)
    kept = [step / ".config.json.fedcba987654.tmp", step / "notes.tmp", step / ".notes.tmp"]  # (a fresh one; not kame's)
    for p in stale + kept:
        p.write_bytes(b"x" * 1000)
    hour_ago = time.time() - 3700
    for p in [*stale, step / ".optimizer.new" / "__0_0.distcp", step / ".optimizer.new", *kept[1:]]:
        os.utime(p, (hour_ago, hour_ago))
    capsys.readouterr()
    assert cli_main(["train", str(data), "-o", str(out), *FAST[:1], "3", *FAST[2:], "--resume", str(out / "latest")]) == 0
    said = capsys.readouterr().out
    for p in stale:
        assert not p.exists() and f"removed {p} (" in said, said
    assert all(p.exists() for p in kept) and (step / "model.safetensors").is_file()
    # (no optimizer/ beside it: a sharded re-save stopped between its renames, the state it holds kept)
    assert (step / ".optimizer.new" / "__0_0.distcp").is_file()
    assert said.count("removed ") == 3 and "a temporary file of a save that was stopped" in said


def test_only_kames_temporaries_are_removed_and_a_sharded_optimizer_that_may_be_the_only_one_is_kept(tmp_path):
    """(review helper-261) safetensors' .tmpXXXXXX names are taken for a save's only in step-N (a
    user's .tmpconfig in OUT was removed); .optimizer.old/.new are removed only beside an optimizer/
    (without it a re-save stopped between its two renames: they hold the state)."""
    import os
    import time

    from kame.train.checkpoint import remove_stale_temporaries

    out = tmp_path / "t"
    whole, cut = out / "step-2", out / "step-4"
    for step in (whole, cut):
        (step / ".optimizer.old").mkdir(parents=True)
        (step / ".optimizer.old" / "__0_0.distcp").write_bytes(b"x")
        (step / ".tmpAbC123").write_bytes(b"x")
    (whole / "optimizer").mkdir()
    (out / ".tmpconfig").write_bytes(b"mine")
    hour_ago = time.time() - 3700
    for p in out.rglob("*"):
        os.utime(p, (hour_ago, hour_ago))
    removed = {p for p, _ in remove_stale_temporaries(out)}
    assert removed == {whole / ".optimizer.old", whole / ".tmpAbC123", cut / ".tmpAbC123"}
    assert (out / ".tmpconfig").exists() and (cut / ".optimizer.old" / "__0_0.distcp").exists()
