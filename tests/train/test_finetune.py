"""`kame train` (kame.train.finetune, kame.train.loss): the loss against a hand computation,
training lowering the loss (through the input dropouts too), checkpoints that load and resume,
errors, and a process failing under torchrun stopping the others (torchrun_train runs `kame train`
in two torchrun processes; test_parallel.py's DDP run shows them ending with the same weights).
The oracle augmentation and the dropouts themselves: test_augment.py."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kame.backend.tokenizer import default_tokenizer
from kame.cli import _build_parser
from kame.cli import main as cli_main
from kame.errors import ConfigError
from kame.model.config import preset
from kame.model.lm import LMOutput
from kame.model.loaders import load_frontend
from kame.train.config import STATE
from kame.train.data import DataError, OracleEvent, Word, write_dialogue
from kame.train.examples import collate, training_example
from kame.train.finetune import TrainConfig, train
from kame.train.loss import frontend_loss
from kame.train.manifest import write_manifest

from ._fakes import FakeCodec, dialogue

ROOT = Path(__file__).resolve().parents[2]


# --- the loss ------------------------------------------------------------------------------------
def _log_softmax(row, i):
    m = max(row)
    return row[i] - m - math.log(sum(math.exp(x - m) for x in row))


@pytest.mark.parametrize("sem, ac", [(100.0, 1.0), (1.0, 2.0)])
def test_loss_matches_a_hand_computation(sem, ac):
    g = torch.Generator().manual_seed(0)
    B, dep_q, T, card, V = 1, 3, 4, 5, 6
    logits = torch.randn(B, dep_q, T, card, generator=g)
    text_logits = torch.randn(B, 1, T, V, generator=g)
    mask = torch.ones(B, dep_q, T, dtype=torch.bool)
    mask[0, 1, 3] = mask[0, 2, 0] = False  # a delay's tail, a -1 code
    logits[~mask] = float("nan")  # (the forward puts NaN there: it must not reach the loss)
    logits.requires_grad_()
    text_logits.requires_grad_()
    text_mask = torch.tensor([[[True, True, True, True]]])
    codes = torch.tensor([[[3, 1, 3, 0],  # text: pad (3) twice, a word, end-of-padding (0)
                           [0, 1, 2, 3], [4, 0, 1, -1], [-1, 2, 2, 1]]])
    out = LMOutput(logits, mask, text_logits, text_mask)
    cfg = SimpleNamespace(existing_text_padding_id=3, end_of_text_padding_id=0)
    tcfg = TrainConfig(text_pad_weight=0.5, semantic_weight=sem, acoustic_weight=ac)
    loss, parts = frontend_loss(out, codes, cfg, tcfg)

    # KAME's text loss: mean CE of the word positions (1, 3: a word, end-of-padding) + 0.5 * mean CE
    # of the padding positions (0, 2)
    tl = text_logits[0, 0].tolist()
    ce = [-_log_softmax(tl[t], int(codes[0, 0, t])) for t in range(4)]
    text = (ce[1] + ce[3]) / 2 + 0.5 * (ce[0] + ce[2]) / 2
    num = den = 0.0
    for cb in range(dep_q):
        for t in range(T):
            if not mask[0, cb, t]:
                continue
            w = sem if cb == 0 else ac
            num += w * -_log_softmax(logits[0, cb, t].tolist(), int(codes[0, 1 + cb, t]))
            den += w
    audio = num / den
    assert parts["text"] == pytest.approx(text, rel=1e-5) and parts["audio"] == pytest.approx(audio, rel=1e-5)
    assert loss.item() == pytest.approx(text + audio, rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(text_logits.grad).all()
    # with no valid position at all: 0, not NaN
    empty = LMOutput(logits, torch.zeros_like(mask), text_logits, torch.zeros_like(text_mask))
    loss0, parts0 = frontend_loss(empty, codes, cfg, tcfg)
    assert loss0.item() == 0.0 and parts0 == {"text": 0.0, "audio": 0.0}


def test_the_audio_weights_are_checked(tmp_path):
    for bad, said in ((dict(semantic_weight=-1.0), "--semantic-weight must be a finite weight >= 0"),
                      (dict(acoustic_weight=float("nan")), "--acoustic-weight must be a finite weight >= 0"),
                      (dict(semantic_weight=True), "--semantic-weight must be a finite weight >= 0, got True"),
                      (dict(semantic_weight=0.0, acoustic_weight=0.0), "both 0: the audio would not be learned")):
        with pytest.raises(ConfigError, match=said):
            TrainConfig(**bad).check()
    TrainConfig(semantic_weight=0.0).check()  # (the acoustic codebooks alone: allowed...)
    # ... but not for a front-end with one audio codebook, whose audio would then not be learned
    one = load_frontend("random:tiny", text_card=4000, dep_q=1, delays=[0] * 10, n_q=9)[0]
    with pytest.raises(ConfigError, match="--semantic-weight 0 with one audio codebook"):
        train(one, FakeCodec(), default_tokenizer(), _data(tmp_path / "data"), None,
              TrainConfig(**dict(FAST, steps=1, semantic_weight=0.0)), echo=lambda s: None)


# --- training --------------------------------------------------------------------------------------
def _data(root: Path, n: int = 2, T: int = 24) -> Path:
    tok = default_tokenizer()
    folders = []
    for i in range(n):
        reply = ["Paris", "is", "lovely."] if i == 0 else ["Two", "plus", "two."]
        words = [Word("user", "Where", 0.0, 0.3)] + [Word("agent", w, 0.8 + 0.3 * k, 1.0 + 0.3 * k)
                                                        for k, w in enumerate(reply)]
        ids = tok.encode_words(reply)
        oracle = [OracleEvent(3, "reset", hint=0), OracleEvent(3, "append", ids=ids[:2]),
                  OracleEvent(6, "reset", hint=5), OracleEvent(6, "append", ids=ids)]
        d = dialogue(T, seed=i, words=words, oracle=oracle, tokenizer_sha256=tok.sha256)
        folders.append(write_dialogue(root / f"d{i}", d))
    write_manifest(root / "train.jsonl", folders)
    return root / "train.jsonl"


def _tiny():
    return load_frontend("random:tiny", text_card=4000)[0]


FAST = dict(lr=3e-3, warmup_steps=2, batch_size=2, window_frames=16, log_every=5, save_every=0)


def test_training_lowers_the_loss_and_the_checkpoint_loads_with_the_same_logits(tmp_path):
    manifest = _data(tmp_path / "data")
    lines = []
    res = train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "run", TrainConfig(steps=30, **FAST),
                tokenizer_spec="default", echo=lines.append)
    assert res.step == 30 and len(res.losses) == 30
    first, last = np.mean(res.losses[:3]), np.mean(res.losses[-3:])
    assert last < 0.7 * first, (first, last)
    head = [ln.split() for ln in lines].index(["step", "loss", "text", "audio", "lr", "frames/s"])
    assert lines[head + 1].split()[0] == "5"
    # the codes were encoded once, said, and cached
    assert "encoding 2/2 dialogues (cached as codes.npz)" in lines
    assert (tmp_path / "data" / "d0" / "codes.npz").is_file() and (tmp_path / "data" / "d1" / "codes.npz").is_file()
    latest = tmp_path / "run" / "latest"
    assert latest.resolve() == (tmp_path / "run" / "step-30").resolve() == res.last_checkpoint.resolve()
    loaded, info = load_frontend(latest)
    rec = info.kame["train"]
    assert rec["step"] == 30 and rec["world_size"] == 1 and rec["config"]["lr"] == 3e-3
    assert info.kame["tokenizer"] == "default" and len(info.kame["train"]["manifest_sha256"]) == 64
    tok, cfg = default_tokenizer(), loaded.cfg
    from kame.train.data import read_dialogue

    codes, oracle = collate([training_example(read_dialogue(tmp_path / "data" / "d0"), FakeCodec(), tok, cfg)], cfg)
    with torch.no_grad():
        a, b = res.model(codes, oracle=oracle), loaded(codes, oracle=oracle)
    assert torch.equal(a.text_logits[a.text_mask], b.text_logits[b.text_mask])
    assert torch.equal(a.logits[a.mask], b.logits[b.mask])
    with torch.no_grad():  # and training changed the model
        c = _tiny()(codes, oracle=oracle)
    assert not torch.allclose(a.text_logits[a.text_mask], c.text_logits[c.text_mask])


def test_the_training_step_reads_through_the_dropouts(tmp_path):
    manifest = _data(tmp_path / "data", n=2)

    def first_loss(**kw):
        return train(_tiny(), FakeCodec(), default_tokenizer(), manifest, None, TrainConfig(**dict(FAST, steps=1, **kw)),
                     echo=lambda s: None).losses[0]

    from kame.model.lm import LMModel

    text_only = LMModel(preset("tiny").replace(text_card=4000, dep_q=0))
    with pytest.raises(ConfigError, match="--semantic-emb-dropout drops the front-end's own semantic codes"):
        train(text_only, FakeCodec(), default_tokenizer(), manifest, None,
              TrainConfig(**dict(FAST, steps=1, semantic_emb_dropout=0.5)), echo=lambda s: None)
    plain = first_loss()
    assert first_loss() == plain
    assert first_loss(text_emb_dropout=1.0) != pytest.approx(plain, rel=1e-6)
    assert first_loss(semantic_emb_dropout=1.0) != pytest.approx(plain, rel=1e-6)


def test_a_cached_set_loads_without_reading_samples_and_hashes_each_wav_once(tmp_path, monkeypatch):
    """kame train's start-up on a set whose codes are cached: the codes come from codes.npz, so
    no audio.wav is decoded, and each is hashed once (the cache check and the example share it)."""
    import kame.audio
    import kame.train.data as data
    from kame.train.batching import load_examples

    manifest = _data(tmp_path / "data", n=3)
    cfg = _tiny().cfg
    first = load_examples(manifest, FakeCodec(), default_tokenizer(), cfg)  # encodes and caches
    hashed, decoded = [], []
    real_sha, real_read = data.file_sha256, kame.audio.read_wav
    monkeypatch.setattr(data, "file_sha256", lambda path: hashed.append(path) or real_sha(path))
    monkeypatch.setattr(kame.audio, "read_wav", lambda *a, **k: decoded.append(a[0]) or real_read(*a, **k))
    again = load_examples(manifest, FakeCodec(), default_tokenizer(), cfg)
    assert decoded == [] and len(hashed) == 3 and len(set(hashed)) == 3
    assert all(torch.equal(a.codes, b.codes) and torch.equal(a.recorded, b.recorded) for a, b in zip(first, again))


def test_resume_continues_as_the_straight_run(tmp_path):
    manifest = _data(tmp_path / "data", n=3)
    # (augmentation and input dropouts on: the batches and what the model reads depend on the step alone)
    kw = dict(FAST, save_every=5, text_token_dropout=0.3, semantic_emb_dropout=0.5)
    straight = train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "a", TrainConfig(steps=20, **kw),
                     echo=lambda s: None)
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "b", TrainConfig(steps=10, **kw),
          echo=lambda s: None)
    state = torch.load(tmp_path / "b" / "latest" / STATE, weights_only=True)
    assert state["step"] == 10 and state["optimizer"]["state"]
    model = load_frontend(tmp_path / "b" / "latest")[0]
    resumed = train(model, FakeCodec(), default_tokenizer(), manifest, tmp_path / "b", TrainConfig(steps=20, **kw),
                    resume=tmp_path / "b" / "latest", echo=lambda s: None)
    assert resumed.step == 20 and len(resumed.losses) == 10
    assert resumed.losses == pytest.approx(straight.losses[10:], rel=1e-4)
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-5), name
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [".lock", "latest", "log.jsonl", "step-10", "step-15", "step-20",
                                                                 "step-5"]


def test_batches_from_a_step_are_the_straight_runs_without_cutting_the_ones_before(tmp_path, monkeypatch):
    """A resumed run starts its batches at its step: the same batches as a run that took the ones
    before, and those skipped are not cut (was: each one cut, augmented and collated, then thrown
    away: minutes at large step counts)."""
    from kame.train import batching
    from kame.train.batching import batches, load_examples

    manifest = _data(tmp_path / "data", n=3, T=40)
    cfg = _tiny().cfg
    examples = load_examples(manifest, FakeCodec(), default_tokenizer(), cfg)
    tcfg = TrainConfig(batch_size=2, window_frames=16)
    straight = batches(examples, cfg, tcfg)
    for _ in range(7):  # (past an epoch: 3 dialogues x 3 windows = 9 windows, 4.5 batches)
        next(straight)
    cuts = []
    cut = batching._cut
    monkeypatch.setattr(batching, "_cut", lambda *a: cuts.append(a) or cut(*a))
    resumed = batches(examples, cfg, tcfg, skip=7)
    for _ in range(3):
        (c1, o1), (c2, o2) = next(straight), next(resumed)
        assert torch.equal(c1, c2) and torch.equal(o1, o2)
    assert len(cuts) == 2 * 3 * 2  # (both generators' 3 batches of 2 windows: none for the skipped 7)


# --- errors ------------------------------------------------------------------------------------------
def test_errors(tmp_path, capsys):
    tok = default_tokenizer()
    with pytest.raises(DataError, match="no manifest at"):
        train(_tiny(), FakeCodec(), tok, tmp_path / "nope.jsonl", None, TrainConfig(steps=1, **FAST))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="lists no dialogues"):
        train(_tiny(), FakeCodec(), tok, tmp_path / "empty.jsonl", None, TrainConfig(steps=1, **FAST))
    manifest = _data(tmp_path / "data")
    with pytest.raises(DataError, match="text_card is 1000.*--text-card"):
        train(load_frontend("random:tiny")[0], FakeCodec(), tok, manifest, None, TrainConfig(steps=1, **FAST))
    with pytest.raises(ConfigError, match="longer than the front-end's attention context \\(250"):
        train(_tiny(), FakeCodec(), tok, manifest, None, TrainConfig(steps=1, **dict(FAST, window_frames=512)))
    capsys.readouterr()
    assert cli_main(["train", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")]) == 1
    assert "kame: error: train: no manifest at" in capsys.readouterr().err
    assert cli_main(["train", str(manifest), "-o", str(tmp_path / "o"), "--text-card", "1000",
                     "--codec", "embedded", "--window", "16"]) == 1
    assert "the front-end's text_card is 1000" in capsys.readouterr().err
    assert cli_main(["train", str(manifest), "-o", str(tmp_path / "o"), "--resume", str(tmp_path)]) == 1
    assert f"holds no {STATE}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_resume_refuses_another_run(tmp_path):
    manifest = _data(tmp_path / "data", n=2)
    kw = dict(FAST, save_every=2)
    train(_tiny(), FakeCodec(), default_tokenizer(), manifest, tmp_path / "b", TrainConfig(steps=2, **kw),
          echo=lambda s: None)
    ckpt = tmp_path / "b" / "latest"

    def resume(tcfg, man=manifest, **k):
        return train(load_frontend(ckpt)[0], FakeCodec(), default_tokenizer(), man, tmp_path / "b", tcfg,
                     resume=ckpt, echo=lambda s: None, **k)

    with pytest.raises(ConfigError) as e:
        resume(TrainConfig(steps=4, **dict(kw, batch_size=3, window_frames=12, lr=1e-3), seed=5))
    said = str(e.value)
    for what in ("window_frames 16 -> 12", "lr 0.003 -> 0.001", "seed 0 -> 5", "global batch", "2 x 1 x 1 -> 3 x 1 x 1"):
        assert what in said, said
    assert "manifest" not in said
    text = manifest.read_text()
    manifest.write_text(text.splitlines()[0] + "\n")  # another manifest
    with pytest.raises(ConfigError, match="the manifest .*sha256"):
        resume(TrainConfig(steps=4, **kw))
    manifest.write_text(text)
    with pytest.raises(ConfigError, match="at step 2 already.*--steps above 2"):
        resume(TrainConfig(steps=2, **kw))
    # only steps, log_every, save_every, and batch_size with grad_accum for the same global batch,
    # may change: the run goes on
    res = resume(TrainConfig(steps=3, **dict(kw, log_every=1, save_every=3, batch_size=1, grad_accum=2)))
    assert res.step == 3
    rec = load_frontend(tmp_path / "b" / "latest")[1].kame["train"]
    assert rec["resumed_from"] == str((tmp_path / "b" / "step-2").resolve())


def test_cli_codec_checks_out_folder_and_records(tmp_path, capsys, fake_codec):
    _data(tmp_path / "data", n=2)
    a = tmp_path / "a"
    common = ["--window", "16", "--batch-size", "2", "--warmup", "1", "--log-every", "1", "--save-every", "0"]

    def kame_train(*argv):
        capsys.readouterr()
        rc = cli_main(["train", str(tmp_path / "data"), "-o", str(a), *common, *argv])  # (a synth OUT folder)
        return rc, capsys.readouterr()

    rc, io = kame_train("--codec", "fake", "--steps", "2", "--warmup", "5")
    assert rc == 0, io.err
    assert "warning: --warmup 5 is more than --steps 2" in io.out
    info = load_frontend(a / "latest")[1]
    assert info.kame["codec"] == "fake" and info.kame["train"]["frontend"] == "random:tiny"
    # resumed without --codec: the checkpoint's own codec (auto), not the embedded one
    rc, io = kame_train("--steps", "3", "--warmup", "5", "--resume", str(a / "latest"))
    assert rc == 0, io.err
    info = load_frontend(a / "latest")[1]
    assert info.kame["codec"] == "fake" and info.kame["train"]["step"] == 3
    assert info.kame["train"]["frontend"] == "random:tiny"
    assert info.kame["train"]["resumed_from"] == str((a / "step-2").resolve())
    # another codec than the one it was trained with: refused, by kame run's check
    rc, io = kame_train("--steps", "4", "--warmup", "5", "--codec", "embedded", "--resume", str(a / "latest"))
    assert rc == 1 and "does not fit the front-end" in io.err and "--codec" in io.err, io.err
    rc, io = kame_train("--steps", "4", "--warmup", "5", "--frontend", "random:small", "--resume", str(a / "latest"))
    assert rc == 1 and "not from --frontend random:small" in io.err, io.err
    # a fresh run into a folder holding one: refused, unless --overwrite
    rc, io = kame_train("--codec", "fake", "--steps", "1")
    assert rc == 1 and "holds files already" in io.err and "--resume" in io.err, io.err
    rc, io = kame_train("--codec", "fake", "--steps", "1", "--overwrite")
    assert rc == 0, io.err
    assert sorted(p.name for p in a.iterdir()) == [".lock", "latest", "log.jsonl", "step-1"]
    (tmp_path / "empty").mkdir()
    assert cli_main(["train", str(tmp_path / "empty"), "-o", str(a)]) == 1
    assert "is a folder without a train.jsonl" in capsys.readouterr().err


def test_a_random_front_end_of_another_size_trains_and_its_checkpoint_keeps_it(tmp_path, capsys, fake_codec):
    """--frontend 'random:PRESET;KEY=VALUE,...' (was: only the presets' sizes, or a folder saved by hand)"""
    _data(tmp_path / "data", n=2)
    out = tmp_path / "o"
    assert cli_main(["train", str(tmp_path / "data"), "-o", str(out), "--codec", "fake", "--batch-size", "1",
                     "--warmup", "1", "--save-every", "0", "--window", "16", "--steps", "1",
                     "--frontend", "random:tiny;dim=32,depformer_dim=16,context=64"]) == 0, capsys.readouterr().err
    model, info = load_frontend(out / "latest")
    assert (model.cfg.dim, model.cfg.depformer_dim, model.cfg.context) == (32, 16, 64)
    assert model.cfg.text_card == default_tokenizer().vocab_size  # (still sized to the tokenizer, as a preset is)
    assert cli_main(["train", str(tmp_path / "data"), "-o", str(tmp_path / "p"), "--codec", "fake",
                     "--frontend", "random:tiny;dim=abc"]) == 1
    assert "random:tiny;dim=abc: config key dim='abc': expected int" in capsys.readouterr().err


def test_the_default_window_fits_the_front_ends_context_and_a_resume_keeps_the_runs(tmp_path, capsys, fake_codec):
    """(kame train DATA -o OUT with the defaults failed: --window 256 is past random:tiny's 250-frame
    context; an unset --window on --resume is the run's own, as --precision is)"""
    _data(tmp_path / "data", n=2)
    out = tmp_path / "o"
    base = ["train", str(tmp_path / "data"), "-o", str(out), "--codec", "fake", "--batch-size", "1", "--warmup", "1",
            "--save-every", "0"]
    assert cli_main([*base, "--steps", "1"]) == 0, capsys.readouterr().err
    assert load_frontend(out / "latest")[1].kame["train"]["config"]["window_frames"] == 250
    capsys.readouterr()
    assert cli_main([*base, "--steps", "2", "--window", "16", "--overwrite"]) == 0
    resume = ["train", str(tmp_path / "data"), "-o", str(out), "--batch-size", "1", "--warmup", "1", "--save-every", "0",
              "--steps", "3", "--resume", str(out / "latest")]  # (no --window, no --codec: the run's own)
    assert cli_main(resume) == 0, capsys.readouterr().err
    assert load_frontend(out / "latest")[1].kame["train"]["config"]["window_frames"] == 16
    assert cli_main([*base, "--steps", "2", "--window", "300", "--overwrite"]) == 1  # asked for: still refused
    assert "--window 300 frames is longer than the front-end's attention context (250" in capsys.readouterr().err


def test_a_resume_takes_the_runs_own_options_left_out(tmp_path, capsys, fake_codec):
    """(a run with non-default options was refused on --resume unless each was given again: an unset
    --batch-size fell back to its default, "global batch 1 x 1 -> 4 x 1"; --lr, --seed... likewise)"""
    _data(tmp_path / "data", n=2)
    out = tmp_path / "o"
    asked = ["--batch-size", "1", "--lr", "0.002", "--seed", "3", "--jitter", "2", "--text-token-dropout", "0.1",
             "--oracle-echo", "1", "2", "--window", "16", "--warmup", "1", "--log-every", "1", "--save-every", "0",
             "--semantic-weight", "1", "--acoustic-weight", "2"]
    assert cli_main(["train", str(tmp_path / "data"), "-o", str(out), "--codec", "fake", "--steps", "2",
                     *asked]) == 0, capsys.readouterr().err
    resume = ["train", str(tmp_path / "data"), "-o", str(out), "--resume", str(out / "latest")]
    capsys.readouterr()
    assert cli_main([*resume, "--steps", "3"]) == 0, capsys.readouterr().err
    rec = load_frontend(out / "latest")[1].kame["train"]
    kept = dict(batch_size=1, lr=0.002, seed=3, jitter_frames=2, text_token_dropout=0.1, oracle_echo=[1, 2],
                window_frames=16, warmup_steps=1, log_every=1, save_every=0, semantic_weight=1.0, acoustic_weight=2.0)
    assert rec["step"] == 3 and {k: rec["config"][k] for k in kept} == kept
    # given and differing: still refused, by name
    assert cli_main([*resume, "--steps", "4", "--lr", "0.001", "--jitter", "0", "--semantic-weight", "100"]) == 1
    said = capsys.readouterr().err
    assert "lr 0.002 -> 0.001" in said and "jitter_frames 2 -> 0" in said and "semantic_weight 1.0 -> 100.0" in said
    assert cli_main([*resume, "--steps", "4", "--batch-size", "2"]) == 1
    assert "global batch (batch_size x processes x grad_accum) 1 x 1 x 1 -> 2 x 1 x 1" in capsys.readouterr().err
    assert cli_main([*resume, "--steps", "4", "--grad-accum", "2"]) == 1  # (batch 1 of the run's 1: 1 x 1 x 2)
    assert "1 x 1 x 1 -> 1 x 1 x 2" in capsys.readouterr().err
    # unset --batch-size and --grad-accum keep the run's global batch over this run's processes
    # when they can: each forward keeps the run's batch (its memory), the forwards per step change
    from kame.train.launch import knobs_from

    def split(argv, rec, world):
        k = knobs_from(_build_parser(["train"])[0].parse_args(["train", "m", "-o", "o", *argv]), rec, world)
        return k["batch_size"], k["grad_accum"]

    rec = {"config": {"batch_size": 4}, "world_size": 8}  # (8 GPUs x 4: resumed on 4, on 16, on 3)
    assert split([], rec, 4) == (4, 2) and split([], rec, 16) == (2, 1) and split([], rec, 3) == (4, 1)
    rec = {"config": {"batch_size": 3}, "world_size": 2}
    assert split([], rec, 3) == (2, 1) and split([], rec, 1) == (3, 2)
    assert split([], rec, 4) == (3, 1)  # (6 over 4 processes: the run's own, check_resume names it)
    assert split(["--batch-size", "1"], rec, 1) == (1, 6) and split(["--batch-size", "4"], rec, 1) == (4, 1)
    assert split([], None, 4) == (TrainConfig.batch_size, 1)
    # ... and a given --grad-accum takes the batch per forward (12 = 3 x 2 x 2: 2 processes of 3 forwards of 2)
    rec = {"config": {"batch_size": 3, "grad_accum": 2}, "world_size": 2}
    assert split(["--grad-accum", "3"], rec, 2) == (2, 3) and split([], rec, 2) == (3, 2)


def test_a_run_recorded_before_window_offsets_resumes_with_its_fixed_windows(tmp_path, capsys, fake_codec):
    """A checkpoint whose record has no window_offsets (written before they existed, its windows
    cut from frame 0) resumes with them off unless asked; asked on, it is refused by name."""
    import json as _json

    manifest = _data(tmp_path / "data", n=2, T=40)
    common = ["--codec", "fake", "--window", "16", "--batch-size", "2", "--warmup", "1", "--save-every", "0"]
    assert cli_main(["train", str(manifest), "-o", str(tmp_path / "run"), "--frontend", "random:tiny", "--steps", "2",
                     "--window-offsets", "off", *common]) == 0
    ck = tmp_path / "run" / "latest"
    state = torch.load(ck / STATE, weights_only=True)
    del state["train"]["config"]["window_offsets"]
    torch.save(state, ck / STATE)
    cfg = _json.loads((ck / "config.json").read_text())
    del cfg["kame"]["train"]["config"]["window_offsets"]
    (ck / "config.json").write_text(_json.dumps(cfg))
    capsys.readouterr()
    assert cli_main(["train", str(manifest), "-o", str(tmp_path / "run"), "--steps", "3", "--resume", str(ck),
                     *common]) == 0, capsys.readouterr().err
    assert load_frontend(tmp_path / "run" / "latest")[1].kame["train"]["config"]["window_offsets"] is False
    assert cli_main(["train", str(manifest), "-o", str(tmp_path / "run"), "--steps", "4", "--resume", str(ck),
                     "--window-offsets", "on", *common]) == 1
    assert "window_offsets False -> True" in capsys.readouterr().err


def test_ctrl_c_says_where_to_resume(tmp_path, capsys, monkeypatch, fake_codec):
    import kame.train.loss as loss_mod

    _data(tmp_path / "data", n=2)
    real, calls = loss_mod.frontend_loss, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loss_mod, "frontend_loss", interrupted)
    out = tmp_path / "o"
    rc = cli_main(["train", str(tmp_path / "data" / "train.jsonl"), "-o", str(out), "--codec", "fake", "--window",
                   "16", "--batch-size", "2", "--steps", "10", "--save-every", "2"])
    assert rc == 130
    err = capsys.readouterr().err
    assert f"interrupted at step 2; last checkpoint {out / 'step-2'}; resume with --resume {out / 'latest'}" in err, err


# --- torchrun ------------------------------------------------------------------------------------------
PLUGIN = """
import sys
sys.path.insert(0, {fakes!r})
from _fakes import FakeCodec
from kame import registry
registry.register("codec", "fake", lambda arg=None, **kw: FakeCodec())
"""

SCRIPT = """
import os, sys, torch
sys.path.insert(0, {root!r})
from kame import registry
from kame.cli import _build_parser
from kame.train import finetune, launch, parallel
registry.load_plugins([{plugin!r}])
seen, batches = [], finetune.batches
def spy(*a, **k):  # what this rank trained on, step by step
    for b in batches(*a, **k):
        seen.append(b)
        yield b
finetune.batches = spy
from kame.model import loaders
reads, read_state = [], loaders.read_state
def read_spy(path, device):  # the front-end weights files this rank read
    reads.append(str(path))
    return read_state(path, device)
loaders.read_state = read_spy
argv = sys.argv[1:]
args = _build_parser(argv)[0].parse_args(argv)
res = launch.run(args)
torch.save(reads, os.path.join({out!r}, "reads%s.pt" % os.environ["RANK"]))
if not parallel.is_sharded(res.model):
    torch.save(res.model.state_dict(), os.path.join({out!r}, "rank%s.pt" % os.environ["RANK"]))
elif os.environ["RANK"] == "0":  # (sharded: the whole weights are the checkpoint rank 0 wrote)
    from kame.model.loaders import load_frontend
    torch.save(load_frontend(os.path.join(args.out, "latest"))[0].state_dict(), os.path.join({out!r}, "rank0.pt"))
torch.save(seen, os.path.join({out!r}, "batches%s.pt" % os.environ["RANK"]))
torch.save(res.losses, os.path.join({out!r}, "losses%s.pt" % os.environ["RANK"]))
"""


def torchrun_train(tmp_path: Path, *args: str, plugin_text: str = PLUGIN, ok: bool = True) -> str:
    """`kame train ARGS` in two torchrun processes on the CPU with the fake codec (``plugin_text``
    registers it); its stdout (``ok`` False: its stdout + stderr, and it must fail). Each rank's
    weights at the end go to tmp_path/rankR.pt, its batches and losses to batchesR.pt, lossesR.pt,
    the front-end weights files it read to readsR.pt."""
    plugin = tmp_path / "fake_codec.py"
    plugin.write_text(plugin_text.format(fakes=str(Path(__file__).parent)))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=str(ROOT / "src"), plugin=str(plugin), out=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "train", *args, "--codec", "fake", "--device", "cpu"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)  # (its own group: a hang is ended with the workers)
    try:
        stdout, stderr = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    if not ok:
        assert p.returncode != 0, stdout
        return stdout + stderr
    assert p.returncode == 0, stderr[-3000:]
    return stdout


TORCHRUN_ARGS = ("--steps", "6", "--batch-size", "1", "--window", "16", "--lr", "3e-3", "--warmup", "1",
                 "--log-every", "2", "--save-every", "3")


FAILING_PLUGIN = PLUGIN + """
import os
class Failing(FakeCodec):
    def encode(self, pcm):
        if os.environ["RANK"] == "1":
            raise OSError("rank 1 cannot encode")
        return super().encode(pcm)
registry.register("codec", "fake", lambda arg=None, **kw: Failing(), replace=True)
"""


@pytest.mark.slow
def test_a_process_failing_to_encode_stops_them_all(tmp_path):
    """Rank 1's encoding fails: rank 0 learns it at the barrier (parallel.agree) and stops saying rank 1's error
    (was: "another process failed while encoding its share ..."). (torchrun on one
    node also ends the other workers when one fails; a launcher that does not - several nodes, srun -
    would leave them at the barrier until the backend's timeout, 30 minutes for gloo.)"""
    manifest = _data(tmp_path / "data", n=3, T=32)
    out = torchrun_train(tmp_path, str(manifest), "--frontend", "random:tiny", "-o", str(tmp_path / "run"),
                         *TORCHRUN_ARGS, plugin_text=FAILING_PLUGIN, ok=False)
    assert "[rank0]: kame.errors.ConfigError: train: rank 1 failed: OSError: rank 1 cannot encode\n" in out, out
    assert not (tmp_path / "run").exists()


def test_a_cache_of_another_codec_is_encoded_again_and_no_cache_reads_none(tmp_path):
    from kame.train.finetune import load_examples

    manifest = _data(tmp_path / "data")
    cfg, tok, said = _tiny().cfg, default_tokenizer(), []
    load_examples(manifest, FakeCodec(), tok, cfg, codec_spec="fake", echo=said.append)  # caches both
    other = FakeCodec()
    other.fingerprint = "cd" * 32  # another codec: its caches are not these
    said.clear()
    load_examples(manifest, other, tok, cfg, codec_spec="other", echo=said.append)
    assert sum("encoding it again" in s for s in said) == 2
    assert any("encoding 2/2 dialogues" in s for s in said)
    # without the cache (or a codec with no fingerprint) a stale cache is not read: no error
    (tmp_path / "data" / "d0" / "codes.npz").write_bytes(b"junk")
    load_examples(manifest, other, tok, cfg, use_cache=False)
