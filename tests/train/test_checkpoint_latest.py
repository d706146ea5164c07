"""OUT/latest off Linux (kame.train.saving): a link to a folder (Windows makes a file link
unless told, which --resume OUT/latest cannot go into), and where no link can be made at all
(Windows without the symlink privilege) the step is saved all the same, with one warning saying
to resume from OUT/step-N (was: an uncaught OSError after the step's files were written)."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from kame.model.loaders import load_frontend
from kame.train import saving
from kame.train.checkpoint import save_checkpoint
from kame.train.config import STATE, TrainConfig


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return load_frontend("random:tiny", text_card=4000)[0]


def _save(net, tmp_path, step):
    man = tmp_path / "train.jsonl"
    man.write_text("")
    return save_checkpoint(net, net.state_dict(), {}, tmp_path / "out", step, TrainConfig(), man, "0" * 64,
                           codec_spec="embedded", tokenizer_spec="default")


def _no_privilege(src, dst, target_is_directory=False, **kw):
    raise OSError(22, "A required privilege is not held by the client", str(dst), 1314)


def test_latest_is_a_link_to_a_folder(net, tmp_path, monkeypatch):
    link = os.symlink

    def windows_symlink(src, dst, target_is_directory=False, **kw):  # a file link to a folder: not gone into
        link(src if target_is_directory else f"{src}.as-a-file", dst)

    monkeypatch.setattr(os, "symlink", windows_symlink)
    _save(net, tmp_path, 1)
    folder = _save(net, tmp_path, 2)
    latest = tmp_path / "out" / "latest"
    assert (latest / STATE).is_file() and latest.resolve() == folder.resolve()


def test_no_symlink_privilege_saves_the_step_with_one_warning(net, tmp_path, monkeypatch, caplog):
    out = tmp_path / "out"
    _save(net, tmp_path, 1)  # (linked: an earlier latest must not be left pointing at step-1)
    monkeypatch.setattr(os, "symlink", _no_privilege)
    with caplog.at_level(logging.WARNING, logger="kame.train.saving"):
        folders = [_save(net, tmp_path, step) for step in (2, 3)]
    assert all((f / STATE).is_file() and (f / "config.json").is_file() for f in folders)
    assert not os.path.lexists(out / "latest") and not os.path.lexists(out / ".latest.tmp")
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1, said
    assert "privilege" in said[0] and f"--resume {out / 'step-N'}" in said[0], said[0]


def test_a_link_not_replaced_over_is_replaced_in_two_moves(net, tmp_path, monkeypatch):
    """Windows: os.replace onto a link to a folder fails (ERROR_ACCESS_DENIED)."""
    replace = os.replace

    def windows_replace(src, dst):
        if os.path.islink(dst):
            raise PermissionError(13, "Access is denied", str(dst))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", windows_replace)
    _save(net, tmp_path, 1)
    folder = _save(net, tmp_path, 2)
    assert (tmp_path / "out" / "latest").resolve() == folder.resolve()
    assert not os.path.lexists(tmp_path / "out" / ".latest.tmp")
    assert (tmp_path / "out").resolve() not in saving._UNLINKED  # (no warning: it was made)


def test_equal_train_states_are_equal_bytes(net, tmp_path):
    """train_state.pt's zip records were named after the random temporary file it was written to
    (.train_state.pt.<random>/data.pkl), so two identical runs' states differed by hash."""
    first = (_save(net, tmp_path, 1) / STATE).read_bytes()
    assert first == (_save(net, tmp_path, 1) / STATE).read_bytes()  # (the same step again: written anew)
