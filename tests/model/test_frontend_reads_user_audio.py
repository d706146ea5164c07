"""A front-end that reads no user audio (n_q = dep_q: every audio codebook it reads is one it
generates) is refused where kame run / serve / train load a tandem's front-end
(load_frontend(expect="frontend"), where Kyutai STT's dep_q 0 is refused), saying why and what
n_q must be (was: trained and ran, its agent talking whatever the user said). Building one with
the Python API stays free. Tiny models."""

import pytest
import torch

from kame.cli import main
from kame.config import load_config
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend, save_frontend
from kame.model.stepper import Stepper
from kame.runtime.frontend import load_frame_models

torch.set_num_threads(1)

DEAF = "random:tiny;n_q=8,delays=[0,0,1,1,1,1,1,1,1]"  # dep_q 8 (tiny's): n_user_q 0
WHY = (r"reads no user audio \(n_q 8 = dep_q 8: every audio codebook it reads is one it generates\), so a tandem "
       r"agent on it would talk whatever the user says; a speech-to-speech front-end has n_q = dep_q \+ the user's "
       r"codebooks \(Moshi's layout: n_q 16 for dep_q 8\)")


def test_the_loader_refuses_it_as_a_frontend_and_builds_it_otherwise(tmp_path):
    with pytest.raises(CheckpointError, match=rf"^{DEAF.replace('[', '.').replace(']', '.')} {WHY}; leave n_q and "
                                              r"delays out of the spec, or give n_q=16 with n_q \+ 1 delays$"):
        load_frontend(DEAF, expect="frontend")
    model, _ = load_frontend(DEAF)  # the Python API: any config
    assert model.cfg.n_user_q == 0
    Stepper(model).step(None)
    folder = save_frontend(model, tmp_path / "deaf")
    with pytest.raises(CheckpointError, match=rf"^{folder} {WHY}$"):  # (a checkpoint: no spec to change)
        load_frontend(folder, expect="frontend")
    load_frontend(folder)


def test_kame_run_and_serve_refuse_it():
    cfg = load_config(None, [f"frontend.spec={DEAF}", "backend.stt=none", "backend.llm=none"])
    with pytest.raises(CheckpointError, match=WHY):
        load_frame_models(cfg)


def test_kame_train_refuses_it_before_reading_data(tmp_path, capsys):
    (tmp_path / "train.jsonl").write_text("")  # (reading it would be the next error)
    rc = main(["train", str(tmp_path / "train.jsonl"), "-o", str(tmp_path / "out"), "--frontend", DEAF,
               "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "reads no user audio (n_q 8 = dep_q 8" in err, err
    assert not (tmp_path / "out").exists()
