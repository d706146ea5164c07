"""kame train's processes stop together, each saying why, when one of them fails or stops (kame.train
.parallel.agree, lost_peer): the processes are started as on several machines (one each, with no
torchrun agent to stop the others: it does so on one machine only), two of them on gloo.

- a check that fails in one process (its data folder missing on its machine) stops both at once
  (was: the other waited for it to join, silently, for DIST_TIMEOUT_MIN);
- a second run into a live run's OUT is told of the lock by every process (was: rank 1 advised
  --resume / --overwrite);
- Ctrl-C during a --shard save: kame's "interrupted at step N" line on rank 0, no staging folder
  (was: a gloo traceback, or "cannot save step N: ... Connection closed by peer"), and exit 130 (was:
  sometimes SIGABRT after that line, "terminate called without an active exception");
- another process dying mid-run: rank 0 names the last checkpoint to resume (was: a gloo traceback);
- a --shard save whose shards are not all in rank 0's -o (not shared between machines) fails,
  saying so (was: "saved", a checkpoint missing a shard);
- torchrun --max-restarts starting the same command again is told to give --resume OUT/latest."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kame.cli import main as cli_main

from .test_finetune import PLUGIN, ROOT, TORCHRUN_ARGS, _data, _tiny

SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from kame.cli import main
sys.exit(main(sys.argv[1:]))
"""

ARGS = ("--frontend", "random:tiny", *TORCHRUN_ARGS, "--codec", "fake", "--device", "cpu")


def _machines(tmp_path: Path, args, *, cwds=None, plugin_text: str = PLUGIN) -> list[tuple[int, str]]:
    """`kame train ARGS` in two processes of one gloo group, each as torchrun starts one on its own
    machine (RANK, WORLD_SIZE, MASTER_ADDR...; ``cwds``: each one's working directory) -> each
    one's (exit status, stderr)."""
    plugin, script = tmp_path / "plugin.py", tmp_path / "run.py"
    plugin.write_text(plugin_text.format(fakes=str(Path(__file__).parent)))
    script.write_text(SCRIPT.format(root=str(ROOT / "src")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs, errs = [], [tmp_path / f"stderr{rank}.txt" for rank in (0, 1)]
    for rank in (0, 1):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"), RANK=str(rank), LOCAL_RANK="0",
                   WORLD_SIZE="2", LOCAL_WORLD_SIZE="1", GROUP_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        with open(errs[rank], "w") as err:
            procs.append(subprocess.Popen([sys.executable, str(script), "--plugin", str(plugin), "train", *args],
                                          cwd=(cwds or [tmp_path] * 2)[rank], env=env, stdout=subprocess.DEVNULL,
                                          stderr=err, start_new_session=True))
    try:
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for p in procs:  # (a hang: both ended, the test failed by the timeout)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return [(code, err.read_text()) for code, err in zip(codes, errs)]


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("kame: error: ")]


@pytest.mark.slow
def test_a_check_failing_on_one_machine_stops_both_at_once(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _data(tmp_path / "a" / "data", n=3, T=32)  # (machine b has no copy of the data)
    said = _machines(tmp_path, ["data", "-o", str(tmp_path / "run"), *ARGS], cwds=[tmp_path / "a", tmp_path / "b"])
    (rc0, err0), (rc1, err1) = said
    assert rc0 == rc1 == 1, said
    own = _errors(err1)
    assert len(own) == 1 and own[0].startswith("kame: error: train: no manifest at data"), err1
    assert _errors(err0) == [own[0].replace("train: ", "train: rank 1 failed: ", 1)], err0
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_second_run_into_a_live_runs_out_is_told_of_its_lock_only(tmp_path):
    manifest = _data(tmp_path / "data", n=3, T=32)
    out = tmp_path / "live"
    (out / "step-3").mkdir(parents=True)  # (the live run's)
    with open(out / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242\n")
        lock.flush()
        said = _machines(tmp_path, [str(manifest), "-o", str(out), *ARGS])
    for rc, err in said:
        errors = _errors(err)
        assert rc == 1 and len(errors) == 1 and "another kame process (pid 4242) is writing to -o" in errors[0], said
        assert "--overwrite" not in err and "--resume" not in err, err  # (was rank 1's advice)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "step-3"]


CTRL_C_IN_SHARDED_SAVE = PLUGIN + """
import atexit, os, signal
from torch.distributed.checkpoint import FileSystemWriter, utils
# the interpreter's exit aborting, as a C++ thread of torch's that the interrupted collective save left makes it do
# about 1 run in 10 (SIGABRT, "terminate called without an active exception"): here every time, so the test sees
# that each process leaves once its stop is said, without the interpreter's exit (finetune._stopped)
atexit.register(os.abort)
if os.environ["RANK"] == "0":  # its Ctrl-C while it writes its shard: torch.distributed.checkpoint takes it
    write = FileSystemWriter.write_data
    def write_data(self, plan, planner):
        os.kill(os.getpid(), signal.SIGINT)
        return write(self, plan, planner)
    FileSystemWriter.write_data = write_data
else:  # rank 1's between two steps of the save: it stops there, rank 0 waiting for it
    all_reduce = utils._DistWrapper.all_reduce
    def stopped(self, step, *args, **kwargs):
        if step == "write":
            os.kill(os.getpid(), signal.SIGINT)
        return all_reduce(self, step, *args, **kwargs)
    utils._DistWrapper.all_reduce = stopped
"""


@pytest.mark.slow
def test_ctrl_c_in_a_sharded_save_is_said_by_rank_0_and_leaves_no_staging_folder(tmp_path):
    manifest, out = _data(tmp_path / "data", n=3, T=32), tmp_path / "run"
    said = _machines(tmp_path, [str(manifest), "-o", str(out), *ARGS, "--shard"],
                     plugin_text=CTRL_C_IN_SHARDED_SAVE)
    (rc0, err0), (rc1, err1) = said
    assert rc0 == rc1 == 130, said  # (was: rank 0 at times -6, SIGABRT at the interpreter's exit after its line)
    assert ("kame train: interrupted at step 3; no checkpoint written yet: run the same command again (--save-every "
            "N saves every N steps)") in err0.splitlines(), err0
    assert "Traceback" not in err0 + err1 and not _errors(err0 + err1), said
    assert sorted(p.name for p in out.iterdir()) == [".lock", "log.jsonl"]


A_PROCESS_DIES = PLUGIN + """
import os
from kame.train import finetune
if os.environ["RANK"] == "1":  # its machine goes down during step 4
    gradients = finetune.step_gradients
    def dies(net, feed, cfg, tcfg, step, *args, **kwargs):
        if step == 3:
            os._exit(9)
        return gradients(net, feed, cfg, tcfg, step, *args, **kwargs)
    finetune.step_gradients = dies
"""


@pytest.mark.slow
def test_a_process_dying_mid_run_is_said_with_the_checkpoint_to_resume(tmp_path):
    manifest, out = _data(tmp_path / "data", n=3, T=32), tmp_path / "run"
    said = _machines(tmp_path, [str(manifest), "-o", str(out), *ARGS], plugin_text=A_PROCESS_DIES)
    (rc0, err0), (rc1, _) = said
    assert rc0 == 1 and rc1 == 9, said
    errors = _errors(err0)
    assert len(errors) == 1 and errors[0].startswith(
        "kame: error: train: another process of this run stopped at step 3 (a collective failed: "), err0
    assert errors[0].endswith(f"); last checkpoint {out / 'step-3'}; resume with --resume {out / 'latest'}"), err0
    assert "Traceback" not in err0, err0


def test_a_sharded_save_missing_another_machines_shard_fails_saying_so(tmp_path, monkeypatch):
    """One process of a gloo group (sharding needs no second one); the shard file missing from its
    folder after the save, as the shard another machine wrote to its own disk is."""
    import torch.distributed as dist
    from torch.distributed.checkpoint import FileSystemWriter

    from kame.train.config import TrainConfig
    from kame.train.finetune import make_optimizer
    from kame.train.parallel import prepare
    from kame.train.saving import SaveFailed, save_step, staging_folder

    finish = FileSystemWriter.finish

    def elsewhere(self, metadata, results):
        finish(self, metadata, results)
        for f in Path(self.path).glob("*.distcp"):
            f.unlink()

    monkeypatch.setattr(FileSystemWriter, "finish", elsewhere)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        tcfg = TrainConfig(shard=True)
        net = prepare(_tiny(), tcfg, torch.device("cpu"))
        opt = make_optimizer(net, tcfg)
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        out = tmp_path / "run"
        with pytest.raises(SaveFailed, match=r"cannot save step 1: .*\.step-1\.new/optimizer lacks the optimizer "
                                             r"shards of the other processes \(__0_0\.distcp missing.*-o must be a "
                                             r"folder every node shares"):
            save_step(net, opt, out, 1, 0, tcfg, tmp_path / "train.jsonl", "", codec_spec=None, tokenizer_spec=None)
        assert not staging_folder(out, 1).exists() and not (out / "step-1").exists()
    finally:
        dist.destroy_process_group()


def test_a_torchrun_restart_is_told_to_resume(tmp_path, fake_codec, capsys, monkeypatch):
    """torchrun --max-restarts starts the same command again (TORCHELASTIC_RESTART_COUNT): refused
    with the --resume to give (was: "holds files already (another run's?)"), --overwrite too (it
    would remove what the first start saved)."""
    manifest, out = str(_data(tmp_path / "data")), tmp_path / "run"
    cmd = ["train", manifest, "-o", str(out), "--frontend", "random:tiny", "--codec", "fake", "--steps", "2",
           "--window", "16", "--batch-size", "2", "--warmup", "1", "--device", "cpu"]
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")  # (the first start, of the job: recorded in OUT/.lock)
    assert cli_main(cmd) == 0
    capsys.readouterr()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")
    for extra in ([], ["--overwrite"]):
        assert cli_main(cmd + extra) == 1
        assert capsys.readouterr().err == (
            f"kame: error: train: torchrun restarted kame train (restart 1 of 3) with the same command, and -o {out} "
            f"holds what its first start wrote: give --resume {out}/latest to go on from its last checkpoint. "
            f"torchrun cannot add that itself: run with --max-restarts 0 and restart by hand (docs/training.md)\n")
    assert (out / "step-2" / "train_state.pt").is_file()
