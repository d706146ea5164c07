"""kame run / the runtime on a SakanaAI/kame_finetune cleaned folder (model.safetensors +
moshi_lm_kwargs.json, no config.json): its Mimi and tokenizer are taken from the folder by
Moshi's default names, and a missing one is an error saying which file to put there."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from ..model._finetune import finetune_kwargs, write_cleaned
from kame.backend.tokenizer import DEFAULT_MODEL, TextTokenizer
from kame.cli import main
from kame.codec.mimi import build_random, save_mimi
from kame.config import load_config
from kame.errors import CheckpointError
from kame.model.loaders import MIMI_NAME, TOKENIZER_NAME
from kame.runtime.frontend import load_frame_models

pytest.importorskip("moshi.models")


def cleaned(folder, *, user_stream=False, mimi=True, tokenizer=True):
    """A tiny cleaned folder for the tiny Mimi and kame's default tokenizer (its vocabulary), with
    the companions copied in under Moshi's default names."""
    codec = build_random("tiny")
    kw = finetune_kwargs(user_stream, card=codec.cardinality, text_card=TextTokenizer(DEFAULT_MODEL).vocab_size)
    write_cleaned(folder, kw)
    if mimi:
        save_mimi(codec, folder / MIMI_NAME)
    if tokenizer:
        shutil.copy(DEFAULT_MODEL, folder / TOKENIZER_NAME)
    return folder


def cfg(spec, *sets):
    return load_config(None, [f"frontend.spec={spec}", "backend.stt=none", "backend.llm=none", *sets])


@pytest.mark.parametrize("user_stream", [False, True])
def test_kame_run_runs_a_cleaned_folder(tmp_path, capsys, user_stream):
    ck = cleaned(tmp_path / "ck", user_stream=user_stream)
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(24000, np.float32), 24000)
    out = tmp_path / "out.wav"
    rc = main(["run", str(wav), "-o", str(out), "--fast", "--no-png", "--tail", "0.2", "--set", f"frontend.spec={ck}",
               "--set", "backend.stt=none", "--set", "backend.llm=none", "--set", "runtime.vad=energy"])
    assert rc == 0, capsys.readouterr()
    comps = json.loads(out.with_suffix(".json").read_text())["components"]
    assert comps["oracle_stream"] == "trained" and comps["oracle"] is True and comps["frontend_type"] == "kame"
    assert comps["codec"] == f"mimi:{(ck / MIMI_NAME).absolute()}" and comps["tokenizer"] == str(ck / TOKENIZER_NAME)
    assert sf.info(out).frames > 0


def test_a_missing_companion_names_the_file_to_put_there(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    notok = cleaned(tmp_path / "notok", tokenizer=False)
    with pytest.raises(CheckpointError, match=rf"its text tokenizer was not found: looked for "
                                              rf".*notok/{TOKENIZER_NAME}\. It is a kame_finetune checkpoint "
                                              rf".*Copy that file there"):
        load_frame_models(cfg(notok))
    nomimi = cleaned(tmp_path / "nomimi", mimi=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # the published Mimi: not cached here
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match=rf"codec.spec 'auto' for the front-end .*nomimi': it is a kame_finetune "
                                              rf"checkpoint .*Moshi's Mimi is not in its folder \(looked for "
                                              rf".*nomimi/{MIMI_NAME}.*set codec.spec \(mimi:PATH"):
        load_frame_models(cfg(nomimi))
    # another codec kind is refused: it was trained on Mimi codes
    from kame.errors import ConfigError

    with pytest.raises(ConfigError, match="it was trained on Mimi codes \\(it is a kame_finetune checkpoint"):
        load_frame_models(cfg(nomimi, "codec.spec=embedded"))
