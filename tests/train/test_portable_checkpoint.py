"""`kame train` checkpoints of a Mimi-coded front-end travel (kame.train.checkpoint): they load
with codec.spec=auto from any working directory, moved or copied, after the folder they started
from is gone, and --resume works from anywhere; --resume compares the front-end it started from
by its resolved path; a KAME file whose config.json says "oracle": false is told what to edit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from kame.backend.tokenizer import DEFAULT_MODEL
from kame.cli import main as cli_main
from kame.codec.mimi import build_random, save_mimi
from kame.config import load_config
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend, save_frontend
from kame.paths import file_sha256
from kame.runtime.frontend import load_frame_models

from .test_finetune import _data

MIMI = "tokenizer-e351c8d8-checkpoint125.safetensors"
TOK = "tokenizer_spm_32k_3.model"
FAST = ["--steps", "2", "--batch-size", "2", "--window", "16", "--warmup", "1", "--seed", "0"]


def moshi_folder(folder: Path, *, oracle_emb: bool = False, seed: int = 1) -> Path:
    """A tiny Moshi-format folder: config.json (mimi_name, tokenizer_name) + weights + its Mimi + its tokenizer."""
    torch.manual_seed(seed)
    codec = build_random("tiny", seed=seed)
    model, _ = load_frontend("random:tiny", card=codec.cardinality, oracle=oracle_emb, text_card=4000)
    save_frontend(model, folder, mimi_name=MIMI, tokenizer_name=TOK, model_type="moshi")
    save_mimi(codec, folder / MIMI)
    shutil.copy(DEFAULT_MODEL, folder / TOK)
    return folder


def run_cfg(spec, *sets):
    return load_config(None, [f"frontend.spec={spec}", "backend.stt=none", "backend.llm=none", *sets])


def runs(spec) -> dict:
    """Load a front-end as kame run does (codec.spec auto) and step it a few frames -> its info."""
    factory, info = load_frame_models(run_cfg(spec))
    fm = factory(1)
    fm.reset([0])
    rng = np.random.default_rng(0)
    for _ in range(3):
        fm.step(rng.standard_normal((1, 1920)).astype(np.float32) * 0.1, np.ones(1, bool))
    return info


def train(*argv, capsys) -> None:
    capsys.readouterr()
    rc = cli_main(["train", *map(str, argv)])
    assert rc == 0, capsys.readouterr().err


@pytest.mark.parametrize("codec", ["auto", "mimi:src"])
def test_a_mimi_trained_checkpoint_loads_moved_from_anywhere_after_its_source_is_gone(tmp_path, monkeypatch,
                                                                                      capsys, codec):
    """(was: kame.codec recorded 'mimi:src' verbatim, or the source folder's absolute Mimi path,
    and the Mimi stayed behind: the checkpoint loaded only from where it was trained)"""
    data = _data(tmp_path / "data")
    moshi_folder(tmp_path / "work" / "src")
    monkeypatch.chdir(tmp_path / "work")
    train(data, "--frontend", "./src", "--codec", codec, "-o", "runs/a", *FAST, capsys=capsys)
    ck = tmp_path / "work" / "runs" / "a" / "step-2"
    raw = json.loads((ck / "config.json").read_text())
    assert raw["mimi_name"] == MIMI and (ck / MIMI).is_file()  # the Mimi travels inside, as mimi_name names it
    assert raw["kame"]["codec"] == f"mimi:{MIMI}"  # relative to the checkpoint folder
    assert raw["kame"]["codec_sha256"] == file_sha256(tmp_path / "work" / "src" / MIMI) == file_sha256(ck / MIMI)
    # the run moved elsewhere, its source gone, loaded from another working directory
    shutil.move(tmp_path / "work" / "runs" / "a", tmp_path / "moved")
    shutil.rmtree(tmp_path / "work")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    info = runs(tmp_path / "moved" / "latest")
    assert info["codec"] == f"mimi:{tmp_path / 'moved' / 'latest' / MIMI}"
    assert not load_frontend(tmp_path / "moved" / "latest")[1].missing_files
    shutil.copytree(tmp_path / "moved" / "step-2", tmp_path / "copy")  # a copy too (its own file, no link)
    assert runs(tmp_path / "copy")["codec"] == f"mimi:{tmp_path / 'copy' / MIMI}"
    # --resume from another directory: goes on, and its new checkpoint holds the Mimi too
    train(data, "-o", tmp_path / "moved", "--steps", "3", "--resume", tmp_path / "moved" / "latest", capsys=capsys)
    assert (tmp_path / "moved" / "step-3" / MIMI).is_file() and runs(tmp_path / "moved" / "step-3")
    # the checks stay: a Mimi of another sha256 in its place is refused, naming both
    save_mimi(build_random("tiny", seed=7), tmp_path / "copy" / MIMI)
    with pytest.raises(CheckpointError, match=rf"kame.codec_sha256\), but codec 'mimi:{tmp_path / 'copy' / MIMI}' "
                                              rf"has sha256 [0-9a-f]{{64}}"):
        load_frame_models(run_cfg(tmp_path / "copy"))


def test_resume_takes_the_frontend_it_started_from_under_another_spelling(tmp_path, monkeypatch, capsys):
    """(was: kame.train.frontend recorded './src' as given, compared as a string: the same folder
    given by its absolute path, or from another directory, was refused)"""
    data = _data(tmp_path / "data")
    moshi_folder(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    train(data, "--frontend", "./src", "-o", "runs/a", *FAST, capsys=capsys)
    assert load_frontend(tmp_path / "runs/a/latest")[1].kame["train"]["frontend"] == str(tmp_path / "src")
    train(data, "-o", "runs/a", "--steps", "3", "--resume", "runs/a/latest", "--frontend", tmp_path / "src",
          capsys=capsys)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    train(data, "-o", "../runs/a", "--steps", "4", "--resume", "../runs/a/latest", "--frontend", "../src/",
          capsys=capsys)
    moshi_folder(tmp_path / "other")
    assert cli_main(["train", str(data), "-o", "../runs/a", "--steps", "5", "--resume", "../runs/a/latest",
                     "--frontend", "../other"]) == 1
    assert "not from --frontend ../other" in capsys.readouterr().err


def test_a_kame_file_whose_config_says_no_oracle_is_told_what_to_edit(tmp_path, capsys):
    """(was: advised frontend.oracle=on/off, kame run's config keys, which kame train has not)"""
    data = _data(tmp_path / "data")
    ck = moshi_folder(tmp_path / "kofalse", oracle_emb=True)
    raw = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps({**raw, "oracle": False, "model_type": "kame"}))
    assert cli_main(["train", str(data), "--frontend", str(ck), "-o", str(tmp_path / "run"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "oracle_emb.weight" in err and f'set "oracle": true in {ck / "config.json"}' in err, err
    assert "frontend.oracle" not in err and "it has no oracle option" in err, err
