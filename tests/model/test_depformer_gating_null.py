"""A null depformer_gating means gating's value everywhere: LMConfig, the model it builds, a
config.json read back (kame.model.config.LMConfig.from_dict; was: read as silu, so a KAME save of
depformer_gating=None, gating="gelu" reloaded with another depformer)."""

import json

import torch

from kame.model.config import LMConfig
from kame.model.loaders import load_frontend, save_frontend

torch.set_num_threads(1)


def test_a_null_depformer_gating_reloads_as_gatings_value(tmp_path):
    model, _ = load_frontend("random:tiny;gating=gelu,depformer_gating=null")
    assert model.cfg.depformer_gating is None and model.cfg.gating == "gelu"
    save_frontend(model, tmp_path / "k")  # a KAME save (oracle on): config.json as it is
    assert json.loads((tmp_path / "k" / "config.json").read_text())["depformer_gating"] is None
    again, _ = load_frontend(tmp_path / "k")
    assert again.cfg.depformer_gating in (None, "gelu"), again.cfg.depformer_gating
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert LMConfig.from_dict({**model.cfg.to_dict(), "depformer_gating": None}).depformer_gating is None
