"""save_frontend's output for a model without the oracle stream loads with the moshi package's own
loader (CheckpointInfo + get_moshi) and runs as kame runs it; kame reads its save back as it was
(kame.model.moshiform: kame's keys moshi refuses sit in model_id.kame_lm)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ._ref import make_checkpoint
from kame.errors import ConfigError
from kame.model.loaders import load_frontend, save_frontend
from kame.model.moshiform import KAME_LM, lift_kame_lm, moshi_form

pytest.importorskip("moshi.models")
from moshi.models.loaders import CheckpointInfo  # noqa: E402

from .test_reference import _codes, _greedy_both  # noqa: E402

torch.set_num_threads(1)
GEN = {"temp": 0.8, "temp_text": 0.7, "top_k": 250, "top_k_text": 25}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A plain Moshi model (no oracle stream) loaded by kame and saved by save_frontend."""
    src = tmp_path_factory.mktemp("src")
    make_checkpoint(src, "moshi", seed=3)
    model, _ = load_frontend(src, oracle=False)
    out = tmp_path_factory.mktemp("saved")
    save_frontend(model, out, mimi_name="mimi.safetensors", tokenizer_name="tok.model", lm_gen_config=GEN)
    return model, out


def _moshi(out: Path):
    info = CheckpointInfo.from_hf_repo("acme/unused", moshi_weights=out / "model.safetensors",
                                       mimi_weights=out / "mimi.safetensors", tokenizer=out / "tok.model",
                                       config_path=out / "config.json")
    return info, info.get_moshi(device="cpu", dtype=torch.float32)


@torch.no_grad()
def test_moshi_loads_a_plain_save_and_runs_it_as_kame_does(saved):
    model, out = saved
    info, ref = _moshi(out)  # was: TypeError (unexpected keyword 'oracle'; then depformer_kv_repeat null)
    assert info.lm_gen_config == GEN and info.model_type == "moshi"
    assert set(ref.state_dict()) == set(model.state_dict())
    codes = _codes(2, 10)
    a, b = ref(codes), model(codes)
    assert torch.allclose(a.logits.nan_to_num(), b.logits.nan_to_num(), atol=1e-4)
    assert torch.allclose(a.text_logits.nan_to_num(), b.text_logits.nan_to_num(), atol=1e-4)
    want, got, _, _ = _greedy_both(ref, model, 2, 8, 8)
    assert torch.equal(want, got)


def test_kame_reads_its_plain_save_back_as_it_was(saved):
    model, out = saved
    raw = json.loads((out / "config.json").read_text())
    assert "oracle" not in raw and raw["model_id"] == {KAME_LM: {"oracle": False}}  # (moshi ignores model_id)
    again, info = load_frontend(out)  # oracle: the config's (no "oracle" key would mean on)
    named = {**model.cfg.meta, "mimi_name": "mimi.safetensors", "tokenizer_name": "tok.model", "lm_gen_config": GEN}
    assert again.cfg == replace(model.cfg, meta=named) and not again.has_oracle and not info.oracle_upgraded
    assert "model_id" not in info.raw_config and info.raw_config["oracle"] is False
    mine, theirs = model.state_dict(), again.state_dict()
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    save_frontend(again, out / "again")  # the same config.json once more
    assert json.loads((out / "again" / "config.json").read_text()) == raw


def test_moshi_form_keeps_kame_keys_moshi_refuses_under_model_id():
    raw = {"gating": "gelu", "depformer_gating": None, "depformer_kv_repeat": None, "oracle": False,
           "model_type": "stt", "version": "1", "model_id": {"sig": "x"}, "kame": {"codec": "embedded"}}
    form = moshi_form(raw)
    assert form["depformer_gating"] == "gelu" and "depformer_kv_repeat" not in form
    assert "oracle" not in form  # Kyutai STT: off is what no key means
    assert form["model_id"] == {"sig": "x", KAME_LM: {"version": "1"}} and form["kame"] == {"codec": "embedded"}
    assert lift_kame_lm(form, "c.json")["version"] == "1" and lift_kame_lm(form, "c.json")["model_id"] == {"sig": "x"}
    with pytest.raises(ConfigError, match=r"c.json: 'version' is both a top-level key and in model_id.kame_lm"):
        lift_kame_lm({**form, "version": "2"}, "c.json")
    with pytest.raises(ConfigError, match=r"c.json: model_id.kame_lm=3: expected an object"):
        lift_kame_lm({"model_id": {KAME_LM: 3}}, "c.json")


def test_a_kame_save_keeps_oracle_at_the_top(tmp_path):
    model, _ = load_frontend("random:tiny")  # KAME: oracle_emb, which moshi's LMModel does not have
    save_frontend(model, tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["oracle"] is True and "model_id" not in raw
