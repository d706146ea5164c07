"""`kame train`'s OUT kept safe (QA trainrun): an -o that cannot be written is refused before
anything loads (was: found at the first save, every step lost); a full disk while saving is one
line naming the checkpoint to resume (was: a safetensors traceback, or torch's "unexpected pos"),
and a failed or stopped save leaves no step-N holding part of its files; a second run into an OUT
a run is writing to is refused (was: both ran, the last to save won); a cosine run resumed with
another --steps warns; the log rows go to OUT/log.jsonl too, and a resumed run's first row says
when it averages fewer steps than the straight run's; --resume OUT names OUT/latest; a stale
codes cache is said without the fix kame train is already making."""

from __future__ import annotations

import errno
import json
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
from kame.train.checkpoint import out_lock, save_checkpoint
from kame.train.config import TrainConfig
from kame.train.finetune import train

from ._fakes import FakeCodec
from .test_finetune import FAST, _data, _tiny

CLI = ["--codec", "fake", "--window", "16", "--batch-size", "2", "--warmup", "1", "--log-every", "1"]


def _fail_on(n, exc):
    """A stand-in that raises ``exc`` at its ``n``-th call and else calls the real function."""
    calls = []

    def wrap(real):
        def f(*a, **k):
            calls.append(1)
            if len(calls) == n:
                raise exc
            return real(*a, **k)
        return f
    return wrap


def test_an_out_that_cannot_be_written_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch, fake_codec):
    import kame.train.launch

    manifest = str(_data(tmp_path / "data"))

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(kame.train.launch, "load_for_training", lambda *a, **kw: pytest.fail("loaded"))
    out = tmp_path / "ro" / "run"
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "2", *CLI]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kame: error: train: ") and "Traceback" not in err, err
    assert f"-o {out} cannot be written ({tmp_path}: Read-only file system)" in err and "another -o" in err, err
    assert not out.parent.exists()


def test_a_full_disk_while_saving_the_weights_says_what_to_resume(tmp_path, capsys, monkeypatch, fake_codec):
    from safetensors import SafetensorError

    import kame.model.loaders as loaders

    manifest = str(_data(tmp_path / "data"))
    full = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(loaders, "save_tensors", _fail_on(2, full)(loaders.save_tensors))
    out = tmp_path / "o"
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "3", "--save-every", "1", *CLI]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"kame: error: train: disk full while saving step 2 ({out / 'step-2'}: No space left on "
                          f"device)"), err
    assert f"last checkpoint {out / 'step-1'}; free space, then resume with --resume {out / 'latest'}" in err, err
    assert not (out / "step-2").exists() and (out / "latest").resolve() == (out / "step-1").resolve()


def test_a_full_disk_while_saving_the_training_state_is_said_so(tmp_path, capsys, monkeypatch, fake_codec):
    manifest = str(_data(tmp_path / "data"))
    # (torch's writer on a full disk: a RuntimeError that says nothing of it; the free space tells)
    cut = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6857536 vs 6857424")
    monkeypatch.setattr(torch, "save", _fail_on(1, cut)(torch.save))
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: namedtuple("U", "total used free")(10, 10, 0))
    out = tmp_path / "o"
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "2", "--save-every", "1", *CLI]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kame: error: train: disk full while saving step 1 ({out / 'step-1'}: No space left on "
                          f"device); nothing of it is kept; no checkpoint written yet: free space, then run the same "
                          f"command again"), err
    assert not (out / "step-1").exists()  # (was: step-1 with its weights and no train_state.pt)


def test_a_stopped_save_removes_the_step_folder_it_made(tmp_path, monkeypatch):
    """(was: step-N holding only the codec file, hard-linked first, which loading then took for a
    fitted embedded codec)"""
    import kame.model.loaders as loaders
    from kame.codec.embedded.model import DEFAULT_SHA256

    net = _tiny()
    man = tmp_path / "train.jsonl"
    man.write_text("")

    def save(step):
        return save_checkpoint(net, net.state_dict(), {}, tmp_path / "out", step, TrainConfig(), man, "0" * 64,
                               codec_spec="embedded", tokenizer_spec="default",
                               codec=SimpleNamespace(fingerprint=DEFAULT_SHA256))

    assert (save(1) / "embedded_codec.safetensors").is_file()
    real = loaders.save_tensors
    monkeypatch.setattr(loaders, "save_tensors", _fail_on(1, KeyboardInterrupt())(real))
    with pytest.raises(KeyboardInterrupt):
        save(2)
    assert not (tmp_path / "out" / "step-2").exists()
    monkeypatch.setattr(loaders, "save_tensors", _fail_on(1, KeyboardInterrupt())(real))
    with pytest.raises(KeyboardInterrupt):  # a step saved again (its folder there before): left as it was
        save(1)
    assert (tmp_path / "out" / "step-1" / "config.json").is_file()


def test_a_second_run_into_an_out_being_written_is_refused(tmp_path, capsys, fake_codec):
    manifest = str(_data(tmp_path / "data"))
    out = tmp_path / "o"
    with out_lock(out):  # (a run writing there: its lock)
        assert cli_main(["train", manifest, "-o", str(out), "--steps", "2", *CLI]) == 1
        err = capsys.readouterr().err
        assert f"train: another kame process (pid {os.getpid()}) is writing to -o {out}" in err and "another -o" in err, err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    # once it ended (its .lock left, holding a pid): no longer blocks, nor counts as files already
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "2", *CLI]) == 0


def test_a_run_holds_its_outs_lock_while_it_trains(tmp_path):
    manifest = _data(tmp_path / "data")
    out, seen = tmp_path / "o", []

    def echo(line):
        if line.startswith("saved"):
            try:
                with out_lock(out):
                    seen.append("free")
            except ConfigError as exc:
                seen.append(str(exc))

    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, out, TrainConfig(steps=2, **dict(FAST, save_every=1)),
          echo=echo)
    assert len(seen) == 2 and all(f"is writing to -o {out}" in s for s in seen), seen
    with out_lock(out):  # released at the end
        pass


def test_a_cosine_run_resumed_with_more_steps_warns(tmp_path):
    manifest = _data(tmp_path / "data")
    kw = dict(FAST, schedule="cosine", warmup_steps=1)
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "a", TrainConfig(steps=4, **kw),
          echo=lambda s: None)
    lines = []
    train(load_frontend(tmp_path / "a" / "latest")[0], FakeCodec(), default_tokenizer(), manifest, tmp_path / "a",
          TrainConfig(steps=8, **kw), resume=tmp_path / "a" / "latest", echo=lines.append)
    warned = [s for s in lines if "--schedule cosine" in s]
    assert len(warned) == 1 and "the run's 4 and now 8" in warned[0], lines
    assert "of step 5 is 0.00195 (the run's schedule: 0.0003)" in warned[0], warned


def test_the_log_rows_go_to_log_jsonl_and_a_resumed_row_says_what_it_averages(tmp_path):
    manifest = _data(tmp_path / "data")
    kw = dict(FAST, log_every=4, save_every=6)
    out, lines = tmp_path / "a", []
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, out, TrainConfig(steps=8, **kw), echo=lines.append)
    rows = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["steps"]) for r in rows] == [(4, [1, 4]), (8, [5, 8])]
    assert set(rows[0]) == {"step", "loss", "text", "audio", "lr", "frames_per_s", "time", "steps"}
    assert f"{rows[1]['loss']:.4f}" in [s for s in lines if s.split()[:1] == ["8"]][0]
    assert not any("mean of steps" in s for s in lines)
    lines.clear()
    train(load_frontend(out / "step-6")[0], FakeCodec(), default_tokenizer(), manifest, out, TrainConfig(steps=8, **kw),
          resume=out / "step-6", echo=lines.append)
    again = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert again[:2] == rows and [(r["step"], r["steps"]) for r in again[2:]] == [(8, [7, 8])]  # (appended)
    row = [s for s in lines if s.split()[:1] == ["8"]][0]
    assert row.endswith("mean of steps 7-8 only (resumed at 6)"), lines
    assert any(f"--resume {out / 'step-6'} is older than {out / 'latest'} (step-8): this run redoes steps 7-8" in s
               for s in lines), lines
    # a new run into it (--overwrite) starts the file afresh
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, out, TrainConfig(steps=4, **kw), overwrite=True,
          echo=lambda s: None)
    assert [json.loads(s)["step"] for s in (out / "log.jsonl").read_text().splitlines()] == [4]


def test_resume_of_the_run_folder_names_its_latest(tmp_path, capsys, fake_codec):
    manifest = str(_data(tmp_path / "data"))
    out = tmp_path / "o"
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "1", *CLI]) == 0
    capsys.readouterr()
    assert cli_main(["train", manifest, "-o", str(out), "--steps", "2", "--resume", str(out), *CLI]) == 1
    err = capsys.readouterr().err
    assert f"it is a run's folder: give its checkpoint, --resume {out / 'latest'}" in err, err


def test_a_stale_cache_is_said_once_without_the_fix_it_is_getting(tmp_path):
    from kame.train.batching import cached_dialogue
    from kame.train.codes import write_codes
    from kame.train.data import read_dialogue

    _data(tmp_path / "data", n=1)
    folder = tmp_path / "data" / "d0"
    write_codes(read_dialogue(folder), FakeCodec(4), spec="fake")
    lines = []
    assert cached_dialogue(folder, FakeCodec(8), lines.append) is None
    assert lines == [f"{folder / 'codes.npz'}: cached with 4 codebooks, the codec codes with 8: encoding it again"]


def test_the_encoding_count_of_one_process_says_it_is_its_share(tmp_path, cfg, tok):
    from kame.train.batching import load_examples

    manifest = _data(tmp_path / "data", n=3)
    lines = []
    try:
        load_examples(manifest, FakeCodec(), tok, cfg, rank=0, world=2, echo=lines.append)
    except Exception:  # noqa: BLE001 - (rank 1's share is not written here: only the count matters)
        pass
    assert "encoding 1/2 dialogues, this process's share of 3 (cached as codes.npz)" in lines, lines
