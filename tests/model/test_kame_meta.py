"""config.json's "kame" object: what kame trained a front-end with (codec, tokenizer, their sha256,
free-form train notes). save_frontend writes it (the sha256 taken from the codec's fingerprint and
the tokenizer file), load_frontend reads it (info.kame), and a bad one is a ConfigError naming the
key. (The runtime's use of it: tests/runtime/test_frontend_checkpoint.py.)"""

import hashlib
import json
import shutil

import pytest

from kame.backend.tokenizer import DEFAULT_MODEL
from kame.codec.embedded.model import DEFAULT_SHA256
from kame.codec.embedded.model import load as load_embedded
from kame.codec.embedded.model import save as save_embedded
from kame.errors import CheckpointError, ConfigError
from kame import __version__
from kame.model.config import KAME_FORMAT
from kame.model.loaders import load_frontend, save_frontend

TOK_SHA = hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
STAMP = {"format": KAME_FORMAT, "written_by": __version__}  # every save's (kame.model.meta.stamped)


@pytest.fixture(scope="module")
def model():  # (a text vocabulary kame's 4000-piece tokenizer fits: save_frontend checks it)
    return load_frontend("random:tiny", text_card=4000)[0]


def test_save_writes_and_load_reads_what_it_was_trained_with(model, tmp_path):
    # (was: ConfigError "unknown front-end config key(s)" for each of these)
    folder = save_frontend(model, tmp_path / "ck", codec="embedded", tokenizer="default", model_type="kame",
                           train={"steps": 100, "data": ["a", "b"]})
    kame = json.loads((folder / "config.json").read_text())["kame"]
    assert kame == {**STAMP, "codec": "embedded", "codec_sha256": DEFAULT_SHA256, "tokenizer": "default",
                    "tokenizer_sha256": TOK_SHA, "train": {"steps": 100, "data": ["a", "b"]}}
    loaded, info = load_frontend(folder)
    assert info.kame == kame and info.config.meta["kame"] == kame
    assert info.tokenizer == DEFAULT_MODEL  # "default": kame's shipped vocabulary
    assert "tokenizer_name" not in info.config.meta
    # saved again: kept; a new codec replaces the old one's sha256 (its fingerprint, not the old file's)
    again = save_frontend(loaded, tmp_path / "again")
    assert json.loads((again / "config.json").read_text())["kame"] == kame
    other = tmp_path / "other.safetensors"
    sha = save_embedded(load_embedded(), other, meta={"note": "another fit"})
    third = save_frontend(loaded, tmp_path / "third", codec=f"embedded:{other}", train={"steps": 200})
    assert load_frontend(third)[1].kame == {**kame, "codec": f"embedded:{other}", "codec_sha256": sha,
                                            "train": {"steps": 200}}
    # given sha256 values are written as they are (no codec is created then)
    fourth = save_frontend(model, tmp_path / "fourth", codec="mimi:/nowhere/mimi.safetensors",
                           codec_sha256="ab" * 32, tokenizer="default", tokenizer_sha256="cd" * 32)
    assert load_frontend(fourth)[1].kame == {**STAMP, "codec": "mimi:/nowhere/mimi.safetensors", "codec_sha256": "ab" * 32,
                                             "tokenizer": "default", "tokenizer_sha256": "cd" * 32}


def test_a_tokenizer_file_is_named_as_tokenizer_name_and_its_sha256_taken(model, tmp_path):
    folder = tmp_path / "ck"
    with pytest.raises(ConfigError, match=r"save_frontend: tokenizer 'spm.model': no file at .*ck/spm.model to "
                                          r"take its sha256 from .* put the file there first, or give tokenizer_sha256"):
        save_frontend(model, folder, tokenizer="spm.model")
    assert not folder.exists()
    folder.mkdir()
    shutil.copy(DEFAULT_MODEL, folder / "spm.model")
    save_frontend(model, folder, tokenizer="spm.model")
    raw = json.loads((folder / "config.json").read_text())
    assert raw["tokenizer_name"] == "spm.model"  # where moshi's reader looks for it too
    assert raw["kame"] == {**STAMP, "tokenizer": "spm.model", "tokenizer_sha256": TOK_SHA}
    assert load_frontend(folder)[1].tokenizer == folder / "spm.model"
    # only kame.tokenizer (a hand-written config.json): the loader takes the file from it
    del raw["tokenizer_name"]
    (folder / "config.json").write_text(json.dumps(raw))
    assert load_frontend(folder)[1].tokenizer == folder / "spm.model"


def test_a_codec_without_a_fingerprint_is_recorded_by_its_spec_only(tmp_path, caplog):
    model, _ = load_frontend("random:tiny", text_card=4000, card=128)  # (mimi:random-tiny's codes: save checks the fit)
    folder = save_frontend(model, tmp_path / "ck", codec="mimi:random-tiny")
    assert json.loads((folder / "config.json").read_text())["kame"] == {**STAMP, "codec": "mimi:random-tiny"}
    assert "codec mimi:random-tiny has no fingerprint" in caplog.text


@pytest.mark.parametrize("kame, message", [
    ([1], r"config key kame=\[1\]: expected an object \(format, written_by, codec, codec_sha256, tokenizer, tokenizer_sha256, train\)"),
    ({"codecs": "embedded"}, r"unknown kame key\(s\): codecs \(known: format, written_by, codec, .*; free-form notes go under kame.train\)"),
    ({"codec": ""}, r"config key kame.codec='': expected a non-empty string"),
    ({"tokenizer": 4}, r"config key kame.tokenizer=4: expected a non-empty string"),
    ({"codec_sha256": "4ad1"}, r"config key kame.codec_sha256='4ad1': expected a sha256 \(64 lowercase hex digits\)"),
    ({"tokenizer_sha256": "F" * 64}, r"config key kame.tokenizer_sha256='F+': expected a sha256"),
    ({"codec": "auto"}, r"config key kame.codec='auto': name the codec the front-end was trained with"),
    ({"train": "100 steps"}, r"config key kame.train='100 steps': expected an object"),
    ({"tokenizer": "default", "_name": "spm.model"}, r"config keys tokenizer_name='spm.model' and "
                                                     r"kame.tokenizer='default' name two tokenizers: keep one"),
])
def test_a_bad_kame_object_is_a_config_error_at_load_and_at_save(model, tmp_path, kame, message):
    folder = save_frontend(model, tmp_path / "ck")
    raw = json.loads((folder / "config.json").read_text())
    name = kame.pop("_name", None) if isinstance(kame, dict) else None
    raw.update(kame=kame, **({"tokenizer_name": name} if name else {}))
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=rf"{folder / 'config.json'}: {message}"):
        load_frontend(folder)
    with pytest.raises(ConfigError, match=rf"save_frontend: {message}"):
        save_frontend(model, tmp_path / "out", kame=kame, **({"tokenizer_name": name} if name else {}))
    assert not (tmp_path / "out").exists()


def test_save_refuses_a_codec_spec_kame_cannot_create(model, tmp_path):
    with pytest.raises(ConfigError, match=r"save_frontend: unknown codec spec 'mimmi:x'"):
        save_frontend(model, tmp_path / "ck", codec="mimmi:x", codec_sha256="ab" * 32)
    with pytest.raises(CheckpointError, match=r"save_frontend: codec 'embedded:.*gone.safetensors' \(created for its "
                                              r"sha256; give codec_sha256 to record it without it\): embedded codec "
                                              r"file not found"):
        save_frontend(model, tmp_path / "ck", codec=f"embedded:{tmp_path / 'gone.safetensors'}")
    assert not (tmp_path / "ck").exists()


def test_save_writes_the_weights_it_is_given_and_refuses_other_keys(model, tmp_path):
    """state_dict= (a training run's weights gathered from a sharded model) is what is written; one
    that is not this model's (a key missing or extra) is refused before anything is written."""
    import torch

    given = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    folder = save_frontend(model, tmp_path / "ck", state_dict=given)
    loaded = load_frontend(folder)[0].state_dict()
    assert all(torch.equal(loaded[k], given[k]) for k in given)
    del given["text_emb.weight"]
    with pytest.raises(CheckpointError, match=r"missing \['text_emb.weight'\]"):
        save_frontend(model, tmp_path / "bad", state_dict={**given, "extra.weight": torch.zeros(1)})
    assert not (tmp_path / "bad").exists()
