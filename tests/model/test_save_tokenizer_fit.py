"""save_frontend refuses to write a front-end kame would refuse to run because its text tokenizer
does not fit its text vocabulary (was: written, then `kame run` failed with "tokenizer ... has 4000
pieces, more than its text vocabulary (text_card 2000)" - the docs' example on every preset but 100m)."""

import shutil

import pytest

from kame.backend.tokenizer import DEFAULT_MODEL, TextTokenizer
from kame.errors import ConfigError
from kame.model.loaders import load_frontend, save_frontend

PIECES = TextTokenizer(DEFAULT_MODEL).vocab_size  # 4000


@pytest.fixture(scope="module")
def small():
    return load_frontend("random:tiny")[0]  # text_card 1000


@pytest.mark.parametrize("save", [dict(codec="embedded", tokenizer="default", model_type="kame"),
                                  dict(tokenizer="default", tokenizer_sha256="ab" * 32)])
def test_the_default_tokenizer_bigger_than_the_vocabulary_is_refused(small, tmp_path, save):
    with pytest.raises(ConfigError, match=rf"save_frontend: tokenizer 'default' \(.*text_tokenizer_4k.model\) has "
                                          rf"{PIECES} pieces, more than the model's text vocabulary \(text_card 1000\)"
                                          rf".*kame would refuse to run the checkpoint: .*load_frontend\('random:small', "
                                          rf"text_card={PIECES}\)\) or name the tokenizer it was trained with"):
        save_frontend(small, tmp_path / "ck", **save)
    assert not (tmp_path / "ck").exists()


def test_a_named_file_and_the_default_one_used_when_none_is_named(small, tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    shutil.copy(DEFAULT_MODEL, folder / "spm.model")
    with pytest.raises(ConfigError, match=r"tokenizer 'spm.model' \(.*ck/spm.model\) has 4000 pieces, more than"):
        save_frontend(small, folder, tokenizer="spm.model")
    # a kame record naming no tokenizer: kame's default one is what the runtime would take
    with pytest.raises(ConfigError, match=r"names no text tokenizer \(tokenizer= or tokenizer_name\), so kame would "
                                          r"run it with its default one \(.*, 4000 pieces\), which does not fit"):
        save_frontend(small, folder, codec="embedded")
    assert sorted(p.name for p in folder.iterdir()) == ["spm.model"]  # nothing written


def test_what_fits_is_written(tmp_path):
    model, _ = load_frontend("random:tiny", text_card=PIECES)
    save_frontend(model, tmp_path / "a", codec="embedded", tokenizer="default")
    small, _ = load_frontend("random:tiny", card=128)  # (mimi:random-tiny's 128 codes: save checks the fit)
    # trained on Mimi codes: Moshi's tokenizer, not kame's default, is the one it runs with
    save_frontend(small, tmp_path / "b", codec="mimi:random-tiny")
    save_frontend(small, tmp_path / "c")  # no kame object: a Moshi-format export, not checked
    assert all((tmp_path / d / "config.json").is_file() for d in "abc")
