"""`kame bench train`: it runs `kame train` per layout under torchrun and counts what each process
holds; a sharded layout holds about half the training state of a whole copy in two processes."""

import pytest

from kame.cli import main

from ..train.test_finetune import _data


@pytest.mark.slow
def test_sharding_halves_the_state_each_process_holds(capsys):
    pytest.importorskip("espeakng_loader")
    assert main(["bench", "train", "--frontend", "random:tiny", "--layout", "single", "--layout", "shard",
                 "--steps", "4", "--window", "16"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("command: kame bench train --frontend random:tiny")
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
            for ln in out.splitlines() if ln.startswith("| single") or ln.startswith("| shard")}
    # (a cell "a / b": rank 0's and the others' figures)
    single, shard = ([[float(x) for x in c.split("/")] for c in rows[k]] for k in ("single", "shard"))
    assert single[0] == [1] and shard[0] == [2]  # processes
    for col in (1, 2, 3, 4):  # weights, gradients, optimizer state, their sum (MB)
        assert single[col][0] > 0 and abs(shard[col][0] - single[col][0] / 2) <= 1, (col, single, shard)
    assert len(shard[7]) == len(shard[8]) == 2 and len(single[7]) == 1  # loading, saving: rank 0 / others
    assert all(v > 0 for cell in single[5:] + shard[5:] for v in cell)  # RSS, peaks, s/step, frames/s measured


@pytest.mark.slow
def test_its_plugin_front_end_is_trained_by_the_processes_it_starts(tmp_path, capsys, scratch):
    """`kame --plugin F bench train --frontend mine:tiny`: the torchrun processes load F too. (--data:
    kame train's two short test dialogues; the test above trains on the set the bench makes.)"""
    data = _data(tmp_path / "data")
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "from kame import registry\n"
        "from kame.model.loaders import Frontend, load_frontend\n"
        "registry.register('frontend', 'mine', lambda arg=None, **kw: Frontend(*load_frontend(f'random:{arg}', text_card=4000, **kw)))\n")
    assert main(["--plugin", str(plugin), "bench", "train", "--frontend", "mine:tiny", "--layout", "single",
                 "--steps", "4", "--window", "16", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith(f"command: kame --plugin {plugin} bench train --frontend mine:tiny")
    assert any(ln.startswith("| single") for ln in out.splitlines())


GATE_PLUGIN = """
import os
import pathlib
import time

from kame import registry
from kame.model.loaders import Frontend, load_frontend


def gate(arg=None, **kw):
    if "LOCAL_RANK" in os.environ:  # (in torchrun's processes: says it runs, then waits to be stopped)
        (pathlib.Path(os.environ["KAME_TEST_GATE"]) / f"rank-{os.getpid()}-{os.getppid()}").touch()
        while True:
            time.sleep(0.05)
    return Frontend(*load_frontend(f"random:{arg}", text_card=4000, **kw))


registry.register("frontend", "gate", gate)
"""


@pytest.mark.slow
def test_sigterm_stops_torchrun_and_its_processes_and_removes_the_temporary_folder(tmp_path):
    """`kill PID` of `kame bench train` while a layout runs: torchrun and its processes end, the
    temporary folder is removed, exit 143 and a line saying so (was: killed by the signal, torchrun
    and both ranks left running, ppid 1, and /tmp/kame-bench-train-XXXX left behind)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    data = _data(tmp_path / "data")
    plugin, gate, tmp = tmp_path / "gate.py", tmp_path / "gate", tmp_path / "tmp"
    plugin.write_text(GATE_PLUGIN)
    gate.mkdir()
    tmp.mkdir()
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "KAME_TEST_GATE": str(gate), "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "kame", "--plugin", str(plugin), "bench", "train",
                                 "--frontend", "gate:tiny", "--layout", "ddp", "--steps", "4", "--window", "16",
                                 "--data", str(data)], cwd=repo, env=env, stdout=out, stderr=err,
                                start_new_session=True,
                                preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT,
                                                                                              signal.SIGTERM)])
    pids: set[int] = set()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    try:
        deadline = time.monotonic() + 300  # (a bound for a stuck run, not a timing check)
        while len(list(gate.glob("rank-*"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err").read_text()
            time.sleep(0.1)
        pids = {int(x) for f in gate.glob("rank-*") for x in f.name.split("-")[1:]}  # (the ranks, torchrun)
        assert list(tmp.glob("kame-bench-train-*"))  # (made: its removal below means something)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
        said = (tmp_path / "err").read_text()
        assert proc.returncode == 143 and "kame bench train: terminated (SIGTERM)" in said, said
        assert not [p for p in pids if alive(p)] and not list(tmp.glob("kame-bench-train-*"))
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)
