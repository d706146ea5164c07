"""save_frontend of a model without the oracle stream whose model_id is not an object (a third
party's "org/repo" string): saved kame-only, kame's keys at the top of config.json, with a warning
(kame.model.moshiform.moshi_form; was: a ConfigError, and the model could not be saved)."""

import json
import logging

import torch

from kame.model.loaders import load_frontend, save_frontend
from kame.model.moshiform import KAME_LM, moshi_form

torch.set_num_threads(1)


def test_a_model_id_string_is_kept_and_the_save_is_kame_only(tmp_path, caplog):
    model, _ = load_frontend("random:tiny", oracle=False)
    save_frontend(model, tmp_path / "a")
    raw = json.loads((tmp_path / "a" / "config.json").read_text())
    raw = {k: v for k, v in raw.items() if k != "model_id"}
    (tmp_path / "a" / "config.json").write_text(json.dumps({**raw, "model_id": "kyutai/moshiko-v1"}))
    loaded, _ = load_frontend(tmp_path / "a", oracle=False)
    with caplog.at_level(logging.WARNING, logger="kame.model.moshiform"):
        save_frontend(loaded, tmp_path / "b")
    assert "model_id='kyutai/moshiko-v1' is not an object" in caplog.text and "kame-only" in caplog.text
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["model_id"] == "kyutai/moshiko-v1" and saved["oracle"] is False, saved
    again, info = load_frontend(tmp_path / "b")  # as saved: no oracle stream
    assert again.cfg.oracle is False and info.raw_config["model_id"] == "kyutai/moshiko-v1"


def test_keys_go_into_a_kame_lm_there_already():
    form = moshi_form({"oracle": False, "version": "1", "model_id": {KAME_LM: {"x": 1}, "sig": "s"}})
    assert form["model_id"] == {"sig": "s", KAME_LM: {"x": 1, "oracle": False, "version": "1"}}, form
