"""Work done once per dialogue, not every epoch: its validation (until a field is set again), its
audio.wav's sha256 (until the file changes), a tokenizer's sha256, a resume's read of its
dialogue.json; and the one int rule of kame.train (numpy ints are ints, bools are not)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from kame import paths
from kame.backend.tokenizer import TextTokenizer
from kame.train import codes as codes_mod
from kame.train import data, examples
from kame.train.codes import write_codes
from kame.train.data import AUDIO, DataError, OracleEvent, Word, is_int, read_dialogue, write_dialogue
from kame.train.examples import crop, retokenize_oracle, training_example, windows
from kame.train.recorded import from_kame_run

from ._fakes import FakeCodec, dialogue
from .test_recorded import write_run


@pytest.fixture
def validations(monkeypatch):
    """The validate_dialogue calls made (where each was looked up: kame.train.data, and
    kame.train.examples for a module that imports it)."""
    calls, real = [], data.validate_dialogue

    def counting(d, where="dialogue"):
        calls.append(where)
        return real(d, where)

    monkeypatch.setattr(data, "validate_dialogue", counting)
    monkeypatch.setattr(examples, "validate_dialogue", counting, raising=False)
    return calls


def flip_last_sample(wav) -> None:
    """Change audio.wav in place, at its size: the low bit of its last 16-bit sample."""
    with open(wav, "r+b") as f:
        f.seek(-2, os.SEEK_END)
        last = f.read(2)
        f.seek(-2, os.SEEK_END)
        f.write(bytes([last[0] ^ 1, last[1]]))


def test_a_dialogue_is_validated_once_until_a_field_is_set(tmp_path, tok, cfg, validations):
    write_dialogue(tmp_path / "d", dialogue(16))
    validations.clear()
    d = read_dialogue(tmp_path / "d")
    assert len(validations) == 1  # the read's
    for _ in range(3):  # epochs
        training_example(d, FakeCodec(), tok, cfg, use_cache=False)
    assert len(validations) == 1
    d.words = [Word("agent", "hi", 0.1, 0.3)]  # a field set anew: checked again, once
    training_example(d, FakeCodec(), tok, cfg, use_cache=False)
    training_example(d, FakeCodec(), tok, cfg, use_cache=False)
    assert len(validations) == 2
    d.words = [Word("agent", "hi", 5.0, 5.2)]  # past the audio's 1.28 s: still refused
    with pytest.raises(DataError, match=r"word 0 \('hi'\): times 5-5.2 s outside the audio"):
        training_example(d, FakeCodec(), tok, cfg, use_cache=False)
    # a copy with other fields (replace, as retokenize_oracle makes) is checked on its own
    d2 = replace(d, words=[])
    training_example(d2, FakeCodec(), tok, cfg, use_cache=False)
    assert len(validations) == 4
    # an in-memory dialogue: checked by its first example only; write_dialogue leaves it checked
    mem = dialogue(16)
    training_example(mem, FakeCodec(), tok, cfg, use_cache=False)
    training_example(mem, FakeCodec(), tok, cfg, use_cache=False)
    assert len(validations) == 5
    write_dialogue(tmp_path / "mem", mem)
    training_example(mem, FakeCodec(), tok, cfg, use_cache=False)
    assert len(validations) == 6  # the write's own
    # validate() always checks (after a change inside a field, which is not seen)
    mem.words.append(Word("agent", "late", 9.0, 9.1))
    with pytest.raises(DataError, match=r"'late'\): times 9-9.1 s outside the audio"):
        mem.validate()


def test_the_audio_is_hashed_once_per_version_of_the_file(tmp_path, monkeypatch, tok, cfg):
    hashed, real = [], paths.file_sha256

    def counting(path):
        hashed.append(Path(path).name)
        return real(path)

    for module in (data, codes_mod):  # (wherever it is looked up)
        monkeypatch.setattr(module, "file_sha256", counting, raising=False)
    d = dialogue(16)
    folder = write_dialogue(tmp_path / "d", d)
    codec = FakeCodec()
    write_codes(d, codec, spec="fake")
    first = training_example(d, codec, tok, cfg)
    for _ in range(3):  # epochs
        assert torch.equal(training_example(d, codec, tok, cfg)[0], first[0])
    assert codec.calls == 1 and hashed == [AUDIO]  # write_codes's encode and hash only: the cache was used
    assert d.audio_sha256() == real(folder / AUDIO)
    # audio.wav changed (its last sample; mtime moved on as a later write's): hashed again, cache refused
    wav = folder / AUDIO
    st = wav.stat()
    flip_last_sample(wav)
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"codes.npz: made from another audio.wav"):
        training_example(d, codec, tok, cfg)
    assert hashed == [AUDIO, AUDIO]
    assert d.audio_sha256() == real(wav) and hashed == [AUDIO, AUDIO]
    # a dialogue read anew hashes its file on its own first use
    d2 = read_dialogue(folder)
    write_codes(d2, codec, spec="fake")
    training_example(d2, codec, tok, cfg)
    assert hashed == [AUDIO] * 3


def test_validate_forgets_the_audios_sha256(tmp_path):
    """audio.wav rewritten in place at its size within one tick of the filesystem's clock keeps
    its key (inode, size, times): its old sha256 would be used; validate() forgets it."""
    d = dialogue(16)
    wav = write_dialogue(tmp_path / "d", d) / AUDIO
    old = d.audio_sha256()
    flip_last_sample(wav)
    st = wav.stat()  # the same key as before the rewrite (as within one tick)
    d._audio_sha256 = ((str(wav), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), old)
    assert d.audio_sha256() == old  # (the limit: the key has not changed)
    assert d.validate().audio_sha256() == paths.file_sha256(wav) != old


def test_a_tokenizer_knows_its_sha256(tok, tmp_path):
    """The sha256 of its model (= the .model file's), a property of the tokenizer, computed once."""
    from kame.backend.tokenizer import DEFAULT_MODEL

    assert tok.sha256 == paths.file_sha256(DEFAULT_MODEL)
    assert not hasattr(tok, "_kame_sha256")  # (no attribute set on it from outside)
    other = TextTokenizer(DEFAULT_MODEL.read_bytes())  # from bytes: the same model, the same sha256
    calls = []
    proto = other.sp.serialized_model_proto
    other.sp.serialized_model_proto = lambda: calls.append(1) or proto()
    assert other.sha256 == other.sha256 == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert len(calls) == 1
    # what the training code records and checks
    d = retokenize_oracle(dialogue(16, oracle=[OracleEvent(2, "reset"), OracleEvent(2, "append", text=" hi")]), tok)
    assert d.tokenizer_sha256 == tok.sha256


def test_one_int_rule_numpy_ints_are_ints_bools_are_not(tmp_path):
    assert all(is_int(x) for x in (3, -1, np.int64(3), np.int32(-1), np.uint8(2)))
    assert not any(is_int(x) for x in (True, False, np.bool_(True), 3.0, np.float32(3), "3", None))
    codes, oracle = torch.arange(40).view(4, 10), torch.arange(10)
    c, o = crop(codes, oracle, np.int64(2), np.int32(4))
    assert torch.equal(c, codes[:, 2:6]) and torch.equal(o, oracle[2:6])
    got = windows(codes, oracle, np.int64(4), np.int64(3), min_length=np.int16(2))
    want = windows(codes, oracle, 4, 3, min_length=2)
    assert [(w[0].tolist(), w[1].tolist()) for w in got] == [(w[0].tolist(), w[1].tolist()) for w in want]
    for bad in (True, 4.0):
        with pytest.raises(ValueError, match=rf"windows: length must be an int \(frames\), got {bad!r}"):
            windows(codes, oracle, bad)
    with pytest.raises(ValueError, match=r"crop: start must be an int \(frames\), got False"):
        crop(codes, oracle, False, 4)
    # a dialogue's frames, ids, hints: the same rule
    dialogue(16, oracle=[OracleEvent(np.int64(3), "reset", hint=np.int32(1)),
                         OracleEvent(3, "append", [np.int64(5)])], tokenizer_sha256="ab" * 32).validate()
    with pytest.raises(DataError, match=r"oracle event 0: frame must be an int .*, got True"):
        dialogue(16, oracle=[OracleEvent(True, "reset")]).validate()
    # and a recorded run's agent_lag
    out_json, _, _ = write_run(tmp_path)
    with pytest.warns(UserWarning):  # (an older recording: its events' frames estimated)
        assert from_kame_run(out_json, agent_lag=np.int64(2)).source["agent_lag"] == 2
    with pytest.raises(DataError, match=r"agent_lag must be an int >= 0 \(frames\), got True"):
        from_kame_run(out_json, agent_lag=True)


def test_a_resume_reads_each_dialogue_json_once(tmp_path, monkeypatch):
    """The manifest check (each line's meta_sha256) and the cached dialogues' loading share one read
    (was: hashed by the check, then read again by load_examples)."""
    from kame.backend.tokenizer import default_tokenizer
    from kame.model.loaders import load_frontend
    from kame.paths import file_sha256
    from kame.train.config import TrainConfig
    from kame.train.finetune import train

    from .test_finetune import FAST, _data, _tiny

    manifest = _data(tmp_path / "data", n=3)
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "b", TrainConfig(steps=2, **FAST),
          echo=lambda s: None)  # (encodes and caches every dialogue)
    reads = []
    monkeypatch.setattr(data, "_read_json", lambda path, real=data._read_json: reads.append(path) or real(path))
    monkeypatch.setattr(data, "file_sha256", lambda path: reads.append(path) or file_sha256(path))
    model = load_frontend(tmp_path / "b" / "latest")[0]
    resumed = train(model, FakeCodec(), default_tokenizer(), manifest, tmp_path / "b", TrainConfig(steps=3, **FAST),
                    resume=tmp_path / "b" / "latest", echo=lambda s: None)
    assert resumed.step == 3
    metas = sorted(str(p) for p in reads if p.name == data.META)
    assert len(metas) == 3 and len(set(metas)) == 3, metas
