"""What a run's OUT says after a save that was stopped (kame.train.saving's swap): a second run into
a live run's OUT is refused before it touches anything there (was: it put the live run's
.step-N.old back first, under the live run's rename); the same command run again after a run was
killed in its first save is not refused for its hidden OUT/.step-N.new (was: "holds files
already"); a step-N left aside as OUT/.step-N.old is named by --resume from another -o and by
load_frontend (was: "does not exist" alone); the last checkpoint another process names is the
run's own last due save (was: whatever OUT/latest pointed at, another run's step too)."""

from __future__ import annotations

import os

import pytest

from kame.cli import main as cli_main
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend
from kame.train.checkpoint import last_checkpoint, out_lock

from . import test_save_swap
from .test_finetune import _data
from .test_out_safety import CLI

saved_run = test_save_swap.run  # (a fixture, used by name)


@pytest.fixture
def run(saved_run):
    """test_save_swap's 3-step run saving each step in OUT, its step-3 then left aside as a save
    killed between its two renames leaves it: (manifest, OUT)."""
    manifest, out, _ = saved_run
    os.rename(out / "step-3", out / ".step-3.old")
    return manifest, out


def test_a_second_run_into_a_live_runs_out_changes_nothing_there(run, capsys):
    manifest, out = run  # (the live run between its two renames)
    with out_lock(out):
        assert cli_main(["train", manifest, "-o", str(out), "--steps", "5", "--resume", str(out / "latest"),
                         *CLI]) == 1
    said = capsys.readouterr()
    assert "train: another kame process (pid " in said.err and "put " not in said.out, said
    assert (out / ".step-3.old").is_dir() and not (out / "step-3").exists()  # (was: renamed back to step-3)


def test_the_same_command_runs_again_after_a_kill_in_its_first_save(tmp_path, fake_codec, capsys):
    manifest, out = str(_data(tmp_path / "data")), tmp_path / "o"
    command = ["train", manifest, "-o", str(out), "--steps", "1", *CLI]
    assert cli_main(command) == 0
    os.rename(out / "step-1", out / ".step-1.new")  # (SIGKILL before its rename: no step-1, no latest)
    os.unlink(out / "latest")
    capsys.readouterr()
    assert cli_main(command) == 0, capsys.readouterr().err  # (was: "holds files already (another run's?)")
    assert (out / "latest" / "train_state.pt").is_file() and not (out / ".step-1.new").exists()


def test_a_step_left_aside_is_named_by_resume_and_by_load_frontend(run, capsys):
    manifest, out = run
    where = (f"{out / 'step-3'} is {out / '.step-3.old'}, left aside by a kame train save killed while it replaced "
             f"it: the next kame train with -o {out} puts it back, or rename {out / '.step-3.old'} to {out / 'step-3'}")
    for given in (out / "latest", out / "step-3"):
        assert cli_main(["train", manifest, "-o", str(out.parent / "other"), "--steps", "5", "--resume", str(given),
                         *CLI]) == 1
        assert f"kame: error: train: --resume {given} does not exist: {where}\n" in capsys.readouterr().err
        with pytest.raises(CheckpointError) as caught:
            load_frontend(given)
        assert str(caught.value) == f"front-end checkpoint {str(given)!r} does not exist: {where}"
    assert (out / ".step-3.old").is_dir()  # (nothing moved by either)
    with pytest.raises(CheckpointError, match=r"does not exist$"):
        load_frontend(out / "step-9")  # (no step left aside: said as before)


def test_another_process_names_the_runs_own_last_save_not_latest(tmp_path):
    out = tmp_path / "o"
    for n in (1, 4):  # (step-4: another run's, OUT/latest pointing at it)
        (out / f"step-{n}").mkdir(parents=True)
        (out / f"step-{n}" / "train_state.pt").write_bytes(b"x")
    (out / "latest").symlink_to("step-4", target_is_directory=True)
    assert last_checkpoint(None, out, None) is None  # (this run saved none: was step-4)
    assert last_checkpoint(None, out, 1) == out / "step-1"  # (its last due save, rank 0's)
    assert last_checkpoint(None, out, 6) is None  # (not there: not another process's to name)
    assert last_checkpoint(out / "step-2", out, 4) == out / "step-2"  # (this process's own save)
