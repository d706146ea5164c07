"""One set of dtype names everywhere: load_frontend's (kame.model.loaders.parse_dtype, from
kame.model.config.DTYPE_NAMES), the config's frontend.dtype and kame bench step / codec --dtype
(was: frontend.dtype refused "bf16", which docs/frontend.md's first example gives load_frontend,
and kame bench codec --dtype took only float32 and bfloat16)."""

from __future__ import annotations

import argparse

import pytest
import torch

from kame.bench import codec as bench_codec
from kame.bench import step as bench_step
from kame.config import load_config
from kame.errors import ConfigError
from kame.model.config import DTYPE_NAMES
from kame.model.loaders import parse_dtype


def _parser(module):
    p = argparse.ArgumentParser()
    module.add_arguments(p)
    return p


@pytest.mark.parametrize("name", sorted(DTYPE_NAMES))
def test_every_name_means_the_same_dtype_everywhere(name):
    want = parse_dtype(name, torch.device("cpu"))
    full = str(want).removeprefix("torch.")
    assert load_config(None, [f"frontend.dtype={name}"]).frontend.dtype == full  # (was: "bf16" refused)
    assert parse_dtype(_parser(bench_step).parse_args(["--dtype", name]).dtype, torch.device("cpu")) == want
    assert _parser(bench_codec).parse_args(["--dtype", name]).dtype == full  # (was: float32, bfloat16 only)


def test_an_unknown_name_lists_them_all(capsys):
    with pytest.raises(ConfigError, match=r"frontend.dtype: 'int8' is not one of \['bfloat16', 'float16', 'float32'\] "
                                          r"\(or their short names \['bf16', 'float', 'fp16', 'fp32', 'half'\]\)"):
        load_config(None, ["frontend.dtype=int8"])
    with pytest.raises(SystemExit):
        _parser(bench_codec).parse_args(["--dtype", "int8"])
    assert "invalid choice: 'int8'" in capsys.readouterr().err


def test_bench_codec_runs_mimi_in_float16_and_refuses_it_for_the_embedded_codec():
    codec, _ = bench_codec.load_codec("mimi:random-tiny", "float16")
    assert next(codec.model.parameters()).dtype == torch.float16
    with pytest.raises(ConfigError, match="the embedded codec runs in float32 only"):
        bench_codec.load_codec("embedded", "float16")


def test_kame_bench_codec_names_dtype_when_the_embedded_codec_cannot_take_it(capsys):
    """(QA6 #1; was: "--codec: the embedded codec runs in float32 only, got dtype torch.bfloat16")"""
    from kame.cli import main

    assert main(["bench", "codec", "--codec", "embedded", "--dtype", "bf16", "--frames", "1", "--warmup", "0"]) == 1
    assert ("--dtype bfloat16: the embedded codec (embedded) runs in float32 only; leave --dtype out to bench it"
            in capsys.readouterr().err)
