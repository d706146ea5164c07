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
