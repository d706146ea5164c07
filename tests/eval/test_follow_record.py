"""kame eval follow's record of its settings (r7): written with its results, not when the run
starts (a rerun stopped midway left its own settings beside the last run's results); named
follow.json, not mtbench's eval.json (each command misread the other's folder; follow overwrote an
mtbench folder's); one command's folder given to another is named as that command's; the
front-end recorded as a path that stays true (was: as typed, ra/latest)."""

from __future__ import annotations

import json
import os

from kame.cli import main

from ..train.test_finetune import _data
from . import test_mtbench, test_pairwise
from .test_mtbench import QUESTIONS, write
from .test_pairwise import folder

judges = test_mtbench.judges  # (fixtures, used by name)
pair_judges = test_pairwise.judges


def follow(manifest, out, *extra):
    return main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--no-asr",
                 "--temp", "0.5", "-o", str(out), *extra])


def test_a_rerun_stopped_midway_leaves_no_results_beside_its_own_audio(tmp_path, fake_codec, monkeypatch):
    """A rerun replaces the folder's run: the last run's results.jsonl and follow.json go before its
    first audio is written, so a rerun cut midway leaves no results that describe other audio (was:
    its first wavs beside the last run's results and record, seed 3's, over seed 4's audio)."""
    import kame.audio

    manifest = _data(tmp_path / "data", n=3, T=24)
    out = tmp_path / "fo1"
    assert follow(manifest, out, "--seed", "3") == 0
    assert sorted(p.name for p in out.iterdir()) == [".lock", "d0.wav", "d1.wav", "d2.wav", "follow.json",
                                                      "results.jsonl"]
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert json.loads(before["follow.json"])["seed"] == 3

    real, wrote = kame.audio.write_wav, []

    def stopped(path, *args, **kw):  # Ctrl-C as the third dialogue's audio is written
        if len(wrote) == 2:
            raise KeyboardInterrupt
        wrote.append(path)
        return real(path, *args, **kw)

    monkeypatch.setattr(kame.audio, "write_wav", stopped)
    assert follow(manifest, out, "--seed", "4") == 130
    assert sorted(p.name for p in out.iterdir()) == [".lock", "d0.wav", "d1.wav", "d2.wav"]
    now = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert now["d0.wav"] != before["d0.wav"] and now["d2.wav"] == before["d2.wav"]  # (this run's, the last one's)

    # a rerun that fails before its first dialogue (a front-end that cannot load) leaves the last run's whole
    monkeypatch.setattr(kame.audio, "write_wav", real)
    assert follow(manifest, out, "--seed", "4") == 0
    whole = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert follow(manifest, out, "--frontend", str(tmp_path / "missing")) != 0
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == whole


def test_each_eval_commands_folder_is_named_as_such_by_the_others(tmp_path, capsys, fake_codec, fake_components,
                                                                   judges, pair_judges):
    manifest = _data(tmp_path / "data", n=1, T=24)
    fo = tmp_path / "fo1"
    assert follow(manifest, fo) == 0
    assert not (fo / "eval.json").exists()
    kept = {p.name: p.read_bytes() for p in fo.iterdir() if p.is_file()}
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    err = test_mtbench.refused(capsys, qf, fo)  # (was: "holds results of --mode None --turns None")
    assert f"{fo} is a kame eval follow folder (follow.json), not a kame eval mtbench one; give another -o" in err
    assert not (fo / "runs").exists() and {p.name: p.read_bytes() for p in fo.iterdir()} == kept

    a = folder(tmp_path / "a", "tandem", {("101", 1): "x"})
    b = folder(tmp_path / "b", "cascade", {("101", 1): "y"})
    err = test_pairwise.refused(capsys, a, b, fo)  # (was: "a kame eval mtbench folder (eval.json)")
    assert f"{fo} is a kame eval follow folder (follow.json), not a kame eval pairwise one; give another -o" in err
    err = test_pairwise.refused(capsys, str(fo), b, tmp_path / "p")  # (was: "no eval.json ... run kame eval mtbench")
    assert f"OUT_A {fo}: a kame eval follow folder (follow.json), not a kame eval mtbench one" in err
    assert {p.name: p.read_bytes() for p in fo.iterdir()} == kept

    # follow into an mtbench or a pairwise folder: refused, the folder as it was (was: its eval.json and
    # results.jsonl overwritten)
    p = tmp_path / "p"
    p.mkdir()
    (p / "pairwise.json").write_text(json.dumps({"folder_a": a, "folder_b": b, "judge": "x"}))
    for other, name, command in ((tmp_path / "a", "eval.json", "mtbench"), (p, "pairwise.json", "pairwise")):
        was = {q.name: q.read_bytes() for q in other.iterdir()}
        capsys.readouterr()
        assert follow(manifest, other) == 1
        err = " ".join(capsys.readouterr().err.split())
        assert (f"eval follow: {other} is a kame eval {command} folder ({name}), not a kame eval follow one; "
                f"give another -o") in err
        assert {q.name: q.read_bytes() for q in other.iterdir()} == was  # (no .lock left either)


def test_the_front_end_is_recorded_as_the_folder_it_is(tmp_path, monkeypatch):
    from kame.eval.follow import _spec

    (tmp_path / "ra" / "step_2").mkdir(parents=True)
    os.symlink("step_2", tmp_path / "ra" / "latest")
    monkeypatch.chdir(tmp_path)
    assert _spec("ra/latest") == str(tmp_path.resolve() / "ra" / "step_2")  # (was: "ra/latest", a link that moves)
    assert _spec("random:tiny") == "random:tiny" and _spec("hf://a/b") == "hf://a/b"

