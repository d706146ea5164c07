"""A kame train step-N that a killed save left with only its codec file (the codec is placed
first): loading it names it an unfinished checkpoint and OUT/latest (was: "it is a fitted
embedded codec; give it as the codec", QA trainrun)."""

from __future__ import annotations

import os
import shutil

import pytest

from kame.codec.embedded.model import DEFAULT_PATH
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend


def test_a_step_folder_holding_only_its_codec_file_is_named_unfinished(tmp_path):
    out = tmp_path / "run"
    (out / "step-5").mkdir(parents=True)
    (out / "step-5" / "config.json").write_text("{}")  # (a complete one: latest points at it)
    os.symlink("step-5", out / "latest", target_is_directory=True)
    (out / "step-10").mkdir()
    shutil.copyfile(DEFAULT_PATH, out / "step-10" / "embedded_codec.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_frontend(out / "step-10")
    msg = str(err.value)
    assert "unfinished kame train checkpoint" in msg and f"give {out / 'latest'}, the last complete one" in msg, msg
    assert "fitted embedded codec" not in msg, msg


def test_a_fitted_codec_elsewhere_is_still_named_one(tmp_path):
    (tmp_path / "fits").mkdir()
    shutil.copyfile(DEFAULT_PATH, tmp_path / "fits" / "embedded_codec.safetensors")
    with pytest.raises(CheckpointError, match="it is a fitted embedded codec; give it as the codec"):
        load_frontend(tmp_path / "fits")
