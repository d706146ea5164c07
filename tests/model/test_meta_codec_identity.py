"""save_frontend looks at its codec once (kame.model.meta.codec_identity): its fingerprint and its
fit to the model from one codec created, none with codec_sha256 given (was: created twice, and once
with codec_sha256); the embedded codec's layout from its file's header (kame.codec.embedded.layout),
checked as loading checks it; fit_codec lives in kame.codec.base (model/ no longer imports runtime/)."""

from types import SimpleNamespace

import pytest
import torch

from kame import registry
from kame.codec.base import CodecLayout, fit_codec
from kame.codec.embedded import model as embedded
from kame.errors import CheckpointError, ConfigError
from kame.model.loaders import load_frontend, save_frontend, save_tensors


@pytest.fixture
def created(monkeypatch):
    """The codecs registry.create made, by spec."""
    calls, real = [], registry.create

    def counting(kind, spec, **kwargs):
        if kind == "codec":
            calls.append(spec)
        return real(kind, spec, **kwargs)

    monkeypatch.setattr(registry, "create", counting)
    return calls


def test_save_frontend_creates_its_codec_once_and_not_with_its_sha256(tmp_path, created):
    model, _ = load_frontend("random:tiny", text_card=4000, card=128)  # (mimi:random-tiny codes 128)
    save_frontend(model, tmp_path / "a", codec="mimi:random-tiny", tokenizer="default")
    assert created == ["mimi:random-tiny"]  # (was: twice, its sha256 then its fit)
    created.clear()
    save_frontend(model, tmp_path / "b", codec="mimi:random-tiny", codec_sha256="ab" * 32, tokenizer="default")
    assert created == []  # (was: once, for its fit)
    assert load_frontend(tmp_path / "b")[1].kame["codec_sha256"] == "ab" * 32


def test_the_embedded_fit_is_still_checked_with_its_sha256_given(tmp_path, created):
    model, _ = load_frontend("random:tiny", text_card=4000, card=1024)
    with pytest.raises(ConfigError, match=r"save_frontend: codec 'embedded' has 2048 codes per codebook, the "
                                          r"front-end .* expects 1024"):
        save_frontend(model, tmp_path / "a", codec="embedded", codec_sha256="ab" * 32, tokenizer="default")
    assert created == [] and not (tmp_path / "a").exists()


def test_the_embedded_layout_is_the_codecs_from_its_header(tmp_path):
    from kame.model.meta import codec_identity

    codec = embedded.load()
    lay = embedded.layout()
    assert (lay.frame_size, lay.cardinality, lay.num_codebooks, lay.total_codebooks, lay.fingerprint) == (
        codec.frame_size, codec.cardinality, codec.num_codebooks, codec.total_codebooks, codec.fingerprint)
    assert codec_identity("embedded") == (codec.fingerprint, lay)
    assert codec_identity("mimi:random-tiny", fingerprint=False) == (None, None)  # (nothing created)
    # its format checks and their words are load's
    not_codec = tmp_path / "tok.safetensors"
    save_tensors({"w": torch.zeros(2)}, not_codec)
    with pytest.raises(CheckpointError, match=r"tok.safetensors is not a fitted embedded codec \(it has no 'kame' "
                                              r"metadata\)"):
        embedded.layout(not_codec)
    assert codec_identity(f"embedded:{not_codec}", fingerprint=False) == (None, None)  # (not at hand: not checked)


def test_the_embedded_codec_says_how_many_codebooks_it_holds():
    cfg = SimpleNamespace(card=2048, n_user_q=9, dep_q=9)  # (what fit_codec reads of a front-end's config)
    for codec in (embedded.load(), embedded.layout()):
        assert codec.total_codebooks == 8
        # (was, for the codec: "cannot code with 9 (num_codebooks must be an int in [1, 8], got 9)")
        with pytest.raises(ConfigError, match=r"codec 'embedded' holds 8 codebooks, the front-end 'fe' needs 9"):
            fit_codec(codec, "embedded", cfg, "fe")
    lay = CodecLayout(1920, 2048, 8, 8)
    lay.set_num_codebooks(4)
    assert lay.num_codebooks == 4
