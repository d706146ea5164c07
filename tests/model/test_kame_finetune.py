"""SakanaAI/kame_finetune checkpoints: clean_moshi's folder (model.safetensors +
moshi_lm_kwargs.json, no config.json) loads as a KAME front-end (a folder, its files, an hf://
repo), equal to the moshi reference; a dep_q 16 one (its depformer also models the user's
codebooks) loads as clean_moshi --remove_modules_for_user_stream would leave it; the training
layouts before clean_moshi are refused with the command that converts them."""

import shutil

import pytest
import torch

from ._finetune import (KWARGS, finetune_kwargs, removed_user_stream, training_state, write_cleaned,
                        write_state)
from kame import registry
from kame.errors import CheckpointError, ConfigError
from kame.model.loaders import MIMI_NAME, TOKENIZER_NAME, load_frontend

pytest.importorskip("moshi.models")
from .test_reference import _codes, _greedy_both  # noqa: E402


def _no_oracle(model):
    """The stepper feeds pad (3) with no prediction: a zero pad row adds nothing, as in moshi."""
    model.oracle_emb.weight.data[3] = 0.0
    return model


@torch.no_grad()
def test_cleaned_folder_is_a_kame_frontend_equal_to_moshi(tmp_path):
    kw = finetune_kwargs()
    ref, state = write_cleaned(tmp_path / "ck", kw)
    model, info = load_frontend(tmp_path / "ck")
    assert info.layout == KWARGS and info.model_type == "kame" and model.has_oracle and not info.oracle_upgraded
    assert torch.equal(model.oracle_emb.weight, state["oracle_emb.weight"])  # its trained oracle, not a copy
    assert info.weights == tmp_path / "ck" / "model.safetensors" and info.user_stream_dropped == 0
    codes = _codes(2, 12)
    a, b = ref(codes), model(codes, oracle=torch.full((2, 12), -1))
    assert torch.allclose(a.logits.nan_to_num(), b.logits.nan_to_num(), atol=1e-4)
    assert torch.allclose(a.text_logits.nan_to_num(), b.text_logits.nan_to_num(), atol=1e-4)
    want, got, _, _ = _greedy_both(ref, _no_oracle(model), 2, 20, 8)
    assert torch.equal(want, got)
    # the same checkpoint named by its files, and through the registry (frontend.spec)
    for spec in (tmp_path / "ck" / KWARGS, tmp_path / "ck" / "model.safetensors"):
        m, i = load_frontend(spec)
        assert i.layout == KWARGS and torch.equal(m.text_linear.weight, model.text_linear.weight)
    fe = registry.create("frontend", f"path:{tmp_path / 'ck'}")
    assert fe.info.layout == KWARGS and fe.model.has_oracle


@torch.no_grad()
def test_a_user_stream_depformer_loads_as_clean_moshi_removes_it(tmp_path):
    """dep_q 16 = n_q: the depformer predicts the agent's 8 codebooks, then the user's 8. moshi's
    LMGen would then read no user audio at all (it generates the user's codebooks); kame drops
    the user's steps, as clean_moshi --remove_modules_for_user_stream does."""
    kw = finetune_kwargs(user_stream=True)
    ref16, state = write_cleaned(tmp_path / "ck16", kw)
    model, info = load_frontend(tmp_path / "ck16")
    assert model.cfg.dep_q == 8 and model.cfg.n_q == 16 and info.user_stream_dropped == 8
    # the agent's codebooks: the dep_q 16 reference's first 8, teacher forced
    codes = _codes(2, 12)
    a, b = ref16(codes), model(codes, oracle=torch.full((2, 12), -1))
    assert a.logits.shape[1] == 16 and b.logits.shape[1] == 8
    assert torch.allclose(a.logits[:, :8].nan_to_num(), b.logits.nan_to_num(), atol=1e-4)
    assert torch.allclose(a.text_logits.nan_to_num(), b.text_logits.nan_to_num(), atol=1e-4)
    # == the folder clean_moshi --remove_modules_for_user_stream writes
    ref8, kw8 = removed_user_stream(ref16, kw)
    write_state(tmp_path / "ck8", {**ref8.state_dict(), "oracle_emb.weight": state["oracle_emb.weight"]}, kw8)
    model8, info8 = load_frontend(tmp_path / "ck8")
    assert info8.user_stream_dropped == 0 and model8.cfg == model.cfg.replace()
    s, s8 = model.state_dict(), model8.state_dict()
    assert s.keys() == s8.keys() and all(torch.equal(s[k], s8[k]) for k in s)
    # the fused attention weights of SakanaAI/kame's LMModel (in_proj_weight, out_proj.weight: the
    # steps stacked by rows) are cut the same way
    fused = {k: v for k, v in state.items()
             if not (k.startswith("depformer.") and (".in_projs." in k or ".out_projs." in k))}
    for i in range(kw["depformer_num_layers"]):
        pre = f"depformer.layers.{i}.self_attn."
        fused[pre + "in_proj_weight"] = torch.cat([state[f"{pre}in_projs.{j}.weight"] for j in range(16)])
        fused[pre + "out_proj.weight"] = torch.cat([state[f"{pre}out_projs.{j}.weight"] for j in range(16)])
    write_state(tmp_path / "fused", fused, kw)
    s2 = load_frontend(tmp_path / "fused")[0].state_dict()
    assert s2.keys() == s.keys() and all(torch.equal(s[k], s2[k]) for k in s)
    # streaming with the user's audio: == moshi's LMGen on the cleaned model
    want, got, _, _ = _greedy_both(ref8, _no_oracle(model), 2, 20, 8)
    assert torch.equal(want, got) and len(set(got[:, 0, 0].tolist())) > 3


def test_a_user_stream_depformer_kame_cannot_cut_is_refused(tmp_path):
    ck = tmp_path / "ck"
    write_cleaned(ck, finetune_kwargs(user_stream=True))
    raw = (ck / KWARGS).read_text().replace('"depformer_weights_per_step": true', '"depformer_weights_per_step": false')
    (ck / KWARGS).write_text(raw)
    with pytest.raises(CheckpointError, match=r"dep_q 16 = n_q: its depformer also models the user's codebooks.*"
                                              r"--remove_modules_for_user_stream"):
        load_frontend(ck)


def test_companions_are_moshis_default_names_in_the_folder(tmp_path):
    ck = tmp_path / "ck"
    write_cleaned(ck, finetune_kwargs())
    _, info = load_frontend(ck)
    assert info.mimi is None and info.tokenizer is None
    assert MIMI_NAME in info.missing_files and TOKENIZER_NAME in info.missing_files
    (ck / MIMI_NAME).write_bytes(b"mimi")
    (ck / TOKENIZER_NAME).write_bytes(b"spm")
    _, info = load_frontend(ck)
    assert info.mimi == ck / MIMI_NAME and info.tokenizer == ck / TOKENIZER_NAME and info.missing_files == []


def test_kwargs_errors_name_the_file(tmp_path):
    import json

    ck = tmp_path / "ck"
    write_cleaned(ck, finetune_kwargs())
    (ck / KWARGS).write_text(json.dumps(finetune_kwargs(foo=1)))
    with pytest.raises(ConfigError, match=rf"ck/{KWARGS}: unknown front-end config key\(s\): foo"):
        load_frontend(ck)
    (ck / KWARGS).write_text(json.dumps(finetune_kwargs(tokenizer_name="x.model")))
    with pytest.raises(ConfigError, match=rf"ck/{KWARGS}: unexpected key 'tokenizer_name'.*config.json"):
        load_frontend(ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=rf"has {KWARGS} but no model.safetensors"):
        load_frontend(ck)


def test_training_layouts_are_refused_with_the_conversion(tmp_path):
    """zero_to_fp32's MoshiForFinetuning folder (with or without its kwargs, sharded or not) and the
    DeepSpeed checkpoint itself: each error names the kame_finetune command still to run."""
    _, state = write_cleaned(tmp_path / "ck", finetune_kwargs())
    clean = r"tools.clean_moshi --moshi_ft_dir .* --oracle_embedding_mode MODE"
    fp32 = tmp_path / "step_3_fp32"
    write_state(fp32, training_state(state), finetune_kwargs())
    with pytest.raises(CheckpointError, match=r"holds a kame_finetune training model \(MoshiForFinetuning.*" + clean):
        load_frontend(fp32)
    (fp32 / KWARGS).unlink()  # zero_to_fp32 without --moshi_lm_kwargs_path
    with pytest.raises(CheckpointError, match="training model.*" + clean):
        load_frontend(fp32)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(tmp_path / "ck" / KWARGS, sharded / KWARGS)
    (sharded / "model.safetensors.index.json").write_text("{}")
    (sharded / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"holds model.safetensors.index.json.*zero_to_fp32's output.*" + clean):
        load_frontend(sharded)
    ds = tmp_path / "step_3"
    (ds / "global_step3").mkdir(parents=True)
    (ds / "latest").write_text("global_step3")
    (ds / "global_step3" / "zero_pp_rank_0_mp_rank_00_model_states.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is a DeepSpeed ZeRO checkpoint .*tools.zero_to_fp32 .*step_3 "
                                              r".*step_3_fp32 --moshi_lm_kwargs_path.*" + clean):
        load_frontend(ds)
    # a config.json folder holding such weights says the same (was: 'keys the config does not define')
    from kame.model.loaders import save_frontend

    m, _ = load_frontend(tmp_path / "ck")
    save_frontend(m, tmp_path / "cfg")
    write_state(tmp_path / "cfg", training_state(state), None)
    with pytest.raises(CheckpointError, match="training model.*" + clean):
        load_frontend(tmp_path / "cfg")


def test_hf_repo_with_kwargs_instead_of_config_json(tmp_path, monkeypatch):
    """An hf:// repo holding moshi_lm_kwargs.json (as SakanaAI/kame's inference reads it) and no
    config.json: read as the folder is (was: taken for Moshi 7B, whose shapes do not fit)."""
    import huggingface_hub.constants as hc

    ck = tmp_path / "ck"
    _, state = write_cleaned(ck, finetune_kwargs(user_stream=True))
    (ck / TOKENIZER_NAME).write_bytes(b"spm")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--kame-ft"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(ck, repo / "snapshots" / commit)
    (repo / ".no_exist" / commit).mkdir(parents=True)
    (repo / ".no_exist" / commit / "config.json").write_text("")  # (the hub said: no config.json)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    model, info = load_frontend("hf://acme/kame-ft")
    assert info.layout == KWARGS and info.model_type == "kame" and model.cfg.dep_q == 8
    assert torch.equal(model.oracle_emb.weight, state["oracle_emb.weight"])
    assert info.tokenizer.read_bytes() == b"spm" and info.mimi is None
    assert any(MIMI_NAME in m for m in info.missing_files)
