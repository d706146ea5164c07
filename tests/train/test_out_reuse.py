"""`kame train` into an OUT used before (review l3): a run into an OUT another run is writing to is
refused by the lock first (was: first told to --resume or --overwrite that live run's checkpoints);
a failed save of a step-N that was there before leaves that folder as it was and names this run's
own last checkpoint (was: step-N left with this save's weights beside its earlier train_state.pt,
then a message saying to remove it); log.jsonl is appended to only in the resumed checkpoint's own
OUT (was: another run's rows too); a log.jsonl that cannot be removed is a warning and the lock is
let go on any error (was: a traceback, the lock held); --resume of an unfinished step-N says so; a
file system that refuses locks is warned of."""

from __future__ import annotations

import errno
import json
import logging
import os
from collections import namedtuple
from types import SimpleNamespace

import pytest
import torch

from kame.backend.tokenizer import default_tokenizer
from kame.cli import main as cli_main
from kame.errors import ConfigError
from kame.model.loaders import load_frontend
from kame.train import checkpoint
from kame.train.checkpoint import SaveFailed, check_out, out_lock, save_checkpoint
from kame.train.config import TrainConfig
from kame.train.finetune import train

from ._fakes import FakeCodec
from .test_finetune import FAST, _data, _tiny
from .test_out_safety import CLI, _fail_on


def test_a_run_into_an_out_being_written_is_refused_by_the_lock_before_the_out_checks(tmp_path, capsys, fake_codec):
    manifest = str(_data(tmp_path / "data"))
    out = tmp_path / "o"
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "1", *CLI]) == 0
    capsys.readouterr()
    with out_lock(out):  # (a run writing there: its lock)
        for more in ([], ["--overwrite"]):
            assert cli_main(["train", manifest, "-o", str(out), "--steps", "2", *CLI, *more]) == 1
            err = capsys.readouterr().err
            assert "train: another kame process" in err and "holds files already" not in err, err
    assert (out / "step-1" / "train_state.pt").is_file()


def test_a_failed_save_of_a_step_folder_there_before_leaves_it_as_it_was(tmp_path, capsys, monkeypatch, fake_codec):
    manifest = str(_data(tmp_path / "data"))
    out = tmp_path / "o"
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "3", "--save-every", "1", *CLI]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in (out / "step-3").iterdir()}
    # resumed from step-1: step-2 saved again, then step-3's training state cannot be written (a full disk)
    cut = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6857536 vs 6857424")
    monkeypatch.setattr(torch, "save", _fail_on(2, cut)(torch.save))
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: namedtuple("U", "total used free")(10, 10, 0))
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "3", "--save-every", "1",
                     "--resume", str(out / "step-1"), *CLI]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"disk full while saving step 3 ({out / 'step-3'}: No space left on device); nothing of it is kept; last " \
           f"checkpoint {out / 'step-2'}; free space, then resume with --resume {out / 'latest'}" in err, err
    # (was: step-3 with this run's weights beside the earlier run's train_state.pt, a resume mixing two runs)
    assert {p.name: p.read_bytes() for p in (out / "step-3").iterdir()} == before
    assert (out / "latest").resolve() == (out / "step-2").resolve()
    assert sorted(p.name for p in out.iterdir()) == [".lock", "latest", "log.jsonl", "step-1", "step-2", "step-3"]


def test_a_failed_save_removes_its_folder_and_the_optimizer_shards_written_there(tmp_path, monkeypatch):
    """(a sharded save's processes write their optimizer shards into the step's staging folder first)"""
    import kame.model.loaders as loaders
    from kame.codec.embedded.model import DEFAULT_SHA256
    from kame.train.saving import begin_save

    net, man, out = _tiny(), tmp_path / "train.jsonl", tmp_path / "out"
    man.write_text("")
    (begin_save(out, 1) / "optimizer").mkdir(parents=True)
    monkeypatch.setattr(loaders, "save_tensors", _fail_on(1, OSError(errno.EIO, "I/O error"))(loaders.save_tensors))
    with pytest.raises(SaveFailed, match="nothing of it is kept"):
        save_checkpoint(net, net.state_dict(), {"sharded": "optimizer"}, out, 1, TrainConfig(), man, "0" * 64,
                        codec_spec="embedded", tokenizer_spec="default",
                        codec=SimpleNamespace(fingerprint=DEFAULT_SHA256), staged=True)
    assert list(out.iterdir()) == []


def test_log_jsonl_is_appended_to_only_in_the_resumed_checkpoint_s_own_out(tmp_path):
    manifest = _data(tmp_path / "data")
    kw = dict(FAST, log_every=1, save_every=1)
    b, a = tmp_path / "b", tmp_path / "a"
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, b, TrainConfig(steps=2, **kw), echo=lambda s: None)
    a.mkdir()  # (a run stopped before its first save: its log.jsonl alone, so OUT counts as empty)
    (a / "log.jsonl").write_text(json.dumps({"step": 1, "steps": [1, 1]}) + "\n")
    train(load_frontend(b / "step-1")[0], FakeCodec(), default_tokenizer(), manifest, a, TrainConfig(steps=2, **kw),
          resume=b / "step-1", echo=lambda s: None)
    assert [json.loads(s)["steps"] for s in (a / "log.jsonl").read_text().splitlines()] == [[2, 2]]


def test_a_log_jsonl_that_cannot_be_removed_is_a_warning_and_an_error_lets_go_of_the_lock(tmp_path, monkeypatch):
    import kame.train.finetune as finetune

    manifest = _data(tmp_path / "data")
    out, lines = tmp_path / "o", []
    (out / "log.jsonl").mkdir(parents=True)  # (not a file: cannot be removed with unlink)
    res = train(_tiny(), FakeCodec(), default_tokenizer(), manifest, out, TrainConfig(steps=1, **FAST),
                echo=lines.append)
    assert res.step == 1 and (out / "step-1").is_dir()
    warned = [s for s in lines if s.startswith(f"warning: cannot write {out / 'log.jsonl'}")]
    assert len(warned) == 1 and warned[0].endswith("the log rows go to stdout only"), lines

    def broken(*a, **kw):
        raise RuntimeError("broken")

    monkeypatch.setattr(finetune, "RunLog", broken)  # (an error after the lock is taken, before the loop)
    with pytest.raises(RuntimeError, match="broken") as caught:
        train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "p", TrainConfig(steps=1, **FAST),
              echo=lambda s: None)
    with out_lock(tmp_path / "p"):  # (its frame still held by ``caught``: was refused, the lock still held)
        pass
    assert caught.value is not None


def test_the_overwrite_messages_name_log_jsonl_and_an_unfinished_resume_is_named(tmp_path, capsys, fake_codec):
    manifest = str(_data(tmp_path / "data"))
    out = tmp_path / "o"
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "1", *CLI]) == 0
    with pytest.raises(ConfigError, match="--overwrite to remove its step-N folders, latest and log.jsonl"):
        check_out(out, False)
    (out / "step-2").mkdir()  # (a save killed outright: its codec file, no train_state.pt)
    (out / "step-2" / "embedded_codec.safetensors").write_bytes(b"")
    capsys.readouterr()
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "3", "--resume", str(out / "step-2"), *CLI]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "holds no train_state.pt: it is an unfinished kame train checkpoint (a save that was stopped): give " \
           f"{out / 'latest'}, the last complete one (and remove {out / 'step-2'})" in err, err
    (out / "step-2" / "config.json").write_text("{}")  # (its weights and config kept: a usable front-end, not removed)
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "3", "--resume", str(out / "step-2"), *CLI]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "it is an unfinished kame train checkpoint" in err and "and remove" not in err, err


def test_a_file_system_that_refuses_locks_is_warned_of(tmp_path, monkeypatch, caplog):
    import fcntl

    def refused(*a):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refused)
    with caplog.at_level(logging.WARNING, logger="kame.train.checkpoint"):
        for _ in range(2):  # (kame train's early check, then the run's own: said once)
            with out_lock(tmp_path / "o"):
                pass
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "cannot lock" in said[0] and "No locks available" in said[0], said


def test_an_out_in_a_folder_that_takes_no_files_cannot_be_created(tmp_path, monkeypatch):
    """(/proc: mkstemp there fails with ENOENT; was "-o /proc/a/b cannot be written (/proc: No such file or
    directory)", as if /proc were missing)"""
    import tempfile

    def no_entry(*a, **kw):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(tempfile, "mkstemp", no_entry)
    with pytest.raises(ConfigError, match=rf"-o {tmp_path / 'a' / 'b'} cannot be created \({tmp_path}: no file or "
                                          rf"folder can be made there\)"):
        check_out(tmp_path / "a" / "b", False)
    if os.path.isdir("/proc/self"):  # (the folder itself, where there is one)
        monkeypatch.undo()
        with pytest.raises(ConfigError, match="-o /proc/a/b cannot be created"):
            check_out("/proc/a/b", False)
