"""kame.train.data and .codes: a dialogue folder round-trips, bad dialogues are refused with errors that say
what is wrong, the manifest, and the codes cache (used when it matches, an error when stale)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from kame.train.codes import encode_dialogue, load_codes, write_codes
from kame.train.data import AUDIO, CODES, META, DataError, Dialogue, OracleEvent, Word, read_dialogue, write_dialogue
from kame.train.manifest import read_manifest, write_manifest

from ._fakes import FakeCodec, audio, dialogue

SHA = "12" * 32


def sample(T: int = 16, seed: int = 0) -> Dialogue:
    words = [Word("user", "what's", 0.0, 0.3), Word("agent", "hello", 0.1, 0.4), Word("user", "up?", 0.3, 0.5),
             Word("agent", "there.", 0.5, 0.9)]
    oracle = [OracleEvent(4, "reset", prediction=1, hint=2), OracleEvent(4, "append", [11, 12], " hi"),
              OracleEvent(6, "append", [13]), OracleEvent(9, "reset", hint=0)]
    return dialogue(T, seed, words=words, oracle=oracle, tokenizer_sha256=SHA, source={"qa": "gsm8k/12"})


def test_a_dialogue_round_trips_through_its_folder(tmp_path):
    d = sample()
    folder = write_dialogue(tmp_path / "d1", d)
    assert sorted(p.name for p in folder.iterdir()) == [AUDIO, META] and d.folder == folder
    doc = json.loads((folder / META).read_text())
    assert doc["format"] == "kame-dialogue" and doc["frames"] == 16 and doc["samples"] == 16 * 1920
    assert doc["oracle"][0] == {"frame": 4, "event": "reset", "prediction": 1, "hint": 2}
    assert doc["oracle"][1] == {"frame": 4, "event": "append", "ids": [11, 12], "text": " hi"}
    info = sf.info(str(folder / AUDIO))
    assert (info.samplerate, info.channels) == (24000, 2)
    back = read_dialogue(folder)
    assert back.words == d.words and back.oracle == d.oracle and back.source == {"qa": "gsm8k/12"}
    assert back.tokenizer_sha256 == SHA and back.frames == 16 and back.folder == folder
    assert np.abs(back.audio - sample().audio).max() < 1e-4  # 16-bit
    assert np.array_equal(back.audio, d.audio)  # d now holds the samples as stored
    assert back.timeline_events()[:2] == [(4, "reset"), (4, "append", [11, 12])]
    head = read_dialogue(folder, audio=False)  # header only: for manifests
    assert head.samples == back.samples and head.words == back.words


def test_numpy_values_are_written_as_json_numbers(tmp_path):
    d = dialogue(words=[Word("agent", "hi", np.float32(0.25), np.float64(0.5))],
                 oracle=[OracleEvent(np.int64(3), "reset", hint=np.int64(1)), OracleEvent(3, "append", list(np.arange(2)))],
                 tokenizer_sha256=SHA)
    doc = json.loads((write_dialogue(tmp_path / "d", d) / META).read_text())
    assert doc["words"][0]["start"] == 0.25 and doc["oracle"] == [
        {"frame": 3, "event": "reset", "hint": 1}, {"frame": 3, "event": "append", "ids": [0, 1]}]
    assert read_dialogue(tmp_path / "d").oracle[1].ids == [0, 1]


def test_write_refuses_to_replace_unless_told_and_drops_a_stale_cache(tmp_path):
    write_dialogue(tmp_path / "d", sample())
    with pytest.raises(DataError, match="already holds a dialogue; pass overwrite=True"):
        write_dialogue(tmp_path / "d", sample(seed=1))
    d = read_dialogue(tmp_path / "d")
    write_codes(d, FakeCodec(), spec="fake")
    write_dialogue(tmp_path / "d", sample(seed=1), overwrite=True)
    assert not (tmp_path / "d" / CODES).exists()


def _bad(**change) -> Dialogue:
    d = sample()
    for k, v in change.items():
        setattr(d, k, v)
    return d


@pytest.mark.parametrize("change, message", [
    (dict(audio=np.zeros(1920, np.float32)), r"stereo samples \[N, 2\].*mono"),
    (dict(audio=np.zeros((1920, 1), np.float32)), r"mono: a dialogue needs both speakers"),
    (dict(audio=np.zeros((0, 2), np.float32)), r"no samples"),
    (dict(audio=np.zeros((1920, 2), np.int16)), r"int16\? divide by 32768"),
    (dict(audio=np.full((1920, 2), np.nan, np.float32)), r"finite float samples"),
    (dict(words=[Word("bot", "hi", 0, 0.1)]), r"speaker 'bot' is not one of user, agent"),
    (dict(words=[Word("user", "hi there", 0, 0.1)]), r"'hi there' must be one word.*without whitespace"),
    (dict(words=[Word("user", "", 0, 0.1)]), r"must be one word, non-empty"),
    (dict(words=[Word("agent", "late", 1.2, 1.4)]), r"word 0 \('late'\): times 1.2-1.4 s outside the audio \[0, 1.28\]"),
    (dict(words=[Word("agent", "back", 0.5, 0.4)]), r"outside the audio.*or end before start"),
    (dict(words=[Word("agent", "nan", float("nan"), 0.4)]), r"finite numbers of seconds"),
    (dict(words=[Word("agent", "b", 0.5, 0.6), Word("user", "x", 0.1, 0.2), Word("agent", "a", 0.2, 0.3)]),
     r"word 2 \('a'\): starts at 0.2 s, before the agent's previous word \(0.5 s\): sort"),
    (dict(oracle=[OracleEvent(16, "reset")]), r"oracle event 0: frame 16 outside the dialogue's frames \[0, 16\)"),
    (dict(oracle=[OracleEvent(-1, "reset")]), r"frame -1 outside"),
    (dict(oracle=[OracleEvent(5, "reset"), OracleEvent(4, "append", [1])]), r"event 1: frame 4 comes after an event at frame 5"),
    (dict(oracle=[OracleEvent(5, "start")]), r"event 'start' is not one of reset, append"),
    (dict(oracle=[OracleEvent(5, "append", [1, -2])]), r"ids must be a list of token ids >= 0"),
    (dict(oracle=[OracleEvent(5, "reset", [1])]), r"a reset carries no ids or text"),
    (dict(oracle=[OracleEvent(5, "reset", hint=-1)]), r"hint must be an int >= 0 or null"),
    (dict(tokenizer_sha256=None), r"oracle has token ids but no tokenizer_sha256"),
    # (an append's hint or prediction would be lost on write: they are the reset's)
    (dict(oracle=[OracleEvent(5, "reset"), OracleEvent(5, "append", [1], hint=2)]),
     r"oracle event 1: an append with hint=2: hint/prediction/use_hint belong on the reset"),
    (dict(oracle=[OracleEvent(5, "reset"), OracleEvent(5, "append", [1], prediction=1)]),
     r"an append with prediction=1: hint/prediction/use_hint belong on the reset"),
    (dict(oracle=[OracleEvent(5, "reset"), OracleEvent(6, "append", [])]),
     r"oracle event 1: an append with neither ids nor text: leave it out \(an empty append is no call"),
    (dict(sample_rate=16000), r"sample_rate 16000, a dialogue's audio is 24000 Hz.*resample it "
                              r"\(kame.audio.resample\(audio, 16000, 24000\)\)"),
    (dict(audio=np.full((1920, 2), 0.5, np.float32) * np.array([1, 3], np.float32)),
     r"audio peaks at 1.5, above 1.0 \(full scale\): 16-bit audio.wav would clip it; scale it down"),
    (dict(tokenizer_sha256="abc"), r"'abc' is not a sha256"),
])
def test_bad_dialogues_are_refused_saying_what_is_wrong(tmp_path, change, message):
    with pytest.raises(DataError, match=message):
        write_dialogue(tmp_path / "d", _bad(**change))
    assert not (tmp_path / "d").exists()  # nothing written


def test_bad_files_are_refused_naming_them(tmp_path):
    folder = write_dialogue(tmp_path / "d", sample())
    wav = folder / AUDIO
    pcm, _ = sf.read(str(wav))
    sf.write(str(wav), pcm, 16000)
    with pytest.raises(DataError, match=r"audio.wav: 16000 Hz, a dialogue's audio is 24000 Hz.*resample"):
        read_dialogue(folder)
    sf.write(str(wav), pcm[:, 0], 24000)
    with pytest.raises(DataError, match=r"1 channel\(s\), a dialogue's audio is stereo: user left, agent right"):
        read_dialogue(folder)
    sf.write(str(wav), pcm[:-5], 24000)
    with pytest.raises(DataError, match=r"30715 samples, dialogue.json says 30720"):
        read_dialogue(folder)
    sf.write(str(wav), pcm, 24000)
    doc = json.loads((folder / META).read_text())
    doc["words"][1]["start"] = 5.0
    (folder / META).write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"dialogue.json: word 1 \('hello'\): times 5-0.4 s"):
        read_dialogue(folder)
    del doc["words"][1]["start"]
    (folder / META).write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"dialogue.json: word 1 lacks 'start' \(each word has speaker, word, "):
        read_dialogue(folder)
    (folder / META).write_text(json.dumps({**doc, "format": "other"}))
    with pytest.raises(DataError, match=r"format 'other'"):
        read_dialogue(folder)
    with pytest.raises(DataError, match=r"no dialogue.json"):
        read_dialogue(tmp_path / "nothing")


def test_audio_problems_of_a_read_dialogue_name_its_audio_wav(tmp_path):
    """(was: "d/dialogue.json: audio peaks at 3, above 1.0 (full scale): 16-bit audio.wav would
    clip it" of a float file) The wav is named, and what its samples are."""
    folder = write_dialogue(tmp_path / "d", sample())
    wav = folder / AUDIO
    pcm, _ = sf.read(str(wav))
    sf.write(str(wav), pcm * 3 / np.abs(pcm).max(), 24000, subtype="FLOAT")
    with pytest.raises(DataError, match=r"d/audio.wav: its FLOAT samples peak at 3, above 1.0 \(full scale\): a "
                                        r"dialogue's audio is in \[-1, 1\]; scale it down") as e:
        read_dialogue(folder)
    assert META not in str(e.value) and "16-bit" not in str(e.value)
    sf.write(str(wav), pcm[:0], 24000)
    for with_audio in (True, False):
        with pytest.raises(DataError, match=r"d/audio.wav: holds no samples"):
            read_dialogue(folder, audio=with_audio)


def test_a_truncated_audio_wav_is_said_to_be_cut(tmp_path):
    """(was: "N samples, dialogue.json says M: the files do not belong together") A copy that
    stopped half-way is reported as kame run and codec roundtrip report it, header read or all."""
    folder = write_dialogue(tmp_path / "d", sample())
    wav = folder / AUDIO
    data = wav.read_bytes()
    wav.write_bytes(data[:len(data) // 2])
    have = len(data) // 2 - (len(data) - 16 * 1920 * 4)  # (16 frames of 16-bit stereo, after the header)
    for with_audio in (True, False):
        with pytest.raises(DataError, match=rf"d/audio.wav is truncated: its header announces 122880 bytes of audio, "
                                            rf"the file holds {have}\b") as e:
            read_dialogue(folder, audio=with_audio)
        assert "belong together" not in str(e.value)


def test_manifest(tmp_path):
    from kame.paths import file_sha256

    a = write_dialogue(tmp_path / "data" / "a", sample())
    b = write_dialogue(tmp_path / "elsewhere" / "b", sample(T=20, seed=3))
    entries = write_manifest(tmp_path / "data" / "train.jsonl", [a, b])
    lines = [json.loads(x) for x in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    assert lines[0] == {"path": "a", "duration": 16 * 0.08, "frames": 16, "user_words": 2, "agent_words": 2,
                        "predictions": 2, "hints": [0, 2], "meta_sha256": file_sha256(a / "dialogue.json")}
    assert lines[1]["path"] == str(b.resolve())  # outside the manifest's folder: absolute
    back = read_manifest(tmp_path / "data" / "train.jsonl")
    assert [e.path.resolve() for e in back] == [a.resolve(), b.resolve()] and back[1].frames == 20
    assert [e.frames for e in entries] == [16, 20]
    (tmp_path / "bad.jsonl").write_text('{"path": "x"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: not a manifest line"):
        read_manifest(tmp_path / "bad.jsonl")
    (tmp_path / "gone.jsonl").write_text('{"path": "x", "duration": 1, "frames": 13}\n')
    with pytest.raises(DataError, match=r"gone.jsonl:1: .*x holds no dialogue.json"):
        read_manifest(tmp_path / "gone.jsonl")


def test_a_manifest_line_hashes_the_dialogue_json_it_read(tmp_path, monkeypatch):
    """(manifest_entry parsed dialogue.json, then hashed the file again: a dialogue written again in
    between gave a line whose figures were of one file and its sha256 of the other)"""
    import hashlib

    import kame.train.data as data
    from kame.train.manifest import manifest_entry

    a = write_dialogue(tmp_path / "a", sample())
    first = (a / META).read_bytes()
    check, done = data.validate_dialogue, []

    def rewritten_meanwhile(d, where="dialogue"):  # (another process writes the dialogue again, 20 frames now)
        check(d, where)
        if not done:
            done.append(1)
            write_dialogue(a, sample(T=20, seed=3), overwrite=True)

    monkeypatch.setattr(data, "validate_dialogue", rewritten_meanwhile)
    entry = manifest_entry(a)
    assert entry.frames == 16 and entry.meta_sha256 == hashlib.sha256(first).hexdigest()
    assert (a / META).read_bytes() != first


def test_the_codes_cache_is_used_when_it_matches_and_refused_when_stale(tmp_path):
    d = read_dialogue(write_dialogue(tmp_path / "d", sample()))
    codec = FakeCodec()
    assert load_codes(d, codec) is None  # no cache yet
    user, agent = encode_dialogue(d, codec)
    assert user.shape == agent.shape == (8, 16)
    write_codes(d, codec, spec="fake")
    with np.load(tmp_path / "d" / CODES) as z:
        meta = json.loads(str(z["meta"]))
        assert z["user"].dtype == np.int16
    assert meta["codec"] == "fake" and meta["codec_sha256"] == codec.fingerprint and meta["num_codebooks"] == 8
    cu, ca = load_codes(d, codec)
    assert torch.equal(cu, user) and torch.equal(ca, agent)
    other = FakeCodec()
    other.fingerprint = "cd" * 32  # another fit of the codec
    with pytest.raises(DataError, match=r"cached with codec 'fake' sha256 abab.*this codec's fingerprint is cdcd.*write_codes"):
        load_codes(d, other)
    fewer = FakeCodec(4)
    with pytest.raises(DataError, match=r"cached with 8 codebooks, the codec codes with 4"):
        load_codes(d, fewer)
    none = FakeCodec()
    none.fingerprint = None
    with pytest.raises(DataError, match=r"has no fingerprint.*use_cache=False"):
        write_codes(d, none, spec="mimi:random")
    # a cache beside a codec without one: writing it again is no fix (write_codes refuses that codec)
    with pytest.raises(DataError, match=r"codec FakeCodec has no fingerprint \(random weights\?\) to check it "
                                        r"against: pass use_cache=False \(this codec's codes cannot be cached\)"):
        load_codes(d, none)
    pcm, _ = sf.read(str(tmp_path / "d" / AUDIO))  # the audio changed behind the cache's back
    sf.write(str(tmp_path / "d" / AUDIO), pcm * 0.5, 24000)
    with pytest.raises(DataError, match=r"made from another audio.wav"):
        load_codes(d, codec)
    with pytest.raises(DataError, match=r"no folder"):
        write_codes(Dialogue(audio([1], [2])), codec, spec="fake")


def test_an_empty_append_with_text_is_kept_and_the_rate_is_checked_on_write(tmp_path):
    """An append whose ids are held back (retokenize_oracle's, a word cut between appends) keeps
    its text; write_dialogue's sample_rate= is checked; a sound dialogue round-trips."""
    d = sample()
    d.oracle.insert(2, OracleEvent(5, "append", [], " Par"))
    with pytest.raises(DataError, match=r"d16: sample_rate 16000, a dialogue's audio is 24000 Hz.*resample it"):
        write_dialogue(tmp_path / "d16", d, sample_rate=16000)
    assert not (tmp_path / "d16").exists()
    back = read_dialogue(write_dialogue(tmp_path / "d", d, sample_rate=24000))
    assert back.oracle == d.oracle and back.sample_rate == 24000


def test_a_codec_that_does_not_code_80_ms_frames_is_named():
    class Wrong(FakeCodec):
        def encode(self, pcm):
            return super().encode(pcm)[:, :, :-1]

    with pytest.raises(DataError, match=r"Wrong.encode of the dialogue's 2 channels .* expected \[2, num_codebooks=8, frames=16\]"):
        encode_dialogue(sample(), Wrong())
