"""load_frontend and save_frontend checks found missing by a QA sweep: a seed torch cannot take is a
ConfigError naming it (was: a traceback in torch.manual_seed); save_frontend refuses a codec that
does not fit the model, as the runtime would refuse the checkpoint, before anything is written; a
codec file in the working folder given as the front-end is named (was: "."). Tiny models."""

import shutil

import pytest

from kame.codec.mimi import MIMI_NAME, build_random, save_mimi
from kame.errors import CheckpointError, ConfigError
from kame.model.loaders import load_frontend, save_frontend


@pytest.mark.parametrize("seed", [2**64, -1, -2**63 - 1, 1.5, True])
def test_a_seed_torch_cannot_take_is_refused(seed):
    # (the range said is the range checked: was [0, 2**64 - 1] said, -2**63..-1 taken)
    with pytest.raises(ConfigError, match=rf"seed={seed!r}: a seed is an integer in \[0, 2\*\*64 - 1\] "
                                          rf"\(frontend.seed"):
        load_frontend("random:tiny", seed=seed)


def test_a_numpy_int_seed_is_taken():
    import numpy as np
    import torch

    # (was: refused, "seed=np.int64(3): a seed is an integer ...")
    a, _ = load_frontend("random:tiny", seed=np.int64(3))
    b, _ = load_frontend("random:tiny", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_save_frontend_refuses_a_codec_that_does_not_fit(tmp_path):
    model, _ = load_frontend("random:tiny", text_card=4000)  # (card 2048; mimi:random-tiny codes 128)
    out = tmp_path / "sv"
    # (was: written, then `kame run` refused it: "codec 'mimi:random-tiny' has 128 codes per codebook ...")
    with pytest.raises(ConfigError, match=r"save_frontend: codec 'mimi:random-tiny' has 128 codes per codebook, "
                                          r"the front-end .* expects 2048"):
        save_frontend(model, out, codec="mimi:random-tiny", tokenizer="default")
    assert not out.exists()
    save_frontend(model, out, codec="embedded", tokenizer="default")  # one that fits
    assert (out / "config.json").is_file()


def test_save_frontend_reads_the_embedded_codecs_fit_from_its_file(tmp_path, monkeypatch):
    from kame.codec.embedded import model as embedded

    monkeypatch.setattr(embedded, "load", lambda *a, **kw: pytest.fail("the embedded codec was built"))
    model, _ = load_frontend("random:tiny", text_card=4000, card=1024)
    with pytest.raises(ConfigError, match=r"save_frontend: codec 'embedded' has 2048 codes per codebook, the "
                                          r"front-end .* expects 1024"):
        save_frontend(model, tmp_path / "a", codec="embedded", tokenizer="default")
    assert not (tmp_path / "a").exists()
    # a codec given with its sha256 need not be at hand: not checked (as its sha256 is not taken)
    save_frontend(model, tmp_path / "b", codec=f"embedded:{tmp_path / 'gone.safetensors'}", codec_sha256="ab" * 32)
    assert (tmp_path / "b" / "config.json").is_file()


def test_a_codec_file_in_the_working_folder_is_named(tmp_path, monkeypatch):
    save_mimi(build_random("tiny"), tmp_path / MIMI_NAME)
    shutil.move(tmp_path / MIMI_NAME, tmp_path / "m.safetensors")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"^m.safetensors has no config.json and is not a front-end checkpoint: "
                                              r"it is a Mimi codec checkpoint; give it as the codec: mimi:m.safetensors "
                                              r"\(codec.spec, or the command's --codec\)$"):
        load_frontend("m.safetensors")
