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


@pytest.mark.parametrize("spec, tail", [
    ("random:tiny;dep_q=16", "n_q 32 for dep_q 16); leave dep_q out of the spec, or give n_q=32 with n_q + 1 delays"),
    (DEAF, "n_q 16 for dep_q 8); leave n_q and delays out of the spec, or give n_q=16 with n_q + 1 delays"),
    ("random:tiny;dep_q=16,n_q=16",
     "n_q 32 for dep_q 16); leave n_q and dep_q out of the spec, or give n_q=32 with n_q + 1 delays"),
])
def test_the_hint_names_the_keys_the_spec_set(spec, tail):
    """(was: "leave n_q and delays out of the spec" for random:tiny;dep_q=16, which sets neither)"""
    with pytest.raises(CheckpointError) as e:
        load_frontend(spec, expect="frontend", weights=False)
    assert str(e.value).endswith(f"(Moshi's layout: {tail}"), str(e.value)


def test_a_checkpoint_folder_named_random_gets_no_spec_hint(tmp_path, monkeypatch):
    """A folder whose name starts with "random" is a checkpoint, not a random: spec (was: told to
    change its spec's n_q / dep_q)."""
    monkeypatch.chdir(tmp_path)
    save_frontend(load_frontend(DEAF)[0], "randomish_ckpt")
    with pytest.raises(CheckpointError, match=rf"^randomish_ckpt {WHY}$"):
        load_frontend("randomish_ckpt", expect="frontend")
    save_frontend(load_frontend("random:tiny;dep_q=0,n_q=8,delays=[0,0,1,1,1,1,1,1,1]")[0], "random_stt")
    with pytest.raises(CheckpointError, match=r"^random_stt is a Kyutai STT checkpoint \(model_type 'moshi', dep_q 0"):
        load_frontend("random_stt", expect="frontend")


def test_a_random_spec_that_set_dep_q_0_is_told_to_leave_it_out():
    with pytest.raises(CheckpointError, match=r"^random:tiny;dep_q=0 is shaped like Kyutai STT \(dep_q 0: text out, "
                                              r"no audio\), not a speech-to-speech front-end; leave dep_q out of the "
                                              r"spec \(random:tiny's is 8\)$"):
        load_frontend("random:tiny;dep_q=0", expect="frontend", weights=False)
