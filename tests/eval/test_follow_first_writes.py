"""kame eval follow that fails before its first dialogue (a manifest missing, Ctrl-C while the
front-end loads) leaves -o as it found it, as kame eval mtbench and pairwise do
(kame.eval.firstwrites): a new folder is removed again with the parents made for it (was: left
behind, empty)."""

from __future__ import annotations

from kame.cli import main

from ..train.test_finetune import _data


def test_a_missing_manifest_leaves_no_fresh_folder(tmp_path, capsys):
    out = tmp_path / "new" / "out"
    assert main(["eval", "follow", str(tmp_path / "missing.jsonl"), "--frontend", "random:tiny", "--no-asr",
                 "-o", str(out)]) == 1
    assert "missing.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # (was: new/out left, empty)
    out.mkdir(parents=True)  # an empty folder given as -o stays
    assert main(["eval", "follow", str(tmp_path / "missing.jsonl"), "--frontend", "random:tiny", "--no-asr",
                 "-o", str(out)]) == 1
    assert out.is_dir() and not any(out.iterdir())


def test_ctrl_c_while_the_front_end_loads_leaves_no_fresh_folder(tmp_path, monkeypatch):
    import kame.train.loading

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(kame.train.loading, "load_for_training", interrupted)
    manifest = _data(tmp_path / "data", n=1, T=24)
    out = tmp_path / "out"
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--no-asr", "-o", str(out)]) == 130
    assert not out.exists()


def test_a_run_keeps_its_folder(tmp_path, fake_codec):
    manifest = _data(tmp_path / "data", n=1, T=24)
    out = tmp_path / "new" / "out"
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--no-asr",
                 "--temp", "0", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".lock", "d0.wav", "follow.json", "results.jsonl"]  # (.lock: the
    # run's, let go)
