"""What kame's training files say about themselves is checked when they are read (the formats QA
sweep): a resumed run's settings of a newer kame, a codes cache's values, dialogue.json's required
lists, rate, duration and version, an oracle id its tokenizer has not, OUT.json fields of the
wrong type, and a mistyped --llm. Each is a kame error naming the file (or option) and what to do."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kame.backend.tokenizer import default_tokenizer
from kame.cli import main as cli_main
from kame.errors import ConfigError
from kame.train.batching import cached_dialogue
from kame.train.codes import load_codes, write_codes
from kame.train.config import STATE, TrainConfig, check_resume, resume_record
from kame.train.data import CODES, META, DataError, OracleEvent, Word, read_dialogue, write_dialogue
from kame.train.examples import training_example
from kame.train.recorded import from_kame_run

from ._fakes import FakeCodec, dialogue
from .test_recorded import write_run


# --- kame train --resume: a setting this kame has no knob for (A2) -----------------------------
def _record(**extra) -> dict:
    from dataclasses import asdict

    return {"config": {**json.loads(json.dumps(asdict(TrainConfig()))), **extra}, "world_size": 1,
            "manifest": "m.jsonl", "manifest_sha256": "ab" * 32, "frontend": "random:tiny"}


def test_a_resume_refuses_training_settings_of_a_newer_kame(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"kame": {"train": _record()}}))
    assert resume_record(tmp_path)["config"]["lr"] == TrainConfig.lr  # (this kame's own: resumes)
    (tmp_path / "config.json").write_text(json.dumps({"kame": {"train": _record(speaker_dropout=0.3)}}))
    with pytest.raises(ConfigError, match=r"config\.json records training settings this kame does not know "
                                          r"\(speaker_dropout\).*newer kame.*upgrade kame"):
        resume_record(tmp_path)
    # train_state.pt's record (what train() checks) is refused the same way, naming that file
    with pytest.raises(ConfigError, match=rf"{STATE} records .*\(speaker_dropout\).*newer kame"):
        check_resume(_record(speaker_dropout=0.3), TrainConfig(), "ab" * 32, 1, tmp_path)
    check_resume(_record(), TrainConfig(), "ab" * 32, 1, tmp_path)  # (the same run: no error)


# --- codes.npz values (A5) -----------------------------------------------------------------------
def _cached(tmp_path):
    d = read_dialogue(write_dialogue(tmp_path / "d", dialogue(16)))
    write_codes(d, FakeCodec(), spec="fake")
    return d, tmp_path / "d" / CODES


def _rewrite(path, **change):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(change)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_a_codes_cache_with_codes_the_codec_cannot_make_is_refused_by_name(tmp_path):
    d, path = _cached(tmp_path)
    with np.load(path) as z:
        user = z["user"].copy()
    user[0, 0] = 5000  # (the codec has 2048 codes)
    _rewrite(path, user=user)
    with pytest.raises(DataError, match=rf"{path}: its user codes span \[\d+, 5000\], outside the codec's "
                                        rf"\[0, 2048\): write it again"):
        load_codes(d, FakeCodec())
    said = []  # kame train and kame data encode: said, and encoded again
    assert cached_dialogue(d.folder, FakeCodec(), said.append) is None
    assert str(path) in said[0] and said[0].endswith("encoding it again")
    _rewrite(path, user=user.astype(np.float32) * 0 + 1.5)  # float codes: not cut to ints silently
    with pytest.raises(DataError, match=rf"{path}: its user codes are float32, not integers"):
        load_codes(d, FakeCodec())


def test_a_codes_cache_whose_codebook_count_is_a_string_says_so(tmp_path):
    d, path = _cached(tmp_path)
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
    _rewrite(path, meta=np.array(json.dumps({**meta, "num_codebooks": "8"})))
    with pytest.raises(DataError, match=r"cached with '8' codebooks, the codec codes with 8"):
        load_codes(d, FakeCodec())


# --- dialogue.json (A7, B4, B6) ------------------------------------------------------------------
def _edited(tmp_path, edit) -> str:
    tok = default_tokenizer()
    d = dialogue(16, words=[Word("agent", "hello", 0.1, 0.4)],
                 oracle=[OracleEvent(2, "reset", hint=0), OracleEvent(2, "append", tok.encode_words(["hello"]))],
                 tokenizer_sha256=tok.sha256)
    return edited_folder(write_dialogue(tmp_path / "d", d, overwrite=True), edit)


def edited_folder(folder, edit) -> str:
    """read_dialogue's DataError (naming dialogue.json) after ``edit`` of FOLDER's dialogue.json ("" when none)."""
    doc = json.loads((folder / META).read_text())
    edit(doc)
    (folder / META).write_text(json.dumps(doc))
    try:
        read_dialogue(folder, audio=False)
    except DataError as exc:
        assert str(folder / META) in str(exc), exc
        return str(exc)
    return ""


@pytest.mark.parametrize("edit, said", [
    (lambda d: d.pop("words"), r"'words' is missing \(a dialogue\.json lists its words, \[\] when it has none"),
    (lambda d: d.__setitem__("turns", d.pop("words")), r"'words' is missing"),  # (renamed)
    (lambda d: d.__setitem__("words", {}), r"'words' is a dict, not a list"),
    (lambda d: d.pop("oracle"), r"'oracle' is missing"),
    (lambda d: d.__setitem__("events", d.pop("oracle")), r"'oracle' is missing"),
    (lambda d: d.__setitem__("sample_rate", 16000), r"sample_rate 16000, a dialogue's audio is 24000 Hz"),
    (lambda d: d.__setitem__("sample_rate", "24000"), r"sample_rate '24000'"),
    (lambda d: d.__setitem__("duration_s", 99.0),
     r"duration_s 99\.0, but its 30720 samples last 1\.280000 s .*set duration_s to 1\.28"),
    (lambda d: d.__setitem__("duration_s", "x"), r"duration_s 'x'"),
    (lambda d: d.__setitem__("version", 2), r"version 2, this kame reads version 1: it was made by a newer kame; "
                                            r"upgrade kame"),
    (lambda d: d.__setitem__("version", 0), r"version 0, this kame reads version 1: it was made by an older kame; "
                                            r"make the dialogue again"),
    (lambda d: d.__setitem__("version", "1"), r"version '1', expected the int 1"),
    (lambda d: d.__setitem__("format", "moshi"), r"format 'moshi', not a 'kame-dialogue' file"),
])
def test_a_dialogue_json_without_its_lists_or_of_another_rate_or_version_is_refused(tmp_path, edit, said):
    import re

    msg = _edited(tmp_path, edit)
    assert re.search(said, msg), msg


def test_the_optional_keys_of_a_dialogue_json_may_be_left_out(tmp_path):
    assert _edited(tmp_path, lambda d: (d.pop("source"), d.__setitem__("duration_s", 1.28))) == ""
    assert _edited(tmp_path, lambda d: d.__setitem__("words", [])) == ""  # (an empty list: no words)


# --- an oracle id its tokenizer has not (A8) -----------------------------------------------------
def test_a_corrupt_oracle_id_is_blamed_on_the_dialogue_not_the_front_end(tmp_path, tok, cfg):
    d = dialogue(16, oracle=[OracleEvent(2, "reset", hint=0), OracleEvent(3, "append", [5, 999999])],
                 tokenizer_sha256=tok.sha256)
    write_dialogue(tmp_path / "d", d)
    with pytest.raises(DataError) as e:
        training_example(d, FakeCodec(), tok, cfg, use_cache=False)
    said = str(e.value)
    assert str(tmp_path / "d" / META) in said and "oracle event 1 (frame 3) has ids [999999]" in said, said
    assert "4000 pieces" in said and "kame data oracle" in said and "text_card" not in said, said


# --- OUT.json fields of the wrong type (A9) ------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*does not record:UserWarning")  # (an older recording's layout)
@pytest.mark.parametrize("key, value, said", [
    ("user_words", [{"word": 5, "start": 0.1, "end": 0.2}], r"user_words\[0\]\.word is 5, not a string"),
    ("user_words", [{"word": "hi", "start": "a", "end": 0.2}], r"user_words\[0\]\.start is 'a', not a number"),
    ("agent_text", [{"t": "x", "text": " hi"}], r"agent_text\[0\]\.t is 'x', not a number"),
    ("agent_text", [{"t": 0.5, "text": 5}], r"agent_text\[0\]\.text is 5, not a string"),
    ("agent_text", {}, r"agent_text is a dict, not the list `kame run` writes"),
    ("user_words", "hello", r"user_words is a str, not the list"),
    ("oracle", [{"event": "reset", "t": "soon"}], r"oracle event 0's t is 'soon', not a number"),
    ("oracle", ["reset"], r"oracle\[0\] is 'reset', not an object"),
])
def test_an_out_json_field_of_the_wrong_type_is_a_data_error_naming_it(tmp_path, key, value, said):
    out_json = write_run(tmp_path)[0]
    doc = json.loads(out_json.read_text())
    doc[key] = value
    out_json.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=rf"{out_json}: {said}"):
        from_kame_run(out_json)


# --- a mistyped --llm (the CLI sweep) ------------------------------------------------------------
@pytest.mark.parametrize("command", ["synth", "oracle"])
def test_a_mistyped_llm_names_the_option_and_its_plain_values_and_writes_nothing(tmp_path, capsys, command):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Two plus two?", "answer": "Four."}) + "\n")
    out = tmp_path / "dz"
    argv = (["data", "synth", str(qa), "-o", str(out)] if command == "synth"
            else ["data", "oracle", str(tmp_path / "nowhere")])
    assert cli_main([*argv, "--llm", "rand"]) == 1
    err = capsys.readouterr().err
    assert "--llm: unknown llm spec 'rand'" in err and "'random'" in err and "'none'" in err, err
    assert not out.exists()  # (data synth: no empty -o folder left behind)
