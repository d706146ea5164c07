"""kame train under torchrun, in one process (review r9 of 9b3c747):

- a torchrun restart is refused only when its own job wrote OUT (OUT/.lock records the job), and a
  run holding OUT/.lock is said first (was: "give --resume OUT/latest" / "run it again with
  --overwrite" of a live run's checkpoints, or of another run's an --overwrite start meant to
  remove);
- parallel.lost_peer takes only a lost peer's words (was: any error naming gloo or NCCL: NCCL's
  out of memory said on every process as another process's stop), lost_cause keeps the last line;
- a peer lost after the last step's save: a warning, the run ends normally (was: exit 1 and a
  --resume that is refused, "is at step 6 already");
- a peer lost before training: "see its own output, if it said anything", a Ctrl-C said as one;
- main's "as training ended" line is rank 0's only; each process then leaves at once, with 0 (the
  run finished and saved; was: 130)."""

from __future__ import annotations

import fcntl
import os
import signal
from types import SimpleNamespace

import pytest
import torch

from kame.backend.tokenizer import default_tokenizer
from kame.cli import main as cli_main
from kame.errors import ConfigError
from kame.train import finetune, launch
from kame.train.checkpoint import check_restarted, out_lock
from kame.train.config import TrainConfig
from kame.train.parallel import ProcessLost, lost_cause, lost_peer

from ._fakes import FakeCodec
from .test_finetune import FAST, _data, _tiny

GLOO_LOST = "[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [10.0.0.2]:50845"


@pytest.fixture
def restarted(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")


def test_a_restart_is_refused_only_when_its_own_job_wrote_out(tmp_path, restarted, monkeypatch):
    out = tmp_path / "run"
    (out / "step-3").mkdir(parents=True)
    for recorded in ("4242\n", "4242\njob-b\n"):  # (a run outside torchrun; another torchrun job)
        (out / ".lock").write_text(recorded)
        check_restarted(out)
    (out / ".lock").write_text("4242\njob-a\n")
    with pytest.raises(ConfigError, match=r"torchrun restarted kame train \(restart 1 of 3\) .* holds what its first "
                                          r"start wrote: it saved no checkpoint"):
        check_restarted(out)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # (torchrun's default --rdzv-id: the master's address too)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    (out / ".lock").write_text("4242\nnone@10.0.0.1:29501\n")
    check_restarted(out)
    (out / ".lock").write_text("")
    with out_lock(out):  # (records this process's job)
        assert (out / ".lock").read_text() == f"{os.getpid()}\nnone@10.0.0.1:29500\n"
    with pytest.raises(ConfigError, match="holds what its first start wrote"):
        check_restarted(out)


def test_a_restart_into_a_live_runs_out_is_told_of_its_lock(tmp_path, restarted):
    out = tmp_path / "run"
    (out / "step-3").mkdir(parents=True)
    with open(out / ".lock", "a+") as lock:  # (a live run, of this very job even)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242\njob-a\n")
        lock.flush()
        with pytest.raises(ConfigError, match=r"another kame process \(pid 4242\) is writing to -o"):
            check_restarted(out)


def test_a_restarted_overwrite_start_that_never_locked_out_overwrites(tmp_path, fake_codec, capsys, monkeypatch):
    """The first --overwrite start failed before it locked OUT (a peer lost while loading): its
    restart overwrites the old run as asked (was: "give --resume OUT/latest", the old run's)."""
    manifest, out = str(_data(tmp_path / "data")), tmp_path / "old"
    cmd = ["train", manifest, "-o", str(out), "--frontend", "random:tiny", "--codec", "fake", "--steps", "2",
           "--window", "16", "--batch-size", "2", "--warmup", "1", "--device", "cpu"]
    assert cli_main(cmd) == 0  # (the old run, outside torchrun)
    capsys.readouterr()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert cli_main(cmd + ["--overwrite", "--steps", "3"]) == 0, capsys.readouterr().err
    assert (out / "step-3" / "train_state.pt").is_file() and not (out / "step-2").exists()


NCCL_OOM = ("NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, unhandled cuda error (run with "
            "NCCL_DEBUG=INFO for details), NCCL version 2.21.5\nncclUnhandledCudaError: Call to CUDA function failed."
            "\nLast error:\nCuda failure 'out of memory'")


def test_only_a_lost_peers_words_are_a_lost_peer():
    backend = getattr(torch.distributed, "DistBackendError", RuntimeError)
    for text in (GLOO_LOST, "[../gloo/transport/tcp/pair.cc:598] Read error [10.0.0.2]:4312: Connection reset by peer",
                 "[../gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 1800000ms for recv operation",
                 "NCCL error: remote process exited or there was a network error, NCCL version 2.21.5",
                 "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9, OpType=ALLREDUCE)"):
        assert lost_peer(backend(text)), text
    for text in (NCCL_OOM, "Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 1000",
                 "ncclInvalidUsage: This usually reflects invalid usage of NCCL library.",
                 "[../third_party/gloo/gloo/transport/tcp/pair.cc:446] op.preamble.length <= op.nbytes. 8 vs 4"):
        assert not lost_peer(backend(text)), text
    assert not lost_peer(getattr(torch.distributed, "DistError", RuntimeError)("store: key not set"))
    assert lost_cause(RuntimeError(GLOO_LOST + ". This is typically ...")) == \
        "Connection closed by peer [10.0.0.2]:50845"
    assert lost_cause(RuntimeError(NCCL_OOM)).endswith("; Cuda failure 'out of memory'")


@pytest.fixture
def group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield dist
    if dist.is_initialized():
        dist.destroy_process_group()


def test_a_peer_lost_after_the_last_save_ends_the_run_with_a_warning(tmp_path, group, monkeypatch, capsys):
    def gone(*a, **k):
        raise RuntimeError(GLOO_LOST)

    monkeypatch.setattr(group, "barrier", gone)  # (the end barrier: the other process went away)
    out = tmp_path / "run"
    res = finetune.train(_tiny(), FakeCodec(), default_tokenizer(), _data(tmp_path / "data"), out,
                         TrainConfig(**dict(FAST, steps=2)), echo=lambda s: None)
    assert res.step == 2 and res.last_checkpoint == out / "step-2"
    assert capsys.readouterr().err == (
        "warning: train: another process of this run stopped at step 2 (a collective failed: Connection closed by "
        f"peer [10.0.0.2]:50845) after the last step's save: training ended at step 2, its last checkpoint "
        f"{out / 'step-2'} is saved\n")


def _args(tmp_path):
    return SimpleNamespace(device="cpu", out=tmp_path / "run", resume=None)


@pytest.mark.parametrize("ctrl_c", [False, True])
def test_a_peer_lost_before_training(tmp_path, monkeypatch, ctrl_c):
    import torch.distributed as dist

    init = dist.init_process_group
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: init(
        backend, init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1))

    def lost(*a, **k):
        raise RuntimeError(GLOO_LOST)

    monkeypatch.setattr(launch, "agree", lost)
    if ctrl_c:  # (its KeyboardInterrupt lost; another process stopped for the same Ctrl-C first)
        with pytest.raises(KeyboardInterrupt):
            launch.run(_args(tmp_path), stopped=lambda: True)
        return
    with pytest.raises(ProcessLost, match=r"before training began \(a collective failed: Connection closed by peer "
                                          r"\[10.0.0.2\]:50845; see its own output, if it said anything\); nothing "
                                          r"saved$"):
        launch.run(_args(tmp_path))


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_ctrl_c_as_training_ended_is_said_by_rank_0_only_and_each_process_leaves_at_once(monkeypatch, capsys,
                                                                                            rank):
    """Said by rank 0 only; then every process leaves at once, as after a stop mid-run
    (finetune._stopped: childproc.leave_now, os._exit without the exit hooks; was: main returned
    130, through the interpreter's exit, where torch's hooks can abort the process)."""
    from kame.backend import childproc

    left = []
    monkeypatch.setattr(childproc, "leave_now", lambda status, exit_hooks: left.append((status, exit_hooks)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)

    def run(args, stopped):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # (recorded by main's handler)
        except KeyboardInterrupt:
            pass
        assert stopped()
        return SimpleNamespace(step=6, last_checkpoint=None if rank != "0" else "OUT/step-6")

    monkeypatch.setattr(finetune, "run", run)
    assert finetune.main(None) == 0  # (the run finished and saved; was: 130)
    err = capsys.readouterr().err
    said = "kame train: interrupted as training ended at step 6; its last checkpoint OUT/step-6 is saved"
    assert (err == "") if rank != "0" else err.startswith(said), err
    assert left == [(0, False)]


@pytest.mark.parametrize("rank", [0, 1])
def test_a_stopped_sharded_save_is_removed_by_rank_0_and_only_its_own_shards_by_another(tmp_path, monkeypatch, rank):
    """A Ctrl-C of one process after its collective returned: rank 1 removes its own shard only
    (was: the whole staging folder, rank 0 still writing there), rank 0 the folder."""
    from kame.train import parallel
    from kame.train.saving import save_step, staging_folder

    out = tmp_path / "run"

    def stopped(model, opt, folder):
        (folder / "optimizer").mkdir(parents=True)
        for name in ("__0_0.distcp", "__1_0.distcp", ".metadata"):
            (folder / "optimizer" / name).write_text("")
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel, "checkpoint_state", stopped)
    with pytest.raises(KeyboardInterrupt):
        save_step(None, None, out, 3, rank, TrainConfig(shard=True), tmp_path / "train.jsonl", "")
    left = staging_folder(out, 3) / "optimizer"
    assert sorted(p.name for p in left.iterdir()) == [".metadata", "__0_0.distcp"] if rank else not left.parent.exists()
