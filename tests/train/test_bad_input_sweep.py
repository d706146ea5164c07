"""Bad input found by a QA sweep of `kame train`, `kame data encode`, `kame data synth` and `kame data
oracle`, each refused with one of kame's own errors naming the option or file (the CLI prints it as
one line; an option's own type: argparse's error, exit status 2), or handled: a damaged codes cache,
a negative or too large seed, a broken checkpoint to resume, a diverging run, out-of-range optimizer
knobs, an unknown or unsupported device, an endless --delay, an empty manifest."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from kame.backend.tokenizer import default_tokenizer
from kame.cli import main
from kame.errors import CheckpointError, ConfigError, KameError
from kame.model.loaders import load_frontend
from kame.train.codes import load_codes, write_codes
from kame.train.config import STATE
from kame.train.data import CODES, DataError, read_dialogue
from kame.train.finetune import TrainConfig, train
from kame.train.manifest import read_manifest
from kame.train.oracle_sim import SimOracleConfig
from kame.train.synth import SynthConfig, summary, synth_all

from ._fakes import FakeCodec
from .test_finetune import FAST, _data, _tiny
from .test_reoracle import make_set
from .test_synth import Voices, WordTTS, item


# --- 1. a damaged codes.npz -------------------------------------------------------------------------
def _damage(folder, how: str) -> None:
    path = folder / CODES
    data = path.read_bytes()
    if how == "cut":  # (head -c 300)
        path.write_bytes(data[:300])
    else:  # one byte of the first array's data flipped: a bad CRC-32
        at = data.index(b"\x93NUMPY") + 200
        path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])


def test_a_cut_or_damaged_codes_cache_is_a_data_error_and_encoded_again(tmp_path, capsys, fake_codec):
    from kame.train.batching import load_examples

    manifest = _data(tmp_path / "data")
    folders = [e.path for e in read_manifest(manifest)]
    for f in folders:
        write_codes(read_dialogue(f), FakeCodec(), spec="fake")
    for f, how in zip(folders, ("cut", "flip")):
        _damage(f, how)
        with pytest.raises(DataError, match=f"{CODES}: not a codes cache .*remove it or write it again"):
            load_codes(read_dialogue(f, audio=False), FakeCodec())
    # kame train's loading: said, encoded again, and cached anew
    said = []
    load_examples(manifest, FakeCodec(), default_tokenizer(), _tiny().cfg, codec_spec="fake", echo=said.append)
    assert sum("not a codes cache" in s and "encoding it again" in s for s in said) == 2, said
    assert all(load_codes(read_dialogue(f), FakeCodec()) is not None for f in folders)
    # kame data encode: encodes them again (was: "failed: ...: BadZipFile" on every rerun)
    for f, how in zip(folders, ("cut", "flip")):
        _damage(f, how)
    capsys.readouterr()
    assert main(["data", "encode", str(manifest), "--codec", "fake", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "failed" not in out.replace("| failed |", "") and "0 cached already, 2 to encode" in out, out
    assert all(load_codes(read_dialogue(f), FakeCodec()) is not None for f in folders)


# --- 2. --seed -1, --seed 10**15 ----------------------------------------------------------------------
def refused_by_argparse(capsys, argv) -> str:
    """kame's argparse error for ``argv`` (exit status 2, as every command's option errors)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_a_negative_seed_is_refused_up_front(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--seed must be an int >= 0"):
        TrainConfig(seed=-1).check()
    manifest = _data(tmp_path / "data")
    err = refused_by_argparse(capsys, ["train", str(manifest), "-o", str(tmp_path / "o"), "--seed", "-1"])
    assert "argument --seed: must be >= 0, got -1" in err, err  # (was: exit status 1, after parsing)
    assert not (tmp_path / "o").exists()
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Why?", "answer": "Because."}) + "\n")
    err = refused_by_argparse(capsys, ["data", "synth", str(qa), "-o", str(tmp_path / "s"), "--llm", "none",
                                       "--seed", "-1"])
    assert "argument --seed: must be >= 0, got -1" in err, err
    assert not (tmp_path / "s").exists()
    make_set(tmp_path / "set", n=2)
    before = (tmp_path / "set" / "d0" / "dialogue.json").read_text()
    err = refused_by_argparse(capsys, ["data", "oracle", str(tmp_path / "set"), "--llm", "none", "--seed", "-1"])
    assert "argument --seed: must be >= 0, got -1" in err, err
    assert (tmp_path / "set" / "d0" / "dialogue.json").read_text() == before


def test_a_seed_too_large_for_the_batch_order_is_refused_and_the_largest_allowed_runs(tmp_path, capsys, fake_codec):
    from kame.train.batching import batches, load_examples
    from kame.train.config import SEED_LIMIT

    assert SEED_LIMIT == 2**32
    with pytest.raises(ConfigError, match=r"--seed must be an int >= 0 and < 2\*\*32, got 4294967296"):
        TrainConfig(seed=2**32).check()
    manifest = _data(tmp_path / "data")
    # (was: torch's "Overflow when unpacking long" once the model had loaded; then exit status 1 after parsing)
    err = refused_by_argparse(capsys, ["train", str(manifest), "-o", str(tmp_path / "o"), "--seed", str(10**15)])
    assert f"argument --seed: must be <= 4294967295, got {10**15}" in err, err
    # the largest seed seeds the batch order's torch generator (seed * 100_003 + epoch) in the thousandth epoch
    tcfg = TrainConfig(seed=2**32 - 1, **FAST).check()
    cfg = _tiny().cfg
    examples = load_examples(manifest, FakeCodec(), default_tokenizer(), cfg, codec_spec="fake")
    codes, _ = next(batches(examples, cfg, tcfg, 0, 1, skip=1000))
    assert codes.shape[0] == tcfg.batch_size


# --- 3, 4. a checkpoint to resume that is broken -----------------------------------------------------
def test_resume_from_a_checkpoint_without_a_readable_config_json(tmp_path, capsys):
    manifest = _data(tmp_path / "data")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / STATE).write_bytes(b"state")
    for config, said in ((None, "holds no config.json"), ("{not json", "its config.json cannot be read as JSON"),
                         ("[1, 2]", "its config.json is not a front-end's config")):
        if config is not None:
            (ckpt / "config.json").write_text(config)
        capsys.readouterr()
        assert main(["train", str(manifest), "-o", str(tmp_path / "o"), "--resume", str(ckpt)]) == 1
        err = capsys.readouterr().err
        assert f"kame: error: train: --resume {ckpt}" in err and said in err and "Traceback" not in err, err


def test_resume_from_a_cut_train_state_is_a_checkpoint_error(tmp_path):
    manifest = _data(tmp_path / "data")
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "run", TrainConfig(steps=1, **FAST),
          echo=lambda s: None)
    ckpt = tmp_path / "run" / "latest"
    state = (ckpt / STATE).read_bytes()
    for broken in (state[: len(state) // 2], b"not a torch file", b""):
        (ckpt / STATE).write_bytes(broken)
        with pytest.raises(CheckpointError, match=f"{STATE} is truncated or not a kame train state"):
            train(load_frontend(ckpt)[0], FakeCodec(), default_tokenizer(), manifest, tmp_path / "run",
                  TrainConfig(steps=2, **FAST), resume=ckpt, echo=lambda s: None)
    torch.save({"something": "else"}, ckpt / STATE)
    with pytest.raises(CheckpointError, match="not a kame train state \\(no step"):
        train(load_frontend(ckpt)[0], FakeCodec(), default_tokenizer(), manifest, tmp_path / "run",
              TrainConfig(steps=2, **FAST), resume=ckpt, echo=lambda s: None)


# --- 5. a diverging run -----------------------------------------------------------------------------
def test_a_diverging_run_is_a_kame_error_saying_to_lower_the_lr(tmp_path, monkeypatch):
    from kame.train import loss

    real = loss.frontend_loss

    def diverged(*a, **k):  # (as --lr 1e4 --grad-clip 0 does by its second step)
        value, parts = real(*a, **k)
        return value * float("nan"), parts

    monkeypatch.setattr(loss, "frontend_loss", diverged)
    manifest = _data(tmp_path / "data")
    with pytest.raises(KameError, match=r"the loss is nan at step 1 .*diverged before a checkpoint was saved: run "
                                        r"again with a lower --lr \(or --grad-clip 1.0\)"):
        train(_tiny(), FakeCodec(), default_tokenizer(), manifest, None,
              TrainConfig(steps=2, **dict(FAST, grad_clip=0.0)), echo=lambda s: None)


def test_a_run_diverging_after_a_checkpoint_says_to_start_anew_from_it_not_to_resume(tmp_path, monkeypatch):
    """--lr is not one a --resume may change (check_resume): the way on is a new run from the last
    checkpoint (--frontend OUT/step-N) with a lower --lr, or from the start."""
    from kame.train import loss

    real, calls = loss.frontend_loss, []

    def diverged(*a, **k):  # (finite for steps 1 and 2, then NaN)
        value, parts = real(*a, **k)
        calls.append(1)
        return (value * float("nan") if len(calls) > 2 else value), parts

    monkeypatch.setattr(loss, "frontend_loss", diverged)
    manifest = _data(tmp_path / "data")
    with pytest.raises(ConfigError) as exc:
        train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "run",
              TrainConfig(steps=4, **dict(FAST, save_every=2)), echo=lambda s: None)
    said = str(exc.value)
    # step 3, as the log and the step-N checkpoints count (was: 2, the 0-based counter, under the log's finite step 2)
    assert "the loss is nan at step 3" in said and "--resume keeps its --lr and --grad-clip" in said, said
    assert f"start a new run (another -o) with a lower --lr from its last checkpoint (--frontend " \
           f"{(tmp_path / 'run' / 'step-2').resolve()}) or from the start" in said, said
    assert "(or --grad-clip" not in said  # (it clips already: 1.0)


# --- 6. out-of-range optimizer and bookkeeping knobs ---------------------------------------------------
@pytest.mark.parametrize("knob, value, said", [
    ("lr", -1e-4, "--lr must be a finite number > 0"), ("lr", float("nan"), "--lr must be a finite number > 0"),
    ("lr", float("inf"), "--lr must be"), ("lr", 0.0, "--lr must be"),
    ("lr", True, "--lr must be a finite number > 0, got True"),  # (a bool: was taken as lr 1)
    pytest.param("lr", 10**400, "--lr must be a finite number > 0", id="lr-int-too-large-for-a-float"),  # (was an
    # OverflowError traceback)
    ("weight_decay", False, "--weight-decay must be a finite number >= 0, got False"),
    ("weight_decay", -0.1, "--weight-decay must be a finite number >= 0"),
    ("weight_decay", float("nan"), "--weight-decay must be"),
    ("grad_clip", float("nan"), "--grad-clip must be a finite number >= 0 \\(0: no clipping\\)"),
    ("grad_clip", -1.0, "--grad-clip must be"),
    ("log_every", 0, "--log-every must be an int >= 1"),
    ("save_every", -1, "--save-every must be an int >= 0 \\(0: only at the end\\)"),
])
def test_optimizer_and_bookkeeping_knobs_are_checked(knob, value, said):
    with pytest.raises(ConfigError, match=said):
        TrainConfig(**{knob: value}).check()


def test_their_documented_zeros_stay_allowed_and_the_cli_refuses_before_loading(tmp_path, capsys):
    TrainConfig(grad_clip=0.0, save_every=0, weight_decay=0.0, seed=0).check()
    manifest = _data(tmp_path / "data")
    # (as they are parsed: argparse's error naming the option, exit status 2; was: exit status 1, after the
    # imports; tests/train/test_train_options_parsed.py has them all)
    for flag, value in (("--lr", "nan"), ("--weight-decay", "-0.1"), ("--grad-clip", "-1"), ("--log-every", "0")):
        assert f"argument {flag}: " in refused_by_argparse(capsys, ["train", str(manifest), "-o", str(tmp_path / "o"),
                                                                    flag, value])
    assert not (tmp_path / "o").exists()


# --- 7. --device tpu ---------------------------------------------------------------------------------
def test_an_unknown_device_is_refused_as_eval_follow_refuses_it(tmp_path, capsys):
    manifest = _data(tmp_path / "data")
    capsys.readouterr()
    assert main(["train", str(manifest), "-o", str(tmp_path / "o"), "--device", "tpu"]) == 1
    assert "kame: error: train: --device: device 'tpu' is not a torch device" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_mps_and_a_numbered_gpu_under_torchrun_are_refused_and_the_help_says_what_is_taken(tmp_path, capsys,
                                                                                         monkeypatch):
    import argparse

    from kame.train.finetune import add_arguments
    from kame.train.parallel import train_device

    manifest = _data(tmp_path / "data")
    capsys.readouterr()  # (was: accepted where torch has mps, and never tried)
    assert main(["train", str(manifest), "-o", str(tmp_path / "o"), "--device", "mps"]) == 1
    assert "kame: error: train: --device mps: mps is not supported by kame train yet" in capsys.readouterr().err
    # a machine with 2 GPUs (faked: nothing runs on them)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match=r"--device cuda:0 under torchrun: torchrun picks each process's GPU "
                                          r"\(LOCAL_RANK\): give --device cuda"):
        train_device("cuda:0", world=2)  # (was: silently cuda:1, LOCAL_RANK's)
    assert train_device("cuda", world=2) == torch.device("cuda:1")
    assert train_device("cuda:0", world=1) == torch.device("cuda:0")  # (one process: the GPU asked for)
    p = argparse.ArgumentParser()
    add_arguments(p)
    said = " ".join(p.format_help().split())
    assert "auto (cuda when there is one; default), cpu, cuda, or cuda:N in one process" in said and "mps" in said


# --- 8. --delay / --interval -------------------------------------------------------------------------
def test_delay_and_interval_must_be_finite_and_are_named_as_options(tmp_path, capsys):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Why?", "answer": "Because."}) + "\n")
    make_set(tmp_path / "set", n=2)
    for cmd in (["data", "synth", str(qa), "-o", str(tmp_path / "s")], ["data", "oracle", str(tmp_path / "set")]):
        for flag, value, said in (("--delay", "inf", "argument --delay: expected a finite number, got 'inf'"),
                                  ("--delay", "-1", "argument --delay: must be >= 0, got -1"),
                                  ("--interval", "nan", "argument --interval: expected a finite number, got 'nan'"),
                                  ("--interval", "0", "argument --interval: must be > 0, got 0"),
                                  ("--interval", "-0.5", "argument --interval: must be > 0, got -0.5")):
            err = refused_by_argparse(capsys, [*cmd, "--llm", "none", flag, value])
            assert said in err and "SimOracleConfig" not in err, err
    assert not (tmp_path / "s").exists()


def test_more_than_is_a_strictly_positive_argparse_type():
    import argparse

    from kame.cliargs import more_than

    assert more_than(0)("0.25") == 0.25 and more_than(1, int)("2") == 2
    for text, said in (("0", "must be > 0, got 0"), ("x", "expected a number, got 'x'"),
                       ("inf", "expected a finite number, got 'inf'")):
        with pytest.raises(argparse.ArgumentTypeError, match=said):
            more_than(0)(text)


def test_every_command_refuses_an_empty_manifest_in_the_same_words(tmp_path, capsys):
    from kame.train.batching import manifest_entries

    empty = tmp_path / "train.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=f"data encode: manifest {empty} lists no dialogues"):
        manifest_entries(tmp_path, command="data encode")  # (a set's folder: its train.jsonl)
    for cmd in (["data", "encode", str(tmp_path)], ["data", "oracle", str(tmp_path), "--llm", "none"]):
        capsys.readouterr()
        assert main(cmd) == 1
        assert f"kame: error: {cmd[0]} {cmd[1]}: manifest {empty} lists no dialogues" in capsys.readouterr().err


def test_predictions_a_delay_puts_past_the_end_are_warned_about(tmp_path, capsys):
    voices = Voices(user=WordTTS(200.0), agent=WordTTS(500.0))
    cfg = SynthConfig(user_voices=("user",), agent_voice="agent")
    res = asyncio.run(synth_all([item(0), item(1)], tmp_path / "s", llm=None, tokenizer=default_tokenizer(),
                                cfg=cfg, oracle_cfg=SimOracleConfig(delay_s=1e9), voices=voices))
    assert [(r.status, r.hints) for r in res] == [("written", [])] * 2 and all(r.past_end > 0 for r in res)
    n = sum(r.past_end for r in res)
    assert f"warning: {n} prediction points of 2 dialogues would arrive at or past the dialogue's end" in summary(res)
    res = asyncio.run(synth_all([item(2)], tmp_path / "s", llm=None, tokenizer=default_tokenizer(), cfg=cfg,
                                voices=voices))
    assert res[0].past_end == 0 and "warning" not in summary(res)
    make_set(tmp_path / "set", n=2)
    capsys.readouterr()
    assert main(["data", "oracle", str(tmp_path / "set"), "--llm", "none", "--delay", "1e9"]) == 0
    assert "prediction points of 2 dialogues would arrive at or past" in capsys.readouterr().out
    assert main(["data", "oracle", str(tmp_path / "set"), "--llm", "none"]) == 0
    assert "warning" not in capsys.readouterr().out


def test_the_past_end_warning_counts_in_the_singular_too():
    from kame.train.datacmd import past_end_warning

    assert past_end_warning(0, 0) == []
    assert past_end_warning(1, 1) == ["warning: 1 prediction point of 1 dialogue would arrive at or past the "
                                      "dialogue's end (--delay too long?) and was left out"]
    assert past_end_warning(3, 1)[0].startswith("warning: 3 prediction points of 1 dialogue would arrive")
    assert past_end_warning(5, 2)[0].startswith("warning: 5 prediction points of 2 dialogues would arrive")


def test_a_train_state_that_cannot_be_written_is_a_kame_error_naming_it(tmp_path, monkeypatch):
    """torch's writer says a full disk with a RuntimeError (was: raised as it was, a traceback)."""
    import torch

    from kame.errors import KameError
    from kame.model.loaders import load_frontend
    from kame.train.config import TrainConfig
    from kame.train.checkpoint import save_checkpoint

    model, _ = load_frontend("random:tiny", text_card=4000)

    def full(obj, f, *a, **kw):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726")

    monkeypatch.setattr(torch, "save", full)
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("")
    with pytest.raises(KameError, match=r"cannot write training state .*/\.step-1\.new/train_state\.pt: \[enforce fail"):
        save_checkpoint(model, model.state_dict(), {}, tmp_path / "out", 1, TrainConfig(), manifest, "0" * 64,
                        codec_spec="embedded", tokenizer_spec="default")
    assert not (tmp_path / "out" / "step-1").exists()  # (the step-N the failed save made: removed, no temporary left)
    assert not (tmp_path / "out" / ".step-1.new").exists()


def test_a_manifest_that_is_not_utf8_text_is_refused_naming_it(tmp_path, capsys):
    """(was: a UnicodeDecodeError traceback, e.g. for a wav given as the manifest)"""
    wav = tmp_path / "short.wav"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\xe4\x5d")
    utf16 = tmp_path / "bom16.jsonl"
    utf16.write_bytes(b"\xff\xfe{\x00}\x00\n\x00")
    with pytest.raises(DataError, match=f"manifest {utf16}: not UTF-8 text \\(byte 0\\); give a manifest"):
        read_manifest(utf16)
    for cmd in (["train", str(wav), "-o", str(tmp_path / "run")], ["data", "encode", str(wav)]):
        capsys.readouterr()
        assert main(cmd) == 1
        err = capsys.readouterr().err
        assert f"kame: error: manifest {wav}: not UTF-8 text (byte 24); give a manifest (kame data synth's " \
               f"OUT/train.jsonl)" in err and "Traceback" not in err, err
