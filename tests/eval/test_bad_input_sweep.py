"""Bad input found by a QA sweep of `kame eval follow` and `kame eval mtbench`: refused with one of
kame's own errors naming the option or file (one line from the CLI), or said as it is."""

from __future__ import annotations

import pytest

from kame.cli import main
from kame.train.codes import write_codes
from kame.train.data import CODES, read_dialogue
from kame.train.manifest import read_manifest

from ..train._fakes import FakeCodec
from ..train.test_finetune import _data
from . import test_mtbench
from .test_mtbench import QUESTIONS, eval_, write

judges = test_mtbench.judges  # (test_mtbench's scripted judges: a fixture, used by name)

FOLLOW = ["--frontend", "random:tiny", "--codec", "fake", "--no-asr"]


# --- kame eval follow ------------------------------------------------------------------------------
def test_follow_refuses_a_temperature_that_is_not_finite_and_not_negative(tmp_path, capsys, fake_codec):
    manifest = _data(tmp_path / "data", n=1, T=24)
    for temp, said in (("nan", "expected a finite number, got 'nan'"), ("-1", "must be >= 0, got -1"),
                       ("inf", "expected a finite number, got 'inf'")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:  # (argparse's, as every option's: kame.cliargs.at_least)
            main(["eval", "follow", str(manifest), *FOLLOW, "--temp", temp])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and f"argument --temp: {said}" in err, err


def test_follow_refuses_an_empty_manifest_as_train_does(tmp_path, capsys, fake_codec):
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["eval", "follow", str(tmp_path / "empty.jsonl"), *FOLLOW]) == 1
    captured = capsys.readouterr()
    assert f"kame: error: eval follow: manifest {tmp_path / 'empty.jsonl'} lists no dialogues" in captured.err
    assert "| 0 |" not in captured.out


def test_follow_says_a_damaged_codes_cache_in_one_line(tmp_path, capsys, fake_codec):
    manifest = _data(tmp_path / "data", n=1, T=24)
    (folder,) = [e.path for e in read_manifest(manifest)]
    write_codes(read_dialogue(folder), FakeCodec(), spec="fake")
    (folder / CODES).write_bytes((folder / CODES).read_bytes()[:300])  # (head -c 300)
    capsys.readouterr()
    assert main(["eval", "follow", str(manifest), *FOLLOW, "--temp", "0"]) == 0  # (encoded again, as kame train does)
    err = capsys.readouterr().err
    assert f"{folder / CODES}: not a codes cache (BadZipFile" in err and "Traceback" not in err, err
    assert err.count("encoding it again") == 1 and "write it again" not in err, err


# --- kame eval mtbench ----------------------------------------------------------------------------
def test_mtbench_rejudge_with_nothing_stored_says_so_and_claims_no_results_file(tmp_path, capsys, fake_components,
                                                                                 judges):
    qf = write(tmp_path / "q.jsonl", QUESTIONS[1:2])
    out = tmp_path / "fresh"
    assert eval_(qf, out, "--rejudge") == 0
    printed = capsys.readouterr().out
    assert not (out / "results.jsonl").exists() and (out / "results.md").is_file()
    assert f"--rejudge: nothing to re-rate (none of the 1 selected question(s) has an answer stored in {out})" \
        in printed, printed
    wrote = [line for line in printed.splitlines() if line.startswith("wrote ")]
    assert wrote == [f"wrote {out / 'results.md'}"], wrote


def test_mtbench_rejudge_names_only_what_it_wrote_and_its_reason_is_of_the_selected_questions(
        tmp_path, capsys, fake_components, judges):
    out = tmp_path / "out"
    assert eval_(write(tmp_path / "q101.jsonl", QUESTIONS[1:2]), out) == 0  # (rated [[7]]: results.jsonl, runs/)
    # --rejudge of another question: the stored answers are 101's, none of the selected one's
    capsys.readouterr()
    assert eval_(write(tmp_path / "q131.jsonl", QUESTIONS[2:3]), out, "--rejudge") == 0
    printed = capsys.readouterr().out
    assert f"--rejudge: nothing to re-rate (none of the 1 selected question(s) has an answer stored in {out})" \
        in printed, printed
    wrote = [line for line in printed.splitlines() if line.startswith("wrote ")]
    assert wrote == [f"wrote {out / 'results.md'}"], wrote  # (was: the older results.jsonl and runs/ too)
    # --rejudge of 101 by the judge that rated it: nothing to re-rate, nothing but results.md written
    assert eval_(write(tmp_path / "q101.jsonl", QUESTIONS[1:2]), out, "--rejudge") == 0
    printed = capsys.readouterr().out
    assert "--rejudge: nothing to re-rate (the selected questions' stored answers all have a rating of " \
           "test_judge)" in printed, printed
    assert [line for line in printed.splitlines() if line.startswith("wrote ")] == [f"wrote {out / 'results.md'}"]
    # re-rated by another judge: results.jsonl written again, the agent not run (no runs/)
    assert eval_(write(tmp_path / "q101.jsonl", QUESTIONS[1:2]), out, "--rejudge", judge="test_judge2") == 0
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert wrote == [f"wrote {out / 'results.jsonl'}, {out / 'results.md'}"], wrote


def test_follow_refuses_a_manifest_that_is_not_utf8_text(tmp_path, capsys):
    """(was: a UnicodeDecodeError traceback, e.g. for the user's wav given as the manifest)"""
    wav = tmp_path / "short.wav"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\xe4\x5d")
    assert main(["eval", "follow", str(wav), *FOLLOW]) == 1
    err = capsys.readouterr().err
    assert f"kame: error: eval follow: manifest {wav}: not UTF-8 text (byte 24); give a manifest" in err, err


@pytest.mark.parametrize("where", ["cut", "in a whole line"])
def test_mtbench_resume_refuses_a_results_line_cut_inside_a_character(tmp_path, capsys, fake_components, judges,
                                                                       where):
    """(was: a UnicodeDecodeError traceback, where a line that is not JSON is refused by file and line; a
    whole line with such a byte in a string is not JSON either: read, it would hold a lone surrogate)"""
    out = tmp_path / "out"
    qf = write(tmp_path / "q.jsonl", QUESTIONS[1:2])
    assert eval_(qf, out) == 0
    results = out / "results.jsonl"
    if where == "cut":
        results.write_bytes(results.read_bytes() + '{"question_id": "déjà'.encode()[:-1])
    else:  # (its first line's category "reasoning" with a byte that is not UTF-8 at its end)
        results.write_bytes(results.read_bytes().replace(b'"reasoning"', b'"reasoning\xe9"', 1))
    capsys.readouterr()
    assert eval_(qf, out) == 1
    err = " ".join(capsys.readouterr().err.split())
    line = 2 if where == "cut" else 1
    assert f"kame: error: {results}:{line}: not valid JSON (cut while writing?); delete that line, or give another " \
        f"-o" in err, err


def test_follow_checks_its_output_folder_before_loading_anything(tmp_path, capsys, fake_codec, monkeypatch):
    """(was: a NotADirectoryError traceback after the front-end's load, which takes minutes for a
    real checkpoint; only an -o that was itself a file was refused up front)"""
    import kame.train.loading

    manifest = _data(tmp_path / "data", n=1, T=24)
    monkeypatch.setattr(kame.train.loading, "load_for_training", lambda *a, **kw: pytest.fail("loaded"))
    (tmp_path / "s44.wav").write_bytes(b"RIFF")
    out = tmp_path / "s44.wav" / "x"
    assert main(["eval", "follow", str(manifest), *FOLLOW, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"kame: error: eval follow: -o {out}: cannot create the folder: {tmp_path / 's44.wav'} is a file, " \
           f"not a folder" in err, err
    assert main(["eval", "follow", str(manifest), *FOLLOW, "-o", "/proc/kx"]) == 1
    err = capsys.readouterr().err
    assert "kame: error: eval follow: -o /proc/kx: cannot create the folder" in err, err
