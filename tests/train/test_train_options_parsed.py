"""`kame train`'s numeric options are all range-checked as they are parsed (argparse's error naming
the option, exit status 2, before any import), as --steps and --window were; `kame data oracle
--jobs` too, as data synth's (was: --batch-size 0, --lr -1, --jitter -1 ... exit status 1 after
the imports, --batch-size 0 as "steps and batch_size must be >= 1 ... (got steps 1000, ...)").
The errors of --frontend, --codec, --tokenizer, --user-voice and --agent-voice name the option
(was: the spec's or file's error alone). Ctrl-C before the first step says so, as SIGTERM does
(was: exit 130, nothing said)."""

from __future__ import annotations

import argparse

import pytest

from kame.cli import main
from kame.errors import ConfigError
from kame.train import finetune, launch, reoracle
from kame.train.config import TrainConfig

from .test_bad_input_sweep import refused_by_argparse
from .test_finetune import _data
from .test_reoracle import make_set


@pytest.mark.parametrize("option, values, said", [
    ("--batch-size", ["0"], "must be >= 1, got 0"),
    ("--grad-accum", ["0"], "must be >= 1, got 0"),
    ("--warmup", ["-1"], "must be >= 0, got -1"),
    ("--lr", ["-1"], "must be > 0, got -1"),
    ("--lr", ["0"], "must be > 0, got 0"),
    ("--lr", ["nan"], "expected a finite number, got 'nan'"),
    ("--weight-decay", ["-0.1"], "must be >= 0, got -0.1"),
    ("--grad-clip", ["-1"], "must be >= 0, got -1"),
    ("--save-every", ["-1"], "must be >= 0, got -1"),
    ("--log-every", ["0"], "must be >= 1, got 0"),
    ("--jitter", ["-1"], "must be >= 0, got -1"),
    ("--text-card", ["0"], "must be >= 1, got 0"),
    ("--shift-prob", ["1.5"], "must be <= 1, got 1.5"),
    ("--text-token-dropout", ["2"], "must be <= 1, got 2"),
    ("--text-emb-dropout", ["-0.1"], "must be >= 0, got -0.1"),
    ("--semantic-emb-dropout", ["1.1"], "must be <= 1, got 1.1"),
    ("--semantic-weight", ["-1"], "must be >= 0, got -1"),
    ("--acoustic-weight", ["inf"], "expected a finite number, got 'inf'"),
    ("--skip-prob", ["0.7", "0.1"], "A must be <= B, got 0.7 0.1"),
    ("--skip-prob", ["0", "2"], "must be <= 1, got 2"),
    ("--shift-right", ["-1", "3"], "must be >= 0, got -1"),
    ("--shift-left", ["5", "2"], "A must be <= B, got 5 2"),
    ("--hint-only", ["5", "2"], "A must be <= B, got 5 2"),
    ("--oracle-echo", ["3", "1"], "A must be <= B, got 3 1"),
])
def test_every_train_number_is_a_usage_error_naming_its_option(tmp_path, capsys, option, values, said):
    err = refused_by_argparse(capsys, ["train", str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "o"), option,
                                       *values])
    assert f"kame train: error: argument {option}: {said}" in err, err
    assert not (tmp_path / "o").exists()


def test_their_limits_are_taken():
    p = argparse.ArgumentParser()
    finetune.add_arguments(p)
    args = p.parse_args(["m", "-o", "o", "--batch-size", "1", "--warmup", "0", "--lr", "1e-9", "--save-every", "0",
                         "--grad-clip", "0", "--skip-prob", "0.3", "0.3", "--hint-only", "0", "0", "--jitter", "0",
                         "--semantic-weight", "0", "--text-token-dropout", "1", "--text-card", "1"])
    assert (args.batch_size, args.warmup, args.lr, args.save_every, args.grad_clip) == (1, 0, 1e-9, 0, 0.0)
    assert (args.skip_prob, args.hint_only, args.jitter, args.text_card) == ([0.3, 0.3], [0, 0], 0, 1)


def test_a_config_made_in_code_is_told_only_its_wrong_keys():
    with pytest.raises(ConfigError) as exc:
        TrainConfig(batch_size=0).check()
    assert str(exc.value) == "train: --batch-size must be an int >= 1, got 0"  # (no "steps 1000")
    with pytest.raises(ConfigError) as exc:
        TrainConfig(steps=0, warmup_steps=-1).check()
    assert str(exc.value) == ("train: --steps must be an int >= 1, got 0; --warmup (warmup_steps) must "
                              "be an int >= 0, got -1")
    TrainConfig(steps=1, batch_size=1, warmup_steps=0).check()


def test_every_check_names_the_option_and_the_field_where_they_differ():
    """One way for every knob (was: "TrainConfig.batch_size" for three, "the window", "precision"
    and "schedule" bare, --FLAG for the rest, and only the first wrong one)."""
    with pytest.raises(ConfigError) as exc:
        TrainConfig(lr=-1, window_frames=1, precision="fp16", schedule="step", jitter_frames=-1).check()
    assert str(exc.value) == ("train: --lr must be a finite number > 0, got -1; --window (window_frames) must be an "
                              "int >= 2 frames, got 1; --precision must be one of fp32, bf16, got 'fp16'; --schedule "
                              "must be 'constant' or 'cosine', got 'step'; --jitter (jitter_frames) must be an int "
                              ">= 0 frames, got -1")


def test_the_fields_named_otherwise_are_those_of_the_options():
    """config.OTHER_OPTIONS (the message's names) agrees with kame train's options (OPTION_KNOBS)."""
    from kame.train.config import OTHER_OPTIONS

    assert {knob: opt for opt, knob in launch.OPTION_KNOBS.items() if opt != knob} == OTHER_OPTIONS


def test_data_oracle_jobs_is_checked_as_parsed_and_its_help_says_the_default(tmp_path, capsys):
    make_set(tmp_path, n=1)
    err = refused_by_argparse(capsys, ["data", "oracle", str(tmp_path), "--llm", "random", "--jobs", "0"])
    assert "argument --jobs: must be >= 1, got 0" in err, err
    p = argparse.ArgumentParser()
    reoracle.add_arguments(p)
    jobs = next(a for a in p._actions if a.dest == "jobs")
    assert "(default 1)" in jobs.help, jobs.help


@pytest.mark.parametrize("extra, said", [
    (["--frontend", "random:huge"], "--frontend: unknown random front-end 'random:huge'"),
    (["--codec", "bogus"], "--codec: unknown codec spec 'bogus'"),
    (["--codec", "embedded:/nonexistent/fit.safetensors"], "--codec: embedded codec file not found"),
])
def test_train_load_errors_name_the_option(tmp_path, capsys, extra, said):
    manifest = _data(tmp_path / "data")
    capsys.readouterr()
    assert main(["train", str(manifest), "-o", str(tmp_path / "o"), *extra]) == 1
    assert f"kame: error: {said}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, said", [
    (["--user-voice", "bogus"], "--user-voice: unknown tts spec 'bogus'"),
    (["--agent-voice", "bogus"], "--agent-voice: unknown tts spec 'bogus'"),
    (["--user-voice", "espeak", "--agent-voice", "bogus:x"], "--agent-voice: unknown tts spec 'bogus:x'"),
    (["--tokenizer", "/nonexistent/tok.model"], "--tokenizer: SentencePiece model not found"),
])
def test_data_synth_names_the_voice_or_tokenizer_option(tmp_path, capsys, extra, said):
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "Why?", "answer": "Because."}\n')
    capsys.readouterr()
    assert main(["data", "synth", str(qa), "-o", str(tmp_path / "o"), "--llm", "none", *extra]) == 1
    assert f"kame: error: {said}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_data_oracle_names_the_tokenizer_option(tmp_path, capsys):
    make_set(tmp_path, n=1)
    capsys.readouterr()
    assert main(["data", "oracle", str(tmp_path), "--llm", "random", "--tokenizer", "/nonexistent/tok.model"]) == 1
    assert "kame: error: --tokenizer: SentencePiece model not found: /nonexistent/tok.model" in capsys.readouterr().err


def test_ctrl_c_before_the_first_step_is_said_as_sigterm_is(tmp_path, capsys, monkeypatch):
    def loading(args, stopped):
        raise KeyboardInterrupt  # (Ctrl-C while the front-end loads or the dialogues are encoded)

    monkeypatch.setattr(finetune, "run", loading)
    p = argparse.ArgumentParser()
    finetune.add_arguments(p)
    try:
        assert finetune.main(p.parse_args([str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "o")])) == 130
    except KeyboardInterrupt:  # (a test failure, not the end of the test run)
        pytest.fail("the KeyboardInterrupt went out of kame train: nothing said (kame.cli's exit 130)")
    err = capsys.readouterr().err
    assert err.strip() == "kame train: interrupted (Ctrl-C) before training began; nothing saved", err
