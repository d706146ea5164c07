"""The loader's hints say what explains the failure, and only that (QA sweep on published-format
folders): LM weights beside their Mimi without config.json are not called a codec folder; the
"kv_repeat was assumed" note of a config.json without kv_repeat (as every moshi _lm_kwargs-style
one is) comes only with an attention tensor's shape mismatch. Tiny models."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from kame.codec.mimi import MIMI_NAME, build_random, save_mimi
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend, save_frontend

torch.set_num_threads(1)


def _folder(tmp_path, spec="random:tiny", drop=("kv_repeat",), extra=None, **changes):
    """A saved front-end whose config.json lacks ``drop`` keys (with ``changes``), its weights with
    ``extra`` tensors added."""
    model, _ = load_frontend(spec, seed=1)
    folder = tmp_path / "ck"
    save_frontend(model, folder)
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**{k: v for k, v in raw.items() if k not in drop}, **changes}))
    if extra:
        save_file({**load_file(folder / "model.safetensors"), **extra}, folder / "model.safetensors")
    return folder


def test_lm_weights_beside_their_mimi_without_config_json_are_not_a_codec_folder(tmp_path):
    folder = _folder(tmp_path)
    save_mimi(build_random("tiny"), folder / MIMI_NAME)
    (folder / "config.json").unlink()
    # (was: "... is not a front-end checkpoint: it is a Mimi codec checkpoint; give it as the codec")
    with pytest.raises(CheckpointError, match=rf"^{folder} has no config.json \(a front-end checkpoint folder needs "
                                              r"one: the weights alone do not give the model's shapes\)$"):
        load_frontend(folder)
    (folder / "model.safetensors").unlink()  # the Mimi alone: still named as the codec it is
    with pytest.raises(CheckpointError, match=r"it is a Mimi codec checkpoint; give it as the codec: mimi:"):
        load_frontend(folder)


@pytest.mark.parametrize("extra, changes, named", [
    ({"foo.bar.weight": torch.zeros(2)}, {}, "foo.bar.weight"),  # an unknown tensor
    (None, {"oracle": False}, "oracle_emb.weight"),  # a KAME file under "oracle": false
])
def test_a_key_error_gets_no_kv_repeat_note(tmp_path, extra, changes, named):
    folder = _folder(tmp_path, extra=extra, **changes)
    with pytest.raises(CheckpointError, match=rf"key\(s\) the config does not define.*{named}") as err:
        load_frontend(folder)
    # (was: "(.../config.json has no kv_repeat, so Moshi 7B's kv_repeat=1 was assumed: ...)")
    assert "kv_repeat" not in str(err.value) and "assumed" not in str(err.value)


def test_an_attention_shape_mismatch_keeps_the_kv_repeat_note(tmp_path):
    folder = _folder(tmp_path, "random:tiny;kv_repeat=2")
    with pytest.raises(CheckpointError, match=r"shape mismatch for \S*self_attn.* \(.*config.json has "
                                              r"no kv_repeat, so Moshi 7B's kv_repeat=1 was assumed: give the values"):
        load_frontend(folder)


def test_a_layer_count_mismatch_names_num_layers_only(tmp_path):
    folder = _folder(tmp_path, drop=("kv_repeat", "num_layers"))
    # (the layer count is checked against the file's header before the model is built: was "checkpoint lacks ...")
    with pytest.raises(CheckpointError, match=r"config.json has num_layers=32, but the file holds 2 layers .*: "
                                              r"num_layers=2 \(.*config.json has no num_layers, so Moshi 7B's "
                                              r"num_layers=32 was assumed") as err:
        load_frontend(folder)
    assert "kv_repeat" not in str(err.value)


def test_a_depformer_mismatch_names_depformer_keys_only(tmp_path):
    """(was: any absent shape key was named for any shape mismatch: the main transformer's
    num_heads for a depformer tensor)"""
    folder = _folder(tmp_path, drop=("num_heads", "depformer_dim_feedforward"))
    with pytest.raises(CheckpointError, match=r"shape mismatch for depformer\..* \(.*config.json has no "
                                              r"depformer_dim_feedforward, so Moshi 7B's") as err:
        load_frontend(folder)
    assert "num_heads" not in str(err.value), str(err.value)


def test_a_kame_train_output_folder_names_its_checkpoint(tmp_path):
    """OUT of kame train given as the front-end (was: only "has no config.json"): its latest, else
    (a system where kame train made no latest link) its newest step-N."""
    model, _ = load_frontend("random:tiny")
    out = tmp_path / "run"
    for step in (9, 10):
        save_frontend(model, out / f"step-{step}")
    (out / "step-11").mkdir()  # (a save that did not finish: no config.json)
    with pytest.raises(CheckpointError, match=rf"^{out} has no config.json \(.*\); it is a kame train output folder: "
                                              rf"give its checkpoint, {out / 'step-10'}$"):
        load_frontend(out)
    (out / "latest").symlink_to("step-9")
    with pytest.raises(CheckpointError, match=rf"give its checkpoint, {out / 'latest'}$"):
        load_frontend(out)
    load_frontend(out / "latest")  # (the path it names loads)


def test_a_bare_random_spec_beside_a_folder_named_random_says_which_it_means(tmp_path, monkeypatch, caplog):
    """(QA3 #5) `random` is the random-weight spec even where ./random is a checkpoint folder: said,
    with the spelling that loads the folder (was: random weights, unsaid)."""
    import logging

    from kame.model.loaders import check_frontend_spec

    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger="kame.model.loaders")
    assert check_frontend_spec("random")[0] == "random" and caplog.text == ""
    (tmp_path / "random").mkdir()
    assert check_frontend_spec("random")[0] == "random"
    assert "not the folder ./random here: for the folder write ./random" in caplog.text
    caplog.clear()
    assert check_frontend_spec("./random")[0] == "path" and caplog.text == ""
