"""kame train's layouts for large front-ends (kame.train.parallel): bf16 compute over fp32 weights,
recomputed activations, FSDP sharding under torchrun matching DDP, and checkpoints that resume in
another layout (sharded -> DDP and DDP -> sharded). One DDP run in two torchrun processes, made
once (each torchrun start-up takes seconds), is checked itself (its processes end with the same
weights, each having trained on its share) and against the sharded run, the resumed ones and
--grad-accum's (test_grad_accum.py)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open

from kame.backend.tokenizer import default_tokenizer
from kame.cli import main as cli_main
from kame.errors import ConfigError
from kame.model.loaders import load_frontend
from kame.train.config import STATE
from kame.train.finetune import TrainConfig, make_optimizer, train
from kame.train.parallel import load_optimizer

from ._fakes import FakeCodec
from .test_finetune import FAST, TORCHRUN_ARGS, _data, _tiny, torchrun_train

ATOL = 1e-5  # weights of two layouts after a few AdamW steps: the same sums in another order


def _layer_outputs(model, seen: list):
    """Record the dtype of every output of a matmul of the front-end's first temporal layer (its
    attention's output projection; the residual stream stays fp32 under autocast)."""
    proj = model.transformer.layers[0].self_attn.out_projs[0]
    return proj.register_forward_hook(lambda m, a, out: seen.append(out.dtype))


def test_bf16_computes_in_bf16_and_keeps_fp32_weights_and_optimizer(tmp_path):
    manifest = _data(tmp_path / "data")
    model, seen = _tiny(), []
    _layer_outputs(model, seen)
    res = train(model, FakeCodec(), default_tokenizer(), manifest, tmp_path / "run",
                TrainConfig(steps=4, precision="bf16", **FAST), echo=lambda s: None)
    assert seen and set(seen) == {torch.bfloat16}  # the forward ran in bf16
    assert all(np.isfinite(res.losses))
    with safe_open(str(tmp_path / "run" / "latest" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}  # the weights stay fp32
    state = torch.load(tmp_path / "run" / "latest" / STATE, weights_only=True)
    assert {v["exp_avg"].dtype for v in state["optimizer"]["state"].values()} == {torch.float32}
    assert load_frontend(tmp_path / "run" / "latest")[1].kame["train"]["config"]["precision"] == "bf16"
    seen.clear()
    with torch.no_grad():  # and the model it returns computes in fp32 again, outside the loop
        res.model(torch.zeros(1, res.model.cfg.num_codebooks, 4, dtype=torch.long))
    assert seen == [torch.float32]


def test_checkpointed_activations_are_recomputed_and_train_the_same(tmp_path):
    manifest = _data(tmp_path / "data")
    runs = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model, calls = _tiny(), []
        for tf in (model.transformer, model.depformer):  # (count calls of forward: no hook runs on a recompute)
            layer, forward = tf.layers[0], tf.layers[0].forward
            layer.forward = lambda *a, _f=forward, **k: calls.append(1) or _f(*a, **k)
        res = train(model, FakeCodec(), default_tokenizer(), manifest, None,
                    TrainConfig(steps=3, checkpoint_activations=ckpt, **FAST), echo=lambda s: None)
        runs.append((res, len(calls)))
    (plain, n_plain), (ckpt, n_ckpt) = runs
    assert n_ckpt == 2 * n_plain  # each layer ran again in the backward
    assert ckpt.losses == pytest.approx(plain.losses, rel=1e-6)
    for (name, p), q in zip(plain.model.state_dict().items(), ckpt.model.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6), name


def test_shard_needs_torchrun(tmp_path, capsys):
    manifest = _data(tmp_path / "data")
    codec = FakeCodec()
    with pytest.raises(ConfigError, match="--nproc_per_node 2"):
        train(_tiny(), codec, default_tokenizer(), manifest, None, TrainConfig(steps=1, shard=True, **FAST))
    assert codec.calls == 0  # refused before the data was read
    assert cli_main(["train", str(manifest), "-o", str(tmp_path / "run"), "--shard", "--steps", "1"]) == 1
    assert "under torchrun" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was loaded or written
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16").check()


def test_a_checkpoint_with_the_older_optimizer_state_resumes(tmp_path):
    """train_state.pt written before the optimizer state was keyed by parameter name (integer keys,
    ``opt.state_dict()``) and before the layout knobs existed resumes as a new one does."""
    manifest = _data(tmp_path / "data")
    kw = dict(FAST, save_every=2)
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "a", TrainConfig(steps=2, **kw),
          echo=lambda s: None)
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    path = tmp_path / "b" / "step-2" / STATE
    state = torch.load(path, weights_only=True)
    model = load_frontend(tmp_path / "b" / "latest")[0]
    opt = make_optimizer(model, TrainConfig(**kw))
    load_optimizer(model, opt, state["optimizer"])
    state["optimizer"] = opt.state_dict()
    assert all(isinstance(k, int) for k in state["optimizer"]["state"])
    for knob in ("precision", "shard", "checkpoint_activations"):  # (nor did its record have these)
        del state["train"]["config"][knob]
    torch.save(state, path)
    ends = []
    for run in ("a", "b"):
        model = load_frontend(tmp_path / run / "latest")[0]
        res = train(model, FakeCodec(), default_tokenizer(), manifest, tmp_path / run, TrainConfig(steps=4, **kw),
                    resume=tmp_path / run / "latest", echo=lambda s: None)
        ends.append(res)
    assert ends[0].losses == pytest.approx(ends[1].losses, rel=1e-6)
    for (name, p), q in zip(ends[0].model.state_dict().items(), ends[1].model.state_dict().values()):
        assert torch.equal(p, q), name


# the options of ddp_run's run and of the runs compared with it: input dropouts on (they must match too)
RUN_ARGS = ("--frontend", "random:tiny", *TORCHRUN_ARGS, "--text-token-dropout", "0.3")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> SimpleNamespace:
    """`kame train RUN_ARGS` under DDP in two torchrun processes on three dialogues, made once for the
    tests of this module that check it or compare other runs with it: its ``manifest``, ``folder``
    (torchrun_train's files; ``folder``/run: its checkpoints, which a test copies before it writes
    there), stdout (``out``) and which dialogues' codes its run cached (``cached``)."""
    root = tmp_path_factory.mktemp("ddp-run")
    manifest = str(_data(root / "data", n=3, T=32))
    (root / "ddp").mkdir()
    out = torchrun_train(root / "ddp", manifest, "-o", str(root / "ddp" / "run"), *RUN_ARGS)
    cached = [(root / "data" / f"d{i}" / "codes.npz").is_file() for i in range(3)]  # (before other runs cache them)
    return SimpleNamespace(manifest=manifest, folder=root / "ddp", out=out, cached=cached)


@pytest.mark.slow
def test_torchrun_two_processes_end_with_the_same_weights(ddp_run):
    """Rank 0 alone logs, the mean of both ranks' losses; both end with the same weights, the ones
    saved; each trained on its own share of each step's batch."""
    folder = ddp_run.folder
    assert ddp_run.out.count("training on 3 dialogues, 2 processes") == 1  # rank 0 alone logs
    losses = [torch.load(folder / f"losses{r}.pt", weights_only=True) for r in (0, 1)]
    logged = {int(ln.split()[0]): float(ln.split()[1]) for ln in ddp_run.out.splitlines()
              if ln.split()[:1] in (["2"], ["4"])}
    assert logged[2] == pytest.approx(np.mean([losses[0][:2], losses[1][:2]]), abs=1e-4)  # both ranks' mean
    assert losses[0][:2] != losses[1][:2]  # (which differs from rank 0's own)
    a, b = (torch.load(folder / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = load_frontend("random:tiny", text_card=4000)[0].state_dict()
    assert not torch.equal(a["text_emb.weight"], start["text_emb.weight"])  # it trained
    saved = load_frontend(folder / "run" / "latest")[0].state_dict()
    assert all(torch.equal(a[k], saved[k]) for k in a)
    assert sorted(p.name for p in (folder / "run").iterdir()) == [".lock", "latest", "log.jsonl", "step-3", "step-6"]
    assert all(ddp_run.cached)  # each rank's share cached
    # each rank took its own share: rank r's window is row r of one process's batch at twice the
    # batch size (there padded to the longer window: codes -1, oracle pad)
    from kame.train.finetune import batches, load_examples

    cfg = load_frontend(folder / "run" / "latest")[0].cfg
    examples = load_examples(ddp_run.manifest, FakeCodec(), default_tokenizer(), cfg)
    one = batches(examples, cfg, TrainConfig(batch_size=2, window_frames=16, text_token_dropout=0.3))
    r0, r1 = (torch.load(folder / f"batches{r}.pt", weights_only=True) for r in (0, 1))
    assert len(r0) == len(r1) == 6
    for ranks in zip(r0, r1):
        codes, oracle = next(one)
        assert codes.shape[-1] == max(c.shape[-1] for c, _ in ranks)
        for r, (c, o) in enumerate(ranks):
            n = c.shape[-1]
            assert c.shape[0] == 1 and torch.equal(c[0], codes[r, :, :n]) and torch.equal(o[0], oracle[r, :n])
            assert (codes[r, :, n:] == -1).all() and (oracle[r, n:] == cfg.existing_text_padding_id).all()


@pytest.mark.slow
def test_sharded_training_matches_ddp_and_checkpoints_resume_across_layouts(tmp_path, ddp_run):
    manifest = ddp_run.manifest
    shutil.copytree(ddp_run.folder, tmp_path / "ddp", symlinks=True)  # (the resharded run below writes in its run/)
    (tmp_path / "shard").mkdir()
    out = torchrun_train(tmp_path / "shard", manifest, "-o", str(tmp_path / "shard" / "run"), *RUN_ARGS, "--shard")
    for said in (ddp_run.out, out):
        assert said.count("training on 3 dialogues, 2 processes") == 1
    assert "2 processes, sharded" in out and "2 processes, sharded" not in ddp_run.out
    # (shard: the checkpoint its rank 0 wrote from the gathered weights)
    ddp, shard = (torch.load(tmp_path / name / "rank0.pt", weights_only=True) for name in ("ddp", "shard"))
    assert ddp.keys() == shard.keys()
    for k in ddp:  # (ATOL: float sums in another order, up to 2.5e-6 apart on weights ~0.5)
        assert torch.allclose(ddp[k], shard[k], atol=ATOL), k
    # its optimizer state: one file per process (no process gathered it), which loads whole, by
    # name, into one unsharded process
    step3 = tmp_path / "shard" / "run" / "step-3"
    assert torch.load(step3 / STATE, weights_only=True)["optimizer"] == {"sharded": "optimizer"}
    assert sorted(p.name for p in (step3 / "optimizer").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    model = load_frontend(step3)[0]
    opt = make_optimizer(model, TrainConfig())
    load_optimizer(model, opt, {"sharded": "optimizer"}, step3)
    by_name = dict(model.named_parameters())
    assert len(opt.state) == len(by_name) == len(shard)
    for name, p in by_name.items():
        assert opt.state[p]["exp_avg"].shape == p.shape and int(opt.state[p]["step"]) == 3, name
    # one of its files missing (a node's, on a filesystem the others did not share): said, by folder
    cut = tmp_path / "cut"
    shutil.copytree(step3, cut)
    (cut / "optimizer" / "__1_0.distcp").unlink()
    with pytest.raises(ConfigError, match=r"cannot read the optimizer state in .*cut/optimizer \(1 file\(s\): "
                                          r"__0_0.distcp\).*shared filesystem"):
        load_optimizer(model, make_optimizer(model, TrainConfig()), {"sharded": "optimizer"}, cut)
    # the sharded run's step 3 goes on unsharded (DDP) to the DDP run's step 6
    (tmp_path / "resumed").mkdir()
    torchrun_train(tmp_path / "resumed", manifest, "-o", str(tmp_path / "shard" / "run"), *TORCHRUN_ARGS,
                   "--resume", str(tmp_path / "shard" / "run" / "step-3"))
    resumed = torch.load(tmp_path / "resumed" / "rank0.pt", weights_only=True)
    for k in ddp:
        assert torch.allclose(ddp[k], resumed[k], atol=ATOL), k
    step6 = tmp_path / "shard" / "run" / "step-6"  # (saved sharded first, then again unsharded by the resumed run)
    assert "state" in torch.load(step6 / STATE, weights_only=True)["optimizer"] and not (step6 / "optimizer").exists()
    # an earlier save of the DDP run's step 6 by more processes left a file the sharded save below must not keep
    (tmp_path / "ddp" / "run" / "step-6" / "optimizer").mkdir()
    (tmp_path / "ddp" / "run" / "step-6" / "optimizer" / "__7_0.distcp").write_bytes(b"stale")
    # and back: the DDP run's step 3 goes on sharded (its whole optimizer state split over the
    # processes) to the same step 6
    (tmp_path / "resharded").mkdir()
    out = torchrun_train(tmp_path / "resharded", manifest, "-o", str(tmp_path / "ddp" / "run"), *TORCHRUN_ARGS,
                         "--resume", str(tmp_path / "ddp" / "run" / "step-3"), "--shard")
    assert "2 processes, sharded" in out and "resumed from" in out
    resharded = torch.load(tmp_path / "resharded" / "rank0.pt", weights_only=True)
    for k in ddp:
        assert torch.allclose(ddp[k], resharded[k], atol=ATOL), k
    step6 = tmp_path / "ddp" / "run" / "step-6"
    assert sorted(p.name for p in step6.iterdir() if "optimizer" in p.name) == ["optimizer"]
    assert sorted(p.name for p in (step6 / "optimizer").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    # only rank 0 read the checkpoint's weights; rank 1 got its shards from it
    assert len(torch.load(tmp_path / "resharded" / "reads0.pt")) == 1
    assert torch.load(tmp_path / "resharded" / "reads1.pt") == []
    assert len(torch.load(tmp_path / "resumed" / "reads1.pt")) == 1  # (unsharded: each process reads them)


@pytest.mark.slow
def test_accumulated_steps_train_as_more_processes_do(tmp_path, fake_codec, ddp_run):
    """kame train --grad-accum (test_grad_accum.py): one process of 2 forwards == DDP over 2
    processes; 2 DDP processes of 2 forwards (their gradients reduced once a step) == one process of
    4 forwards."""
    def alone(name: str, accum: int) -> dict:
        out = tmp_path / name / "run"
        assert cli_main(["train", ddp_run.manifest, "-o", str(out), *RUN_ARGS, "--grad-accum", str(accum),
                         "--codec", "fake", "--device", "cpu"]) == 0
        return load_frontend(out / "latest")[0].state_dict()

    (tmp_path / "two-x2").mkdir()
    out = torchrun_train(tmp_path / "two-x2", ddp_run.manifest, "-o", str(tmp_path / "two-x2" / "run"), *RUN_ARGS,
                         "--grad-accum", "2")
    assert "2 processes" in out and "x 2 forwards" in out
    assert "2 processes" in ddp_run.out and "x 2 forwards" not in ddp_run.out
    two_x1, two_x2 = (torch.load(folder / "rank0.pt", weights_only=True) for folder in (ddp_run.folder,
                                                                                         tmp_path / "two-x2"))
    for a, b in ((alone("one-x2", 2), two_x1), (two_x2, alone("one-x4", 4))):
        assert a.keys() == b.keys()
        for k in a:
            # (float sums in another order: up to 3.3e-6 apart after 6 AdamW steps, on weights ~0.5)
            assert torch.allclose(a[k], b[k], atol=ATOL), k


def test_resume_with_precision_auto_keeps_the_runs_precision(tmp_path, capsys, fake_codec):
    """--precision auto (the default) on --resume is the run's own precision, not this device's
    default: a bf16 run resumed on the CPU goes on in bf16 (was: refused, 'precision bf16 -> fp32')."""
    manifest = _data(tmp_path / "data")
    common = ["--frontend", "random:tiny", "--codec", "fake", "--window", "16", "--batch-size", "2", "--warmup", "1",
              "--save-every", "0", "--device", "cpu"]
    assert cli_main(["train", str(manifest), "-o", str(tmp_path / "run"), "--steps", "2", "--precision", "bf16",
                     *common]) == 0
    resume = [c for c in common if c not in ("--frontend", "random:tiny")]
    assert cli_main(["train", str(manifest), "-o", str(tmp_path / "run"), "--steps", "3", "--resume",
                     str(tmp_path / "run" / "latest"), *resume]) == 0, capsys.readouterr().err
    assert "bf16, steps 2..3" in capsys.readouterr().out
    rec = load_frontend(tmp_path / "run" / "latest")[1].kame["train"]
    assert rec["step"] == 3 and rec["config"]["precision"] == "bf16"
    assert cli_main(["train", str(manifest), "-o", str(tmp_path / "run"), "--steps", "4", "--precision", "fp32",
                     "--resume", str(tmp_path / "run" / "latest"), *resume]) == 1  # (asked for: refused)
    assert "precision 'bf16' -> 'fp32'" in capsys.readouterr().err


def test_sharding_takes_the_loaded_weights_and_frees_them(tmp_path):
    """prepare(--shard) trains a front-end rebuilt on the meta device and sharded, with the loaded
    weights, and leaves the loaded one on the meta device (was: rank 0 kept its whole fp32 weights
    alive for the run, held by its callers). One process of a gloo group (sharding itself needs no
    second one)."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from kame.train.parallel import is_sharded, prepare

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loaded = _tiny()
        want = {k: v.clone() for k, v in loaded.state_dict().items()}
        net = prepare(loaded, TrainConfig(shard=True), torch.device("cpu"))
        assert is_sharded(net) and net is not loaded
        got = {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in net.state_dict().items()}
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        assert all(p.is_meta for p in loaded.parameters())
    finally:
        dist.destroy_process_group()
