"""`kame eval follow` (kame.eval.follow): a front-end run through the Stepper on a dialogue as the
runtime runs it, measured against what the dialogue's agent said. The main test is the whole
training chain's consistency: a front-end `kame train` fitted to two dialogues that differ only by
their oracle, then run frame by frame with a dialogue's user codes and oracle events, says that
dialogue's agent text at its time and makes its audio codes exactly; an untrained one does not."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from kame.backend.tokenizer import default_tokenizer
from kame.cli import main
from kame.eval.follow import cer, chance_cer, follow_one, speaking_frames, wer, words_of_stream
from kame.model.stepper import Sampling
from kame.train.data import FRAME_SIZE, Dialogue, OracleEvent, Word, read_dialogue, write_dialogue
from kame.train.finetune import TrainConfig, train
from kame.train.manifest import read_manifest, write_manifest

from ..train._fakes import FakeCodec, audio, levels
from ..train.test_finetune import _data, _tiny


def _same_user_other_oracle(root, T: int = 24):
    """Two dialogues whose audio is the same (both sides): only the oracle says what the agent answers
    and when (its prediction arrives the frame before the agent's first word)."""
    tok = default_tokenizer()
    folders = []
    for i, (reply, frame) in enumerate(((["Paris", "is", "lovely."], 9), (["Two", "plus", "two."], 12))):
        words = [Word("user", "Where", 0.0, 0.3)] + [Word("agent", w, (frame + 1) / 12.5 + 0.2 * k,
                                                          (frame + 1) / 12.5 + 0.2 * k + 0.15)
                                                     for k, w in enumerate(reply)]
        oracle = [OracleEvent(frame, "reset", hint=5), OracleEvent(frame, "append", ids=tok.encode_words(reply))]
        d = Dialogue(audio(levels(T, 0), levels(T, 100)), words=words, oracle=oracle,
                     tokenizer_sha256=tok.sha256)
        folders.append(write_dialogue(root / f"d{i}", d))
    write_manifest(root / "train.jsonl", folders)
    return root / "train.jsonl"


def _shifted(d: Dialogue, oracle: int = 0, user: int = 0) -> Dialogue:
    """``d`` in memory with its oracle events ``oracle`` frames later, or its user's audio ``user``
    frames later (negative: earlier; the other end repeats its last or first frame)."""
    u, n = d.audio[:, 0], abs(user) * FRAME_SIZE
    if user:
        u = np.concatenate([u[n:], u[-n:]]) if user < 0 else np.concatenate([u[:n], u[:-n]])
    events = [dataclasses.replace(ev, frame=ev.frame + oracle) for ev in d.oracle]
    return dataclasses.replace(d, audio=np.stack([u, d.audio[:, 1]], 1), oracle=events, folder=None)


def test_a_front_end_trained_on_dialogues_says_them_back_through_the_stepper(tmp_path):
    manifest = _same_user_other_oracle(tmp_path / "data")
    dialogues = [read_dialogue(e.path) for e in read_manifest(manifest)]
    tok, greedy = default_tokenizer(), Sampling(greedy=True)
    torch.manual_seed(0)
    untrained = follow_one(_tiny().eval(), FakeCodec(), tok, dialogues[0], greedy, 0, None)[0]
    assert untrained["text_errors"] > 0 and untrained["text_words_ok"] < untrained["text_words"]
    assert sum(untrained["speaking_codes_ok"]) < sum(untrained["speaking_codes"])
    assert min(untrained["speaking_codes_nll"]) > 4 * untrained["speaking_codes"][0]  # (nats: random, ~ln 2048)
    # (the agent's words span frames 10-16 of dialogue 0: 0.8-0.95 s, 1.0-1.15 s, 1.2-1.35 s)
    assert speaking_frames(dialogues[0]).nonzero().flatten().tolist() == list(range(10, 17))
    torch.manual_seed(0)  # (60 steps: every check below holds from ~30 on)
    res = train(_tiny(), FakeCodec(), tok, manifest, None,
                TrainConfig(steps=60, lr=3e-3, warmup_steps=5, batch_size=2, window_frames=24, oracle_aug=False,
                            save_every=0), echo=lambda s: None)
    bare = []
    for d, said in zip(dialogues, ("Paris is lovely.", "Two plus two.")):
        rec, pcm = follow_one(res.model, FakeCodec(), tok, d, greedy, 0, None)
        bare.append(rec["text_words_ok_no_oracle"] == rec["text_words"])
        assert rec["reference"] == said and rec["text"] == said  # what its oracle said, not the other
        assert rec["text_errors"] == 0 and rec["text_words_ok"] == rec["text_words"] > 0
        assert rec["semantic_ok"] == rec["semantic"] > 0
        # its codes at the frames it speaks, every codebook (the acoustic ones delayed a frame: one
        # target fewer when the last spoken frame is the dialogue's last)
        assert rec["speaking_codes_ok"] == rec["speaking_codes"] and len(rec["speaking_codes"]) == 8
        assert rec["speaking_codes"][0] == int(speaking_frames(d).sum()) < rec["semantic"]
        assert max(n / k for n, k in zip(rec["speaking_codes_nll"], rec["speaking_codes"])) < 1.0
        assert rec["onset_error_s"] == pytest.approx(0.0)  # its first word when its oracle's cue said
        agent = FakeCodec().encode(torch.from_numpy(np.ascontiguousarray(d.audio[:, 1]))[None])
        n = pcm.shape[0] // 1920  # (the frames the acoustic delay let it finish)
        assert n >= d.frames - 1
        assert np.array_equal(pcm, FakeCodec().decode(agent[:, :, :n])[0].numpy())  # the agent's audio codes
        if d is dialogues[0]:
            # fed its oracle one frame late or the user's codes one frame early (what generate would
            # do with them misplaced), it does not: the checks above hold at the runtime's alignment
            # only. (Not shown by the second dialogue: with two to learn, no cue at frame 9 already
            # says it is the second one, so its words come on time with its cue late.)
            late = follow_one(res.model, FakeCodec(), tok, _shifted(d, oracle=1), greedy, 0, None)[0]
            assert not (late["text"] == said and late["onset_error_s"] == pytest.approx(0.0)), late
            early = follow_one(res.model, FakeCodec(), tok, _shifted(d, user=-1), greedy, 0, None)[1]
            assert not np.array_equal(early, pcm)
    # without its oracle (pad at every step) the two dialogues read the same: it cannot say both
    assert bare.count(True) <= 1
    # a front-end that ignores its oracle (its embedding zeroed) scores the same with and without it
    with torch.no_grad():
        res.model.oracle_emb.weight.zero_()
    rec = follow_one(res.model, FakeCodec(), tok, dialogues[0], greedy, 0, None)[0]
    assert rec["text_words_ok_no_oracle"] == rec["text_words_ok"]


def test_teacher_forced_counts_the_codes_at_the_frames_it_speaks():
    """Exact per-codebook counts from a stub model whose codes are ranked first at frames 2 and 5
    only; the agent speaks at frames 4-6; the last frame of codebooks 1.. has no target (a delay)."""
    from types import SimpleNamespace

    from kame.eval.follow import teacher_forced
    from kame.model.lm import LMOutput

    T, dep_q, card = 8, 3, 16
    cfg = SimpleNamespace(dep_q=dep_q, existing_text_padding_id=3, existing_text_end_padding_id=0)
    codes = torch.randint(0, card, (1 + dep_q, T), generator=torch.Generator().manual_seed(0))
    logits = torch.zeros(1, dep_q, T, card)
    for f in range(T):
        for k in range(dep_q):
            right = int(codes[1 + k, f])
            logits[0, k, f, right if f in (2, 5) else (right + 1) % card] = 20.0
    mask = torch.ones(1, dep_q, T, dtype=torch.bool)
    mask[0, 1:, T - 1] = False
    out = LMOutput(logits, mask, torch.zeros(1, 1, T, 5), torch.ones(1, 1, T, dtype=torch.bool))

    class Stub:  # (what teacher_forced uses of an LMModel)
        device, has_oracle = torch.device("cpu"), False

        def __call__(self, c, oracle=None):
            return out

    stub = Stub()
    stub.cfg = cfg
    talk = torch.zeros(T, dtype=torch.bool)
    talk[4:7] = True
    tf = teacher_forced(stub, codes, None, talk)
    assert tf.speaking_ok == [1, 1, 1] and tf.speaking == [3, 3, 3]
    assert tf.semantic_ok == 2 and tf.semantic == T
    assert all(20.0 * 2 - 1 < x < 20.0 * 2 + 1 for x in tf.speaking_nll)  # (two frames wrong by ~20 nats each)
    talk[T - 1] = True  # (a frame codebooks 1.. have no target at: counted for codebook 0 only)
    assert teacher_forced(stub, codes, None, talk).speaking == [4, 3, 3]


def test_speaking_frames_end_where_the_word_does():
    from types import SimpleNamespace

    words = [Word("agent", "a", 0.8, 0.95), Word("user", "b", 0.0, 0.5), Word("agent", "c", 1.0, 1.04),
             Word("agent", "d", 1.3, 1.3)]  # (c ends on frame 13's boundary; d is empty: its one frame)
    d = SimpleNamespace(frames=20, words_of=lambda who: [w for w in words if w.speaker == who])
    assert speaking_frames(d).nonzero().flatten().tolist() == [10, 11, 12, 16]


def test_words_and_errors():
    assert cer("Therefore appeal.", "there fore a peal") == (1, 15)  # (split, joined: the letters alone count)
    assert wer("Therefore appeal.", "there fore a peal") == (4, 2)
    # chance: each transcript against the next record's reply, the last against the first's
    recs = [{"reference": "ab.", "asr": "abz"}, {"reference": "cdef.", "asr": "c"}, {"reference": "gh.", "asr": "g"}]
    # "abz" against "cdef": 4 errors of 4 letters; "c" against "gh": 2 of 2; "g" against "ab": 2 of 2
    # (against the previous reply instead: (9, 8); the arguments swapped: (8, 5))
    assert chance_cer(recs) == (8, 8)
    assert chance_cer(recs[:1]) == (0, 0)  # (no other reply to score against)
    tok = default_tokenizer()
    cfg = _tiny().cfg
    P, E = cfg.existing_text_padding_id, cfg.existing_text_end_padding_id
    ids = tok.encode_words(["Two", "plus", "two."])
    assert words_of_stream([P, P, E] + ids + [P], tok, cfg) == ("Two plus two.", 3)
    assert words_of_stream([P, E, P], tok, cfg) == ("", None)
    assert wer("Two plus 2.", "two plus two") == (0, 3)  # (normalized: case, digits, punctuation)
    assert wer("Paris is lovely.", "Paris lovely indeed") == (2, 3)


def test_cli_writes_the_table_the_audio_and_the_results(tmp_path, capsys, fake_codec):
    manifest = _data(tmp_path / "data", n=2, T=24)
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--no-asr",
                 "--temp", "0", "-o", str(tmp_path / "out"), "--per-dialogue"]) == 0
    out = capsys.readouterr().out
    assert "| d0 |" in out and "| d1 |" in out and "\n| 2 |" in out and "| ... with no oracle |" in out
    assert "| codes ok % while it speaks, codebook 0 / the rest |" in out
    recs = [json.loads(ln) for ln in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    ok, n = (np.sum([r[k] for r in recs], 0) for k in ("speaking_codes_ok", "speaking_codes"))
    total = out.split("\n| 2 |")[1].split("|")  # the totals row's cells
    assert total[3].strip() == f"{100 * ok[0] / n[0]:.1f} / {100 * ok[1:].sum() / n[1:].sum():.1f}", total
    assert [r["reference"] for r in recs] == ["Paris is lovely.", "Two plus two."] and recs[0]["asr"] is None
    audio, rate = sf.read(tmp_path / "out" / "d0.wav")
    assert rate == 24000 and audio.shape == (24 * 1920, 2)  # the user beside the generated agent
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--no-asr",
                 "--limit", "1"]) == 0
    assert "\n| 1 |" in capsys.readouterr().out


def test_cli_refusals_name_this_command(tmp_path, capsys, fake_codec):
    """kame train's loaders' errors are said as kame eval follow's; -o a file is refused up front, in
    the words of every command's output folder check (kame.paths.check_output_folder; was its own
    check beside it, worded otherwise), with what to give."""
    manifest = _data(tmp_path / "data", n=1, T=24)
    assert main(["eval", "follow", str(tmp_path / "nope"), "--frontend", "random:tiny", "--no-asr"]) == 1
    err = capsys.readouterr().err
    assert f"kame: error: eval follow: no manifest at {tmp_path / 'nope'}" in err and "train:" not in err
    (tmp_path / "file").write_text("")
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--no-asr",
                 "-o", str(tmp_path / "file")]) == 1
    afile = tmp_path / "file"
    assert f"kame: error: eval follow: -o {afile}: cannot create the folder: {afile} is a file, not a folder; " \
           f"give -o a folder for the audio and results.jsonl\n" in capsys.readouterr().err


def test_cli_device(tmp_path, capsys, fake_codec):
    """--device: where the front-end runs (auto: cuda when there is one); one this machine lacks is
    refused as this command's error, before any dialogue is read."""
    import torch

    manifest = _data(tmp_path / "data", n=1, T=24)
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--no-asr",
                 "--temp", "0", "--device", "cpu"]) == 0
    assert "(fake, on cpu)" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--no-asr",
                     "--device", "cuda"]) == 1
        assert "eval follow: device 'cuda' is not available here" in capsys.readouterr().err


def test_cli_measures_the_recording_through_the_codec_beside_the_generated_audio(tmp_path, capsys, fake_codec,
                                                                                  monkeypatch):
    """The audio WER's ceiling: the dialogue's own agent codes decoded and transcribed. A fake
    whisper that hears the reply only in the recording's decoded codes: 0 % there, 100 % for the
    untrained front-end's audio."""
    import kame.bench.codec_quality as cq

    manifest = _data(tmp_path / "data", n=2, T=24)
    dialogues = [read_dialogue(e.path) for e in read_manifest(manifest)]
    refs = {}
    for d in dialogues:  # what the recording through the codec decodes to -> the reply
        codes = FakeCodec().encode(torch.from_numpy(np.ascontiguousarray(d.audio[:, 1]))[None])
        refs[FakeCodec().decode(codes)[0].numpy().tobytes()] = " ".join(w.word for w in d.words_of("agent"))
    heard = []

    class FakeWhisper:
        def __call__(self, pcm, rate):
            assert rate == 24000
            heard.append(len(pcm))
            return refs.get(np.asarray(pcm, np.float32).tobytes(), "nothing")

    monkeypatch.setattr(cq, "Whisper", FakeWhisper)
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--temp", "0",
                 "-o", str(tmp_path / "out"), "--per-dialogue"]) == 0
    out = capsys.readouterr().out
    assert "| audio WER / CER % | ... the recording through the codec |" in out and len(heard) == 4
    # the totals: "nothing" for "Paris is lovely." / "Two plus two.": 6 of 6 words, 21 of 23 letters
    assert "| 100.0 / 91.3 | 0.0 / 0.0 |\n" in out.split("| dialogues |")[1]
    assert "(chance: the generated audio's CER against the next dialogue's reply, not its own: 91.3 %" in out
    recs = [json.loads(ln) for ln in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [(r["audio_errors"], r["audio_errors_recorded"], r["asr_recorded"]) for r in recs] == \
        [(3, 0, "Paris is lovely."), (3, 0, "Two plus two.")]


def test_a_front_end_without_an_oracle_stream_is_followed_without_its_oracle(tmp_path):
    """A Moshi-style model (no oracle stream) reads none of a dialogue's oracle events, in the
    free run as in the teacher-forced pass (was: its stepper's feed refusing them mid-run)."""
    from kame.model.loaders import load_frontend

    d = read_dialogue(read_manifest(_same_user_other_oracle(tmp_path / "data"))[0].path)
    assert d.oracle  # (events it would have been fed)
    torch.manual_seed(0)
    plain = load_frontend("random:tiny", text_card=4000, oracle=False)[0].eval()
    rec = follow_one(plain, FakeCodec(), default_tokenizer(), d, Sampling(greedy=True), 0, None)[0]
    assert rec["text_words"] > 0 and rec["text_words_ok_no_oracle"] is None


def test_cli_records_its_settings_and_says_the_seeds_default(tmp_path, capsys, fake_codec):
    """-o's follow.json records what a rerun needs (was: results.jsonl alone, no seed, temperature,
    front-end, codec or manifest), the header line says the seed, --help its default."""
    from kame.paths import file_sha256

    manifest = _data(tmp_path / "data", n=2, T=24)
    out = tmp_path / "out"
    assert main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "fake", "--no-asr",
                 "--temp", "0.5", "--seed", "7", "--limit", "1", "-o", str(out)]) == 0
    assert "sampling temp 0.5/0.5, seed 7" in capsys.readouterr().out
    rec = json.loads((out / "follow.json").read_text())
    assert rec == {"command": "kame eval follow", "manifest": str(manifest.resolve()),
                   "manifest_sha256": file_sha256(manifest), "dialogues": 1, "limit": 1, "frontend": "random:tiny",
                   "codec": "fake", "device": "cpu", "seed": 7, "temp": 0.5, "temp_text": 0.5, "greedy": False,
                   "asr": False}
    with pytest.raises(SystemExit):
        main(["eval", "follow", "--help"])
    assert "default 0): dialogue i is sampled with seed + i" in " ".join(capsys.readouterr().out.split())
