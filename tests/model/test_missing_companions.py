"""info.missing_files lists the companion files a checkpoint names, and Moshi's default Mimi and
tokenizer names only for one that needs them (trained on Mimi codes, Kyutai STT) (was: both default
names listed for kame's own front-ends, whose config.json names neither)."""

import json

import pytest

from kame.model.loaders import MIMI_NAME, TOKENIZER_NAME, load_frontend, save_frontend


@pytest.fixture(scope="module")
def model():
    return load_frontend("random:tiny", text_card=4000)[0]


def test_kame_own_checkpoints_list_nothing_they_do_not_name(model, tmp_path):
    own = save_frontend(model, tmp_path / "own", codec="embedded", tokenizer="default", model_type="kame")
    _, info = load_frontend(own)
    assert info.missing_files == [] and info.mimi is None and info.tokenizer is not None
    _, info = load_frontend(save_frontend(model, tmp_path / "plain"))
    assert info.missing_files == [] and info.mimi is None and info.tokenizer is None


def test_named_and_needed_companions_are_listed(model, tmp_path):
    named = save_frontend(model, tmp_path / "named", mimi_name="m.safetensors", tokenizer_name="t.model")
    assert load_frontend(named)[1].missing_files == ["m.safetensors", "t.model"]
    for model_type in ("moshi", "stt"):  # trained on Mimi codes: Moshi's default names are needed
        ck = save_frontend(model, tmp_path / model_type, model_type=model_type)
        assert load_frontend(ck)[1].missing_files == [MIMI_NAME, TOKENIZER_NAME]
    # kame.codec records a Mimi file by its spec: the tokenizer is Moshi's, no Mimi name looked for
    raw = json.loads((tmp_path / "moshi" / "config.json").read_text())
    raw["kame"] = {"codec": "mimi:/nowhere/mimi.safetensors"}
    (tmp_path / "moshi" / "config.json").write_text(json.dumps(raw))
    assert load_frontend(tmp_path / "moshi")[1].missing_files == [TOKENIZER_NAME]


def test_default_names_found_are_still_taken(model, tmp_path):
    """A folder holding a file under Moshi's default name: taken as before, listed or not."""
    ck = save_frontend(model, tmp_path / "ck")
    (ck / TOKENIZER_NAME).write_bytes(b"x")
    assert load_frontend(ck)[1].tokenizer == ck / TOKENIZER_NAME
