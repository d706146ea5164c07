"""kame train --grad-accum N: a step of N forwards per process is the step N times as many
processes take (the same windows, oracle augmentation and input dropouts in the same places of
the global batch; the gradients averaged over the forwards as DistributedDataParallel averages
them over the processes: kame_finetune's gradient_accumulation_steps, DeepSpeed's). Under DDP
the gradients are reduced once a step. The runs under torchrun that show it are in test_parallel.py
(test_accumulated_steps_train_as_more_processes_do: they share its DDP run)."""

from __future__ import annotations

import pytest
import torch

from kame.backend.tokenizer import default_tokenizer
from kame.errors import ConfigError
from kame.train.batching import batches, input_dropouts, load_examples, slot
from kame.train.finetune import TrainConfig

from ._fakes import FakeCodec
from .test_finetune import _data, _tiny


def test_a_step_of_n_forwards_reads_the_windows_n_processes_read():
    cfg = _tiny().cfg
    from pathlib import Path
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        examples = load_examples(_data(Path(d), n=3, T=40), FakeCodec(), default_tokenizer(), cfg)
    knobs = dict(window_frames=16, hint_only=(0, 8), oracle_echo=(2, 5), text_token_dropout=0.3,
                 semantic_emb_dropout=0.5)
    accum = TrainConfig(batch_size=1, grad_accum=2, **knobs)
    procs = TrainConfig(batch_size=1, **knobs)
    one = batches(examples, cfg, accum, rank=0, world=1)
    two = [batches(examples, cfg, procs, rank=r, world=2) for r in range(2)]
    for step in range(6):  # (past an epoch's end: 3 dialogues x 3 windows)
        for f in range(2):
            mine, theirs = next(one), next(two[f])
            assert all(torch.equal(a, b) for a, b in zip(mine, theirs)), (step, f)
            assert slot(accum, 0, f) == slot(procs, f, 0) == f
            assert torch.equal(input_dropouts(mine[0], cfg, accum, step, slot(accum, 0, f)),
                               input_dropouts(theirs[0], cfg, procs, step, slot(procs, f, 0)))
    with pytest.raises(ConfigError, match="--grad-accum must be an int >= 1"):
        TrainConfig(grad_accum=0).check()
