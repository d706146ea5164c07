"""kame data synth's record of a set (synth.json, kame.train.synth.settings_of; kame data oracle's
update of it, reoracle._record_oracle; one reader, datacmd.read_record): what kame train's warning
of a set cleaned otherwise (kame.train.oracle_sim.stale_cleaning) names comes from it."""

from __future__ import annotations

import argparse
import json
import logging

import pytest

from kame.backend.speech_text import CLEANING_VERSION
from kame.train.data import DataError
from kame.train.oracle_sim import SimOracleConfig, stale_cleaning
from kame.train.synth import SynthConfig, _settings_to_record, settings_of

from .test_synth import ToneVoices, _qa_file


def test_the_tokenizer_is_recorded_as_a_path_from_anywhere(tmp_path, monkeypatch):
    """kame train's warning names the set's `kame data oracle` run with its --tokenizer: a path as
    typed ("tok.model") named another file when kame train ran from another folder."""
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(qa="qa.jsonl", format="auto", language=None, images=False, llm="none",
                              tokenizer="tok.model", turns=1)
    assert settings_of(args, SynthConfig(), SimOracleConfig())["tokenizer"] == str(tmp_path / "tok.model")
    args.tokenizer = None
    assert settings_of(args, SynthConfig(), SimOracleConfig())["tokenizer"] is None


def test_kame_data_oracle_records_its_tokenizer(tmp_path, monkeypatch):
    """kame data oracle --tokenizer B over a set synth made with A: synth.json says B, resolved, and
    kame train's note names B (was: A kept, so the note's command tokenized the set with A again)."""
    from types import SimpleNamespace

    from kame.train.datacmd import read_record
    from kame.train.reoracle import _record_oracle

    path = tmp_path / "synth.json"
    path.write_text(json.dumps({"llm": "none", "seed": 5, "tokenizer": "/x/A.model", "cleaning": 1}))
    monkeypatch.chdir(tmp_path)
    args = SimpleNamespace(llm="random", seed=2, tokenizer="B.model")
    _record_oracle(path, read_record(tmp_path, ""), args, SimOracleConfig(), whole=False)
    assert json.loads(path.read_text())["tokenizer"] == str(tmp_path / "B.model")
    monkeypatch.chdir("/")
    assert f"--tokenizer {tmp_path / 'B.model'} " in stale_cleaning(tmp_path / "train.jsonl")
    args.tokenizer = None  # (kame's default: recorded as such)
    _record_oracle(path, read_record(tmp_path, ""), args, SimOracleConfig(), whole=False)
    assert json.loads(path.read_text())["tokenizer"] is None and "--tokenizer" not in stale_cleaning(tmp_path /
                                                                                                     "train.jsonl")


def test_a_damaged_record_is_refused_by_a_synth_resume_and_said_by_kame_train(tmp_path):
    """One reader of synth.json (datacmd.read_record), reoracle's rule: a synth resume refuses a
    damaged record, before the run, and leaves it (was: read as none, and the resume wrote its own
    over it, the new cleaning version over dialogues it skipped); kame train's note says it (was:
    nothing said)."""
    path = tmp_path / "synth.json"
    cut = '{"qa": "/q.jsonl", "cleaning": 2, "llm": "ran'
    path.write_text(cut)
    with pytest.raises(DataError) as exc:
        _settings_to_record(tmp_path, {"qa": "/q.jsonl", "llm": "random", "cleaning": CLEANING_VERSION})
    assert (f"{path}: not readable JSON" in str(exc.value) and "remove it" in str(exc.value)
            and "then run `kame data synth` again" in str(exc.value)), exc.value
    assert path.read_text() == cut
    note = stale_cleaning(tmp_path / "train.jsonl")
    assert note is not None and note.startswith(f"{path}: not readable JSON") and "remove it" in note, note
    path.write_text("[1]")
    assert "a JSON list, not an object" in stale_cleaning(tmp_path / "train.jsonl")


def test_a_record_of_a_tokenizer_as_typed_is_no_other_tokenizer(tmp_path, monkeypatch, caplog):
    """A set made before kame resolved --tokenizer recorded it as typed: a resume with the same file
    from the same folder is not warned of another tokenizer (was: "tokenizer was 'tok.model'; the set
    will mix them")."""
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(qa="qa.jsonl", format="auto", language=None, images=False, llm="none",
                              tokenizer="tok.model", turns=1)
    settings = settings_of(args, SynthConfig(), SimOracleConfig())
    (tmp_path / "synth.json").write_text(json.dumps({**settings, "tokenizer": "tok.model"}))
    with caplog.at_level(logging.WARNING):
        assert _settings_to_record(tmp_path, settings) == settings
    assert "other settings" not in caplog.text, caplog.text
    (tmp_path / "synth.json").write_text(json.dumps({**settings, "tokenizer": "other.model"}))  # (another: warned)
    with caplog.at_level(logging.WARNING):
        _settings_to_record(tmp_path, settings)
    assert f"tokenizer was {str(tmp_path / 'other.model')!r}" in caplog.text, caplog.text


def test_a_run_that_writes_no_dialogue_leaves_synth_json_as_it_was(tmp_path, monkeypatch, caplog):
    """synth.json describes the set: a rerun with other settings that only skips (writes nothing)
    warns but leaves it (was: rewritten, so a third run with the set's true settings was warned of
    mixed ones); one that writes a dialogue records its settings."""
    import kame.train.synth as synth_mod
    from kame.cli import main

    monkeypatch.setattr(synth_mod, "_Voices", ToneVoices)
    qa, out = _qa_file(tmp_path, 3), tmp_path / "sj"
    base = ["data", "synth", str(qa), "-o", str(out), "--limit", "2"]
    assert main([*base, "--llm", "none"]) == 0
    settings = (out / "synth.json").read_text()
    assert json.loads(settings)["llm"] == "none"
    caplog.clear()
    assert main([*base, "--llm", "random", "--seed", "7"]) == 0  # both items there: skipped
    assert "other settings (llm, seed" in caplog.text
    assert (out / "synth.json").read_text() == settings
    caplog.clear()
    assert main([*base, "--llm", "none"]) == 0
    assert "other settings" not in caplog.text
    assert main(["data", "synth", str(qa), "-o", str(out), "--llm", "random", "--seed", "7"]) == 0  # writes item 2
    assert json.loads((out / "synth.json").read_text())["llm"] == "random"


def test_a_resume_over_a_damaged_record_is_refused_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """A cut synth.json: the resume refuses it, naming it, before any item (was: read as none, the run
    went on and wrote its own record over it, the new cleaning version over the dialogues it skipped)."""
    import kame.train.synth as synth_mod
    from kame.cli import main

    monkeypatch.setattr(synth_mod, "_Voices", ToneVoices)
    qa, out = _qa_file(tmp_path, 2), tmp_path / "cut"
    base = ["data", "synth", str(qa), "-o", str(out), "--llm", "none"]
    assert main([*base, "--limit", "1"]) == 0
    (out / "synth.json").write_text('{"qa": "x", "cleaning": 2, "llm": "ran')
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(base) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert (f"kame: error: {out / 'synth.json'}: not readable JSON" in err and "remove it" in err
            and "then run `kame data synth` again" in err), err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_resume_of_a_set_made_before_the_cleaning_version_warns(tmp_path, monkeypatch, caplog):
    """A synth.json without "cleaning" (written before kame recorded the cleaner's version) is
    version 1's: resuming that set with this kame's cleaner warns that it mixes them (was: silent,
    the key missing from the old record)."""
    import kame.train.synth as synth_mod
    from kame.backend.speech_text import CLEANING_VERSION
    from kame.cli import main

    monkeypatch.setattr(synth_mod, "_Voices", ToneVoices)
    qa, out = _qa_file(tmp_path, 3), tmp_path / "old"
    base = ["data", "synth", str(qa), "-o", str(out), "--llm", "none"]
    assert main([*base, "--limit", "1"]) == 0
    record = json.loads((out / "synth.json").read_text())
    assert record.pop("cleaning") == CLEANING_VERSION
    (out / "synth.json").write_text(json.dumps(record))
    caplog.clear()
    assert main([*base, "--limit", "2"]) == 0
    assert "other settings (cleaning: cleaning was 1)" in caplog.text
    # the record keeps the older cleaning: the dialogue the resume skipped has it, so kame train warns on
    # (was: this kame's recorded, and the warning went)
    from kame.train.oracle_sim import stale_cleaning

    assert "cleaning" not in json.loads((out / "synth.json").read_text())
    assert "records no cleaning version" in stale_cleaning(out / "train.jsonl")
    (out / "synth.json").write_text(json.dumps({**record, "cleaning": CLEANING_VERSION - 1}))
    assert main([*base, "--limit", "3"]) == 0
    assert json.loads((out / "synth.json").read_text())["cleaning"] == CLEANING_VERSION - 1
