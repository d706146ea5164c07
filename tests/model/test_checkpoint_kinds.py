"""A checkpoint of one kind given where another is expected (a Mimi codec as the front-end, a
front-end LM or Kyutai STT as Mimi, Kyutai STT as the speech-to-speech front-end, a path as a
codec spec) says what it is and where it goes; a truncated file says it is truncated. Tiny
checkpoints made here."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from kame import registry
from kame.codec.mimi import MIMI_NAME, build_random, load_mimi, save_mimi
from kame.errors import CheckpointError, ConfigError
from kame.model import tensorfiles
from kame.model.loaders import load_frontend, save_frontend


@pytest.fixture(scope="module")
def cks(tmp_path_factory):
    """A KAME front-end folder, a Kyutai STT folder and a bare Mimi folder (no config.json)."""
    root = tmp_path_factory.mktemp("kinds")
    fe, _ = load_frontend("random:tiny")
    save_frontend(fe, root / "kame", mimi_name=MIMI_NAME)
    stt, _ = load_frontend("random:stt-tiny")
    save_frontend(stt, root / "stt", mimi_name="mimi.safetensors", model_type="stt")
    (root / "mimi").mkdir()
    save_mimi(build_random("tiny"), root / "mimi" / MIMI_NAME)
    return root


def test_mimi_given_as_the_front_end(cks, tmp_path):
    mimi = cks / "mimi" / MIMI_NAME
    for spec in (cks / "mimi", mimi):  # was: "has no config.json (a front-end checkpoint folder needs one)"
        with pytest.raises(CheckpointError, match=rf"front-end checkpoint: it is a Mimi codec checkpoint; give it as "
                                                  rf"the codec: mimi:{mimi} \(codec.spec, or the command's --codec\)$"):
            load_frontend(spec)
    # the Mimi file as the weights of a folder that has a config.json (was: "N unknown keys ...")
    d = tmp_path / "mixed"
    shutil.copytree(cks / "kame", d)
    shutil.copy(mimi, d / MIMI_NAME)
    with pytest.raises(CheckpointError, match=rf"{d / MIMI_NAME} is not front-end LM weights: .* Mimi codec"):
        load_frontend(d / MIMI_NAME)


def test_front_end_and_stt_weights_given_as_mimi(cks):
    lm = cks / "kame" / "model.safetensors"
    with pytest.raises(CheckpointError, match=rf"{lm} is not a Mimi codec checkpoint: .*front-end LM weights "
                                              rf"\(Moshi/KAME\); give their folder as the front-end: frontend.spec={cks / 'kame'}"):
        load_mimi(lm)
    with pytest.raises(CheckpointError, match="is not a Mimi codec checkpoint"):
        registry.create("codec", f"mimi:{lm}")
    stt = cks / "stt" / "model.safetensors"
    with pytest.raises(CheckpointError, match=rf"Kyutai STT LM weights .*backend.stt=kyutai:{cks / 'stt'}"):
        load_mimi(stt)


def test_front_end_weights_given_as_a_codec_name_the_codec_their_config_records(cks, tmp_path):
    """kame's own front-end (config.json kame.codec "embedded", no mimi_name) given as embedded:FILE:
    the message names its folder as the front-end and its recorded codec, no Mimi (was: "its Mimi
    codec is the file its config.json names as mimi_name"); one naming a mimi_name still says it."""
    fe, _ = load_frontend("random:tiny", text_card=4000)  # (kame's tokenizer's 4000 pieces)
    save_frontend(fe, tmp_path / "own", codec="embedded", tokenizer="default")
    own = tmp_path / "own" / "model.safetensors"
    with pytest.raises(CheckpointError, match=rf"{own} is not a fitted embedded codec: it holds front-end LM weights "
                                              rf"\(Moshi/KAME\); give their folder as the front-end: frontend.spec="
                                              rf"{tmp_path / 'own'} \(it runs with the codec its config.json records "
                                              rf"as kame.codec: embedded\)$"):
        registry.create("codec", f"embedded:{own}")
    lm = cks / "kame" / "model.safetensors"
    with pytest.raises(CheckpointError, match=rf"frontend.spec={cks / 'kame'} \(its Mimi codec is the file its "
                                              rf"config.json names as mimi_name: {MIMI_NAME}\)$"):
        registry.create("codec", f"embedded:{lm}")


def test_embedded_codec_file_given_as_mimi():
    from kame.codec.embedded.model import DEFAULT_PATH

    with pytest.raises(CheckpointError, match=r"is not a Mimi codec checkpoint: it is a fitted embedded codec; give it as the codec: embedded:"
                                              r".* \(codec.spec, or the command's --codec\)$"):
        load_mimi(DEFAULT_PATH)


def test_stt_checkpoint_where_a_speech_to_speech_front_end_is_expected(cks):
    model, info = load_frontend(cks / "stt")  # the loader itself takes both (the kyutai STT back-end uses it)
    assert model.cfg.dep_q == 0 and info.model_type == "stt"
    with pytest.raises(CheckpointError, match=rf"{cks / 'stt'} is a Kyutai STT checkpoint \(model_type 'stt', dep_q 0"
                                              rf".*backend.stt=kyutai:{cks / 'stt'}"):
        load_frontend(cks / "stt", expect="frontend")
    with pytest.raises(CheckpointError, match="random:stt-tiny is shaped like Kyutai STT .*use random:tiny"):
        load_frontend("random:stt-tiny", expect="frontend")
    with pytest.raises(CheckpointError, match=r"is a speech-to-speech front-end checkpoint \(dep_q 8\), not a Kyutai STT"):
        load_frontend(cks / "kame", expect="stt")
    load_frontend(cks / "kame", expect="frontend")
    load_frontend(cks / "stt", expect="stt")
    with pytest.raises(ConfigError, match="expect='audio'"):
        load_frontend(cks / "kame", expect="audio")


def test_stt_weights_under_a_moshi_config_are_named(cks, tmp_path):
    d = tmp_path / "wrong"
    shutil.copytree(cks / "kame", d)
    shutil.copy(cks / "stt" / "model.safetensors", d / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"the file holds Kyutai STT LM weights \(no depformer\), which "
                                              rf"{d / 'config.json'} \(dep_q 8\) does not describe"):
        load_frontend(d)


def test_checkpoint_kind_sees_through_a_wrapper_prefix(cks):
    assert tensorfiles.checkpoint_kind(load_file(str(cks / "mimi" / MIMI_NAME))) == "mimi"
    assert tensorfiles.checkpoint_kind({"model." + k: v for k, v in load_file(str(cks / "kame" / "model.safetensors")).items()}) == "frontend"
    assert tensorfiles.checkpoint_kind(load_file(str(cks / "stt" / "model.safetensors"))) == "stt"
    assert tensorfiles.checkpoint_kind({"a.weight": torch.zeros(1)}) is None


def test_a_path_as_a_codec_spec_says_how_to_write_it():
    # was: "unknown codec spec 'ck/mimi-full': scheme 'ck/mimi-full' is not one of ['embedded', 'mimi']"
    with pytest.raises(ConfigError, match=r"'ck/mimi-full' looks like a path: put a scheme first, e.g. mimi:ck/mimi-full"):
        registry.create("codec", "ck/mimi-full")
    with pytest.raises(ConfigError, match=r"looks like a path: write ./ck/kame or path:ck/kame"):
        registry.check_spec("frontend", "ck/kame")
    with pytest.raises(ConfigError) as e:
        registry.check_spec("codec", "nope")
    assert "looks like a path" not in str(e.value)


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_files_say_so(cks, tmp_path):
    """(was safetensors' "Error while deserializing header: incomplete metadata, file not fully covered")"""
    d = tmp_path / "fe"
    shutil.copytree(cks / "kame", d)
    _truncate(d / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated: it has \d+ bytes, fewer than the \d+ "
                                              r"bytes its header describes \(an incomplete download or copy\)"):
        load_frontend(d)
    m = tmp_path / "m.safetensors"
    shutil.copy(cks / "mimi" / MIMI_NAME, m)
    _truncate(m, 0.3)
    with pytest.raises(CheckpointError, match=r"m\.safetensors is truncated: .*incomplete download"):
        load_mimi(m)
    _truncate(m, 0.0001)  # cut inside the header
    with pytest.raises(CheckpointError, match=r"m\.safetensors is truncated: it has \d+ bytes, fewer than its header"):
        load_mimi(m)
    for data in (b"", b"hi\n"):  # too short for the header's length (was: "is truncated: it has 3 bytes")
        m.write_bytes(data)
        with pytest.raises(CheckpointError, match=rf"m\.safetensors has only {len(data)} bytes: not a safetensors "
                                                  r"file \(or a copy cut short"):
            load_mimi(m)
    m.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match=r"cannot read .*m\.safetensors: not a readable safetensors file"):
        load_mimi(m)


def test_a_kyutai_stt_config_json_is_recognised_without_weights(cks, tmp_path):
    """A published STT config.json (model_type stt, dep_q 0) alone is enough to tell (expect is
    checked before any weight is read)."""
    d = tmp_path / "cfg-only"
    d.mkdir()
    shutil.copy(cks / "stt" / "config.json", d / "config.json")
    assert json.loads((d / "config.json").read_text())["model_type"] == "stt"
    with pytest.raises(CheckpointError, match="Kyutai STT checkpoint"):
        load_frontend(d, expect="frontend")
    with pytest.raises(CheckpointError, match="do not exist"):  # without expect: the missing weights
        load_frontend(d)


def test_files_with_bytes_after_their_tensors_say_so(cks, tmp_path):
    """(was safetensors' "incomplete metadata, file not fully covered")"""
    from kame.codec.embedded.model import DEFAULT_PATH, load

    m = tmp_path / "m.safetensors"
    m.write_bytes((cks / "mimi" / MIMI_NAME).read_bytes() + b"\0" * 100)
    with pytest.raises(CheckpointError, match=r"m\.safetensors is corrupt: it has 100 bytes more than the \d+ its "
                                              r"header describes"):
        load_mimi(m)
    e = tmp_path / "e.safetensors"
    e.write_bytes(DEFAULT_PATH.read_bytes() + b"x")
    with pytest.raises(CheckpointError, match=r"e\.safetensors is corrupt: it has 1 byte more"):
        load(e)
