"""kame train's --slow-prob and --slow-rate (TrainConfig.slow_prob, slow_rate: a slow LLM's stream,
kame.train.batching.streamed): parsed, range-checked, off when unset, a run's own on --resume."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import pytest

from kame.train import finetune, launch
from kame.train.config import TrainConfig


def _parser():
    p = argparse.ArgumentParser(prog="kame train")
    finetune.add_arguments(p)
    return p


def test_slow_options_set_the_knobs_and_are_range_checked(capsys):
    p = _parser()
    knobs = launch.knobs_from(p.parse_args(["m.jsonl", "-o", "x", "--slow-prob", "0.3", "--slow-rate", "2", "5"]),
                                None, 1)
    assert (knobs["slow_prob"], knobs["slow_rate"]) == (0.3, (2.0, 5.0))
    assert TrainConfig(**knobs).check().slow_rate == (2.0, 5.0)
    unset = p.parse_args(["m.jsonl", "-o", "x"])
    assert (launch.knobs_from(unset, None, 1)["slow_prob"], launch.knobs_from(unset, None, 1)["slow_rate"]) \
        == (0.0, (2.0, 12.5))
    # a run recorded before the knobs resumes with them off; a run's own rate is kept
    config = json.loads(json.dumps(asdict(TrainConfig(slow_prob=0.4, slow_rate=(3.0, 4.0)))))
    assert launch.knobs_from(unset, {"config": config}, 1)["slow_rate"] == (3.0, 4.0)
    older = {k: v for k, v in config.items() if k not in ("slow_prob", "slow_rate")}
    assert launch.knobs_from(unset, {"config": older}, 1)["slow_prob"] == 0.0
    for bad, said in ((["--slow-prob", "1.5"], "argument --slow-prob: must be <= 1, got 1.5"),
                      (["--slow-rate", "0", "5"], "argument --slow-rate: must be > 0, got 0"),
                      (["--slow-rate", "5", "2"], "argument --slow-rate: A must be <= B")):
        with pytest.raises(SystemExit) as exc:
            p.parse_args(["m.jsonl", "-o", "x", *bad])
        assert exc.value.code == 2 and said in capsys.readouterr().err, bad
