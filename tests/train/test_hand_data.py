"""A dataset written by hand, as an outside author would (qa5): what kame says about an oracle
given as text alone, the keys of dialogue.json left out or rounded, malformed words and events,
a missing audio.wav, a manifest without meta_sha256, and `kame data encode` checking every
dialogue's oracle against the tokenizer in one run."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from kame.train.data import AUDIO, CODES, META, DataError, OracleEvent, Word, read_dialogue, write_dialogue, write_meta
from kame.train.examples import check_oracle_tokens, retokenize_oracle, training_example
from kame.train.manifest import read_manifest, write_manifest

from ._fakes import FakeCodec, dialogue
from .test_format_checks import edited_folder

TEXT_ONLY = [OracleEvent(2, "reset"), OracleEvent(2, "append", text="Hello there")]


def _written(tmp_path, name="d", **kw):
    return write_dialogue(tmp_path / name, dialogue(16, words=[Word("agent", "Hello", 0.5, 0.8)], **kw))




# --- 1: an append with text but no ids fed nothing, silently --------------------------------------
def test_a_prediction_given_as_text_alone_is_refused_saying_how_to_encode_it(tmp_path, tok, cfg):
    folder = _written(tmp_path, oracle=TEXT_ONLY)
    d = read_dialogue(folder)  # (readable: so that its text can be encoded)
    with pytest.raises(DataError) as e:
        training_example(d, FakeCodec(), tok, cfg, use_cache=False)
    said = str(e.value)
    assert str(folder / META) in said and "oracle event 1 (append at frame 2) has text 'Hello there'" in said, said
    assert "no ids" in said and "retokenize_oracle" in said and "kame data oracle" in said, said
    # the fix it gives: the text encoded by the training tokenizer, stored; the prediction is then fed
    write_meta(retokenize_oracle(read_dialogue(folder, audio=False), tok))
    d = read_dialogue(folder)
    _, oracle = training_example(d, FakeCodec(), tok, cfg, use_cache=False)
    ids = tok.encode("Hello there")
    assert d.tokenizer_sha256 == tok.sha256 and oracle[2: 3 + len(ids)].tolist() == [cfg.text_card, *ids]


def test_an_append_whose_word_is_held_back_for_the_next_is_still_accepted(tok, cfg):
    """retokenize_oracle's own output: an append with text and no ids, its word's ids in a later
    append of the same prediction (docs/data.md keeps it)."""
    d = retokenize_oracle(dialogue(16, oracle=[OracleEvent(2, "reset"), OracleEvent(2, "append", text="Hel"),
                                               OracleEvent(4, "append", text="lo there")]), tok)
    assert d.oracle[1].ids == [] and d.oracle[2].ids
    training_example(d, FakeCodec(), tok, cfg, use_cache=False)
    d.oracle = [OracleEvent(1, "reset"), OracleEvent(1, "append", [5]), *TEXT_ONLY]  # (the second one feeds nothing)
    d.tokenizer_sha256 = tok.sha256
    with pytest.raises(DataError, match=r"^dialogue: oracle event 3 .* has text 'Hello there' but no ids, nor has "
                                        r"a later append.*d = kame\.train\.examples\.retokenize_oracle\(d, tokenizer\)"):
        training_example(d, FakeCodec(), tok, cfg, use_cache=False)


def test_text_appended_after_a_predictions_last_ids_is_refused(tok, cfg):
    """Review r2 #1: a prediction with ids whose later append has text alone was accepted, that text
    never fed (only a prediction with no ids at all was refused)."""
    d = dialogue(16, oracle=[OracleEvent(2, "reset"), OracleEvent(2, "append", tok.encode("Hello"), text="Hello"),
                             OracleEvent(4, "append", text=" there, the answer is 42")])
    d.tokenizer_sha256 = tok.sha256
    with pytest.raises(DataError, match=r"^dialogue: oracle event 2 \(append at frame 4\) has text ' there, the "
                                        r"answer is 42' but no ids, nor has a later append of its prediction"):
        check_oracle_tokens(d, tok)
    # retokenize_oracle's own output passes, also when the held-back word went to a blank last append
    for texts in (["Hello wor", "ld", " "], ["Hello", " there, the answer is 42"]):
        d = retokenize_oracle(dialogue(16, oracle=[OracleEvent(2, "reset"),
                                                   *(OracleEvent(2 + i, "append", text=t) for i, t in enumerate(texts))]),
                              tok)
        check_oracle_tokens(d, tok)
        if texts[-1] == " ":  # ("ld", its last append with text, has none: "world" went to the blank one)
            assert d.oracle[2].ids == [] and d.oracle[3].ids, d.oracle


# --- 3, 4: dialogue.json's numbers: missing keys named, a rounded duration_s accepted ------------
@pytest.mark.parametrize("key", ["samples", "frames", "duration_s", "sample_rate"])
def test_a_missing_key_of_dialogue_json_is_named_as_missing(tmp_path, key):
    folder = _written(tmp_path)
    said = edited_folder(folder, lambda d: d.pop(key))
    assert said.startswith(f"{folder / META}: required key {key!r} is missing"), said
    assert "docs/data.md, Keys" in said and "belong together" not in said, said


def test_a_duration_rounded_to_hundredths_is_accepted_and_a_wrong_one_says_the_value(tmp_path):
    d = dialogue(17)
    folder = write_dialogue(tmp_path / "d", replace(d, audio=d.audio[:31000]))  # 1.291666... s
    for rounded in (1.292, 1.29):
        assert edited_folder(folder, lambda doc: doc.__setitem__("duration_s", rounded)) == ""
    said = edited_folder(folder, lambda doc: doc.__setitem__("duration_s", 1.31))
    assert "duration_s 1.31, but its 31000 samples last 1.291667 s (duration_s is samples / 24000, to " in said, said
    assert "set duration_s to 1.2916666666666667" in said and "belong together" not in said, said
    assert "set frames to 17" in edited_folder(folder, lambda doc: doc.__setitem__("frames", 16))


# --- 5: a malformed word or event: which one, and what is wrong -----------------------------------
@pytest.mark.parametrize("edit, said", [
    (lambda d: d["words"][0].pop("end"), r"word 0 lacks 'end' \(each word has speaker, word, start, end"),
    (lambda d: d["oracle"][0].pop("frame"), r"oracle event 0 lacks 'frame' \(each oracle event has frame, event"),
    (lambda d: d["oracle"].append(["reset"]), r"oracle event 2 is not an object: \['reset'\]"),
    (lambda d: d["oracle"][0].__setitem__("frame", 2.0), r"oracle event 0: frame must be an int .* got 2\.0"),
    (lambda d: d["oracle"][1].__setitem__("ids", "667"), r"oracle event 1: ids must be a list .* got '667'$"),
    (lambda d: d["oracle"][1].__setitem__("ids", None), r"oracle event 1: ids must be a list .* got None$"),
    (lambda d: d["words"][0].__setitem__("word", 5), r"word 0: word must be a string, got 5$"),
])
def test_a_malformed_word_or_event_is_located_and_named(tmp_path, tok, edit, said):
    folder = _written(tmp_path, oracle=[OracleEvent(2, "reset"), OracleEvent(2, "append", [5])],
                      tokenizer_sha256=tok.sha256)
    msg = edited_folder(folder, edit)
    assert msg.startswith(str(folder / META)) and re.search(said, msg), msg


# --- 6: no audio.wav ------------------------------------------------------------------------------
def test_a_missing_audio_wav_is_said_so(tmp_path):
    folder = _written(tmp_path)
    (folder / AUDIO).unlink()
    for audio in (True, False):
        with pytest.raises(DataError, match=rf"^{re.escape(str(folder))}: no audio\.wav \(a dialogue folder holds "
                                            rf"audio\.wav and dialogue\.json"):
            read_dialogue(folder, audio=audio)


# --- 2: a manifest without meta_sha256 cannot catch edits: said ---------------------------------
def test_a_manifest_without_meta_sha256_gets_a_note_saying_what_it_costs(tmp_path):
    from kame.train.manifest import unhashed_note

    folders = [_written(tmp_path, f"d{i}") for i in range(2)]
    path = tmp_path / "train.jsonl"
    write_manifest(path, folders)
    assert unhashed_note(read_manifest(path), path) is None
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in line.items() if k != "meta_sha256"}) + "\n"
                            for line in lines[:1]) + json.dumps(lines[1]) + "\n")
    note = unhashed_note(read_manifest(path), path)
    assert note.startswith(f"manifest {path}: 1 of its 2 lines have no meta_sha256") and "write_manifest" in note
    path.write_text('{"path": "d0", "duration": 1.28, "frames": 16}\n')  # (a hand-written line)
    assert unhashed_note(read_manifest(path), path).startswith(f"manifest {path}: its lines have no meta_sha256")


def test_a_resume_on_a_manifest_without_meta_sha256_warns_and_a_new_run_does_not(tmp_path):
    from kame.train.checkpoint import check_listed

    _written(tmp_path, "d0")
    path = tmp_path / "train.jsonl"
    path.write_text('{"path": "d0", "duration": 1.28, "frames": 16}\n')  # (a hand-written line)
    said: list[str] = []
    check_listed(path, None, said.append)
    assert said == []  # (a new run: nothing to compare yet)
    listed = check_listed(path, tmp_path / "run" / "latest", said.append)
    assert len(said) == 1 and said[0].startswith(f"warning: manifest {path}: its lines have no meta_sha256")
    assert listed == {}  # (unhashed lines are not read here: load_examples reads them)


# --- 9: kame data encode checks every dialogue's oracle against the tokenizer ------------------
def test_data_encode_reports_every_oracle_kame_train_would_refuse(tmp_path, tok, fake_codec, capsys):
    from kame.cli import main

    appended = [OracleEvent(2, "reset"), OracleEvent(2, "append", [5, 99999])]
    folders = [_written(tmp_path, "good", oracle=[OracleEvent(2, "reset"), OracleEvent(2, "append", [5])],
                        tokenizer_sha256=tok.sha256),
               _written(tmp_path, "vocab", oracle=appended, tokenizer_sha256=tok.sha256),
               _written(tmp_path, "other", oracle=appended[:1] + [OracleEvent(2, "append", [5])],
                        tokenizer_sha256="0" * 64),
               _written(tmp_path, "text", oracle=TEXT_ONLY)]
    write_manifest(tmp_path / "train.jsonl", folders)
    (folders[1] / CODES).write_bytes(b"")  # (one with a cache, stale: checked as well)
    rc = main(["data", "encode", str(tmp_path), "--codec", fake_codec, "--jobs", "1", "--tokenizer", str(tok.path)])
    out = capsys.readouterr().out
    assert rc == 1, out
    said = {line.split(": ")[1] for line in out.splitlines() if line.startswith("oracle: ")}
    assert said == {str(f) for f in folders[1:]}, out
    assert "has ids [99999]" in out and "tokenizer sha256 " + "0" * 64 in out and "has text 'Hello there'" in out
    assert "3 of the 4 dialogues have an oracle kame train refuses with this tokenizer" in out, out
    assert all((f / CODES).stat().st_size for f in folders), out  # (their audio is fine: encoded all the same)


def test_data_encode_without_tokenizer_checks_only_text_without_ids(tmp_path, tok, fake_codec, capsys):
    """Review r2 #2: without --tokenizer, a set made with another front-end's tokenizer (Moshi's) was
    refused against kame's default one (exit 1); now only what needs no tokenizer is checked."""
    from kame.cli import main

    moshi = [OracleEvent(2, "reset"), OracleEvent(2, "append", [5, 31999])]  # (ids past kame's 4000 pieces)
    folders = [_written(tmp_path, "moshi", oracle=moshi, tokenizer_sha256="0" * 64)]
    write_manifest(tmp_path / "train.jsonl", folders)
    assert main(["data", "encode", str(tmp_path), "--codec", fake_codec, "--jobs", "1"]) == 0, capsys.readouterr()
    assert "oracle: " not in capsys.readouterr().out
    folders.append(_written(tmp_path, "text", oracle=TEXT_ONLY))
    write_manifest(tmp_path / "train.jsonl", folders)
    assert main(["data", "encode", str(tmp_path), "--codec", fake_codec, "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    assert [line.split(": ")[1] for line in out.splitlines() if line.startswith("oracle: ")] == [str(folders[1])], out
    assert "1 of the 2 dialogues have an oracle kame train refuses (text without ids)" in out, out


def test_data_encode_loads_the_tokenizer_before_the_codec(tmp_path, fake_codec, monkeypatch, capsys):
    """Review r2 #3: a mistyped --tokenizer was said only after the codec was made (Mimi: its weights)."""
    from kame.cli import main
    from kame.train import encode

    write_manifest(tmp_path / "train.jsonl", [_written(tmp_path)])
    made = []
    monkeypatch.setattr(encode, "make_codec", lambda *a: made.append(a))
    rc = main(["data", "encode", str(tmp_path), "--codec", fake_codec, "--tokenizer", str(tmp_path / "nope.model")])
    assert rc != 0 and made == [], (rc, made)
    assert "--tokenizer" in capsys.readouterr().err


def test_data_encode_lists_a_problem_shared_by_a_whole_set_three_times(tmp_path, tok, fake_codec, capsys):
    """(QA6 #4; was: one ~300-character line per dialogue, 500 for a set of 500 made with another
    tokenizer)"""
    from kame.cli import main
    from kame.train.encode import SAME_PROBLEM_SHOWN

    other = [OracleEvent(2, "reset"), OracleEvent(2, "append", [5])]
    folders = [_written(tmp_path, f"d{i}", oracle=other, tokenizer_sha256="0" * 64) for i in range(5)]
    write_manifest(tmp_path / "train.jsonl", folders)
    assert main(["data", "encode", str(tmp_path), "--codec", fake_codec, "--jobs", "1", "--tokenizer", str(tok.path)]) == 1
    out = capsys.readouterr().out
    assert sum(line.startswith("oracle: ") for line in out.splitlines()) == SAME_PROBLEM_SHOWN == 3, out
    assert "5 of the 5 dialogues have an oracle kame train refuses with this tokenizer" in out
    assert "; 2 more with the same problem as one shown, not listed" in out, out
