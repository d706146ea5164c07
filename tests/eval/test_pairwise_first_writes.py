"""kame eval pairwise that fails before its first pair (a judge at a closed port, Ctrl-C while the
judge loads) leaves its -o folder as it found it: a fresh one is removed again, with the folders
made for it (was: OUT_PAIR/pairwise.json left, a folder that looked like a started comparison), and
one with earlier results keeps every file byte for byte (was: a --rejudge's pairwise.json rewritten
to the unreachable judge). Scripted judges and hand-written mtbench folders of test_pairwise; the
closed port and tree() of test_mtbench_first_writes."""

from __future__ import annotations

from . import test_pairwise
from .test_mtbench_first_writes import closed_judge, tree
from .test_pairwise import folder, pairwise, refused

judges = test_pairwise.judges  # (test_pairwise's scripted judges: a fixture, used by name)


def two_folders(tmp_path) -> tuple[str, str]:
    return (folder(tmp_path / "a", "tandem", {("101", 1): "GOOD", ("102", 1): "x"}),
            folder(tmp_path / "b", "cascade", {("101", 1): "bad", ("102", 1): "y"}))


def test_a_judge_that_cannot_be_reached_leaves_no_fresh_folder(tmp_path, capsys, monkeypatch, judges):
    a, b = two_folders(tmp_path)
    out = tmp_path / "new" / "pair"  # (its parent made for it too)
    err = refused(capsys, a, b, out, judge=closed_judge(monkeypatch))
    assert "the judge openai:gpt-4.1 failed a first short request" in err and "cannot connect" in err, err
    assert not (tmp_path / "new").exists()  # (was: pair/pairwise.json, as if a comparison had started)
    # an empty folder given as -o stays, empty
    out.mkdir(parents=True)
    refused(capsys, a, b, out, judge=closed_judge(monkeypatch))
    assert out.is_dir() and tree(out) == {}
    assert judges["n"] == 0


def test_a_folder_with_results_is_left_as_it_was(tmp_path, capsys, monkeypatch, judges):
    a, b = two_folders(tmp_path)
    c = folder(tmp_path / "c", "cascade", {("101", 1): "GOOD too", ("102", 1): "y"})
    out = tmp_path / "pair"
    assert pairwise(a, b, out) == 0
    before = tree(out)
    dead = closed_judge(monkeypatch)
    # a --rejudge with the unreachable judge (was: pairwise.json rewritten to name it, though nothing was judged)
    assert "failed a first short request" in refused(capsys, a, b, out, "--rejudge", judge=dead)
    assert tree(out) == before
    # and one with another folder B too (was: pairwise.json rewritten to compare a with c)
    assert "failed a first short request" in refused(capsys, a, c, out, "--rejudge", judge=dead)
    assert tree(out) == before


def test_ctrl_c_while_the_judge_loads_leaves_no_fresh_folder(tmp_path, capsys, monkeypatch, judges):
    from kame.eval import pairwise as pairwise_module

    def interrupted(*args, **kw):  # (an embedded judge loading: Ctrl-C comes there)
        raise KeyboardInterrupt

    monkeypatch.setattr(pairwise_module, "open_judge", interrupted)
    a, b = two_folders(tmp_path)
    out = tmp_path / "pair"
    assert pairwise(a, b, out) == 130
    assert not out.exists()  # (was: out/pairwise.json)


def test_a_judge_that_fails_after_its_probe_keeps_the_folder(tmp_path, capsys, judges):
    """From the first pair on, what the run wrote stays (a rerun resumes it)."""
    a = folder(tmp_path / "a", "tandem", {("101", 1): "FAIL"})
    b = folder(tmp_path / "b", "cascade", {("101", 1): "bad"})
    out = tmp_path / "pair"
    assert pairwise(a, b, out) == 1
    assert (out / "pairwise.json").is_file() and (out / "results.md").is_file()
