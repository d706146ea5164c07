"""A --shard run whose optimizer shards cannot be written (a full disk, on any process: rank 0's own,
or another's that rank 0 learns through torch's CheckpointException) says so as an unsharded save
does, in one line on rank 0: the step, that nothing of it is kept, the checkpoint to resume and
what to do first; the other process exits with one line too (was: a CheckpointException traceback, with every rank's own
traceback inside it, from every process). Its staging folder is removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .test_finetune import PLUGIN, ROOT, TORCHRUN_ARGS, _data

FULL_DISK = PLUGIN + """
import errno
import torch.distributed as dist
from torch.distributed.checkpoint import FileSystemWriter
_write = FileSystemWriter.write_data
def full(self, plan, planner):
    if dist.get_rank() == {full_on}:
        raise OSError(errno.ENOSPC, "No space left on device")
    return _write(self, plan, planner)
FileSystemWriter.write_data = full
"""

SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from kame.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("full_on", [0, 1])  # (the process whose disk is full)
def test_a_full_disk_in_a_sharded_optimizer_save_is_one_line_on_rank_0(tmp_path, full_on):
    manifest = _data(tmp_path / "data", n=3, T=32)
    plugin, script, out = tmp_path / "full_disk.py", tmp_path / "run.py", tmp_path / "run"
    plugin.write_text(FULL_DISK.replace("{full_on}", str(full_on)).format(fakes=str(Path(__file__).parent)))
    script.write_text(SCRIPT.format(root=str(ROOT / "src")))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "--plugin", str(plugin), "train", str(manifest), "-o", str(out), "--frontend", "random:tiny", "--shard",
           *TORCHRUN_ARGS, "--codec", "fake", "--device", "cpu"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    assert p.returncode != 0
    errors = [line for line in err.splitlines() if line.startswith("kame: error: ")]
    assert errors.count(f"kame: error: train: disk full while saving step 3 ({out / 'step-3'}: No space left on "
                        f"device); nothing of it is kept; no checkpoint written yet: free space, then run the same "
                        f"command again (--save-every N saves every N steps)") == 1, err
    assert errors.count("kame: error: train: the checkpoint could not be saved (rank 0 says why): stopped") == 1, err
    assert len(errors) == 2 and "CheckpointException" not in err and "kame/train" not in err, err
    assert sorted(p.name for p in out.iterdir()) == [".lock", "log.jsonl"]
