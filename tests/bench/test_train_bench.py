"""`kame bench train`: it runs `kame train` per layout under torchrun and counts what each process
holds; a sharded layout holds about half the training state of a whole copy in two processes."""

import pytest

from kame.cli import main


@pytest.mark.slow
def test_sharding_halves_the_state_each_process_holds(capsys):
    pytest.importorskip("espeakng_loader")
    assert main(["bench", "train", "--frontend", "random:tiny", "--layout", "single", "--layout", "shard",
                 "--steps", "4", "--window", "16"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("command: kame bench train --frontend random:tiny")
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
            for ln in out.splitlines() if ln.startswith("| single") or ln.startswith("| shard")}
    single, shard = (list(map(float, rows[k])) for k in ("single", "shard"))
    assert single[0] == 1 and shard[0] == 2  # processes
    for col in (1, 2, 3, 4):  # weights, gradients, optimizer state, their sum (MB)
        assert single[col] > 0 and abs(shard[col] - single[col] / 2) <= 1, (col, single, shard)
    assert all(v > 0 for v in single[5:] + shard[5:])  # RSS, peaks, s/step, frames/s measured
