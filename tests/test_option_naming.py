"""An error about a command-line option names the option the user typed, one way
(kame.cliargs.naming, or registry.check_key_spec for a spec's form): kame codec roundtrip, kame
bench codec / codec-quality / step / sessions / backend (was: "unknown codec spec 'x'" with no
option named, or bench sessions' "codec.spec: ...", a config key the user never typed). And
the defaults kame demo --question shows in its help."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from kame.cli import main
from kame.cliargs import naming
from kame.errors import CheckpointError, ConfigError, PluginError


def test_naming_prefixes_kames_errors_once_and_replaces_the_config_key():
    with pytest.raises(CheckpointError) as exc:  # (the type kept: a caller may tell them apart)
        with naming("--tokenizer"):
            raise CheckpointError("SentencePiece model not found: /x")
    assert str(exc.value) == "--tokenizer: SentencePiece model not found: /x"
    with pytest.raises(ConfigError) as exc:
        with naming("--codec", key="codec.spec"):
            raise ConfigError("codec.spec: unknown codec spec 'x'")
    assert str(exc.value) == "--codec: unknown codec spec 'x'"
    with pytest.raises(ConfigError) as exc:
        with naming("--codec"):
            raise ConfigError("--codec: said already")
    assert str(exc.value) == "--codec: said already"
    with pytest.raises(ConfigError) as exc:
        with naming("--codec"):
            raise ConfigError("--codebooks 9: too many")  # (another option's: named as well)
    assert str(exc.value) == "--codec: --codebooks 9: too many"
    with pytest.raises(PluginError) as exc:  # (the plugin's fault, not the option's)
        with naming("--codec"):
            raise PluginError("plugin x.py failed")
    assert str(exc.value) == "plugin x.py failed"
    with pytest.raises(ValueError) as exc:  # (not kame's: a bug, left as it is)
        with naming("--codec"):
            raise ValueError("boom")
    assert str(exc.value) == "boom"


@pytest.fixture
def wav(tmp_path):
    from kame.audio import write_wav

    path = tmp_path / "in.wav"
    write_wav(path, np.zeros(2400, np.float32), 24000)
    return path


@pytest.mark.parametrize("argv, said", [
    (["bench", "step", "--frontend", "random:huge"], "--frontend: unknown random front-end 'random:huge'"),
    (["bench", "codec", "--codec", "bogus"], "--codec: unknown codec spec 'bogus'"),
    (["bench", "codec", "--codec", "embedded:/nonexistent/fit.safetensors"], "--codec: embedded codec file not found"),
    (["bench", "codec-quality", "--codec", "bogus"], "--codec: unknown codec spec 'bogus'"),
    (["bench", "backend", "--no-stt", "--llm", "bogus"], "--llm: unknown llm spec 'bogus'"),
    (["bench", "sessions", "--frontend", "random:huge"], "--frontend: unknown random front-end 'random:huge'"),
    (["bench", "sessions", "--codec", "bogus"], "--codec: unknown codec spec 'bogus'"),
])
def test_bench_option_errors_name_the_option(argv, said, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"kame: error: {said}" in err, err
    assert "codec.spec" not in err and "frontend.spec" not in err, err


@pytest.mark.parametrize("codec, said", [
    ("bogus", "--codec: unknown codec spec 'bogus'"),
    ("embedded:/nonexistent/fit.safetensors", "--codec: embedded codec file not found"),
])
def test_codec_roundtrip_names_its_codec_option(wav, tmp_path, capsys, codec, said):
    assert main(["codec", "roundtrip", str(wav), "-o", str(tmp_path / "out.wav"), "--codec", codec]) == 1
    assert f"kame: error: {said}" in capsys.readouterr().err
    assert not (tmp_path / "out.wav").exists()


def test_demo_help_shows_its_default_question():
    from kame import demo

    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    question = next(a for a in p._actions if a.dest == "question")
    assert f"(default {demo.DEFAULT_QUESTION!r})" in question.help % {}, question.help
