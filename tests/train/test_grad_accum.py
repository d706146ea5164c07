"""kame train --grad-accum N: a step of N forwards per process is the step N times as many
processes take (the same windows, oracle augmentation and input dropouts in the same places of
the global batch; the gradients averaged over the forwards as DistributedDataParallel averages
them over the processes: kame_finetune's gradient_accumulation_steps, DeepSpeed's). Under DDP
the gradients are reduced once a step."""

from __future__ import annotations

import pytest
import torch

from kame.backend.tokenizer import default_tokenizer
from kame.cli import main as cli_main
from kame.errors import ConfigError
from kame.model.loaders import load_frontend
from kame.train.batching import batches, input_dropouts, load_examples, slot
from kame.train.finetune import TrainConfig

from ._fakes import FakeCodec
from .test_finetune import TORCHRUN_ARGS, _data, _tiny, torchrun_train


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


@pytest.mark.slow
def test_accumulated_steps_train_as_more_processes_do(tmp_path, fake_codec):
    """One process of 2 forwards == DDP over 2 processes; 2 DDP processes of 2 forwards (their
    gradients reduced once a step) == one process of 4 forwards."""
    manifest = str(_data(tmp_path / "data", n=3, T=32))
    common = list(TORCHRUN_ARGS) + ["--frontend", "random:tiny", "--text-token-dropout", "0.3"]

    def alone(name: str, accum: int) -> dict:
        out = tmp_path / name / "run"
        assert cli_main(["train", manifest, "-o", str(out), *common, "--grad-accum", str(accum), "--codec",
                         "fake", "--device", "cpu"]) == 0
        return load_frontend(out / "latest")[0].state_dict()

    def ddp(name: str, accum: int) -> dict:
        (tmp_path / name).mkdir()
        out = torchrun_train(tmp_path / name, manifest, "-o", str(tmp_path / name / "run"), *common,
                             "--grad-accum", str(accum))
        assert "2 process(es)" in out and ("x 2 forwards" in out) == (accum == 2)
        return torch.load(tmp_path / name / "rank0.pt", weights_only=True)

    for a, b in ((alone("one-x2", 2), ddp("two-x1", 1)), (ddp("two-x2", 2), alone("one-x4", 4))):
        assert a.keys() == b.keys()
        for k in a:
            # (float sums in another order: up to 3.3e-6 apart after 6 AdamW steps, on weights ~0.5)
            assert torch.allclose(a[k], b[k], atol=1e-5), k
