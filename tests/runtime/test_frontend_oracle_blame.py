"""frontend.oracle is named only for the load failure it fixes: a KAME file whose config.json says
"oracle": false (the loader tells so, ``needs_oracle``), not a kame_finetune training folder whose
refusal mentions --oracle_embedding_mode (was: "oracle_emb" found in the message put it on
frontend.oracle=auto, with a frontend.oracle=on/off advice that does not help)."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from ..model._finetune import KWARGS, finetune_kwargs, training_state, write_cleaned, write_state
from .test_frontend_checkpoint import cfg, make_ck
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend
from kame.runtime.frontend import load_frame_models

pytest.importorskip("moshi.models")


def _refused(spec):
    with pytest.raises(CheckpointError) as e:
        load_frame_models(cfg(spec))
    return e.value


def test_a_training_folder_is_blamed_on_frontend_spec(tmp_path):
    _, state = write_cleaned(tmp_path / "ck", finetune_kwargs())
    fp32 = tmp_path / "step_3_fp32"  # zero_to_fp32's output (the gating weights exposed), its kwargs beside
    write_state(fp32, training_state(state), finetune_kwargs())
    ds = tmp_path / "step_3"  # the DeepSpeed ZeRO checkpoint itself
    (ds / "global_step3").mkdir(parents=True)
    (ds / "latest").write_text("global_step3")
    (ds / "global_step3" / "zero_pp_rank_0_mp_rank_00_model_states.pt").write_bytes(b"")
    for spec in (fp32, ds):
        exc = _refused(spec)
        assert exc.config_key == "frontend.spec" and "--oracle_embedding_mode" in str(exc), str(exc)
        assert "frontend.oracle" not in str(exc)  # (was: frontend.oracle = 'auto': ... frontend.oracle=on ...)
    assert (fp32 / KWARGS).exists()


def test_a_kame_file_saying_oracle_false_is_still_put_on_frontend_oracle(tmp_path):
    off = make_ck(tmp_path / "off", config_oracle=False)  # (its weights hold oracle_emb)
    exc = _refused(off)
    assert exc.config_key == "frontend.oracle" and "frontend.oracle=on" in str(exc)
    assert "oracle=True" not in str(exc)  # (r5: load_frontend's argument, not kame run's; its config key is said)
    with pytest.raises(CheckpointError) as e:
        load_frontend(off)
    assert e.value.needs_oracle is True and "(a KAME checkpoint: load it with oracle=True)" in str(e.value)
    # its oracle_emb of the wrong shape: oracle=on would not load it either (the shape is said, no hint)
    weights = off / "model.safetensors"
    state = load_file(str(weights))
    state["oracle_emb.weight"] = state["oracle_emb.weight"][:-1]
    write_state(off, state, None)
    exc = _refused(off)
    assert exc.config_key == "frontend.spec" and "frontend.oracle" not in str(exc)
    assert "oracle=True" not in str(exc) and exc.needs_oracle is False  # (l3: was the library's hint, wrong here)
