"""Kyutai STT adapter plumbing on a tiny random checkpoint the test writes (not accuracy):
Mimi codes in -> kame's LM stepper -> text pieces -> timed words."""

import asyncio
import io
import json

import numpy as np
import pytest
import torch

from kame import registry
from kame.backend.types import AudioFrame
from kame.errors import CheckpointError
from kame.runtime.clock import FakeClock

spm = pytest.importorskip("sentencepiece")
pytest.importorskip("onnxruntime")

PIECES = ["▁hel", "lo", "▁wor", "ld"]
WORDS_TEXT = "hello world hello there world wide help low load word" * 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from kame.codec.mimi import build_random, save_mimi
    from kame.model import load_frontend, save_frontend

    folder = tmp_path_factory.mktemp("kyutai-tiny")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(WORDS_TEXT.split(" ")), model_writer=buf, vocab_size=40,
        user_defined_symbols=PIECES, hard_vocab_limit=False, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        minloglevel=2)  # ids 0-3 special, as in Kyutai's tokenizer (3 = pad)
    (folder / "tok.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tok.model"))
    ids = [sp.piece_to_id(p) for p in PIECES]
    model, _ = load_frontend("random:stt-tiny")
    with torch.no_grad():  # the text head can only say pad or one of the 4 pieces
        w = model.text_linear.weight
        keep = torch.zeros(w.shape[0], dtype=torch.bool)
        keep[ids + [3]] = True
        w[~keep] = 0.0
        w[keep] *= 20.0
    save_mimi(build_random("tiny"), folder / "mimi.safetensors")
    save_frontend(model, folder, mimi_name="mimi.safetensors", tokenizer_name="tok.model", model_type="stt",
                  stt_config={"audio_delay_seconds": 0.24, "audio_silence_prefix_seconds": 0.0})
    assert json.loads((folder / "config.json").read_text())["dep_q"] == 0
    return folder, sp, ids


@pytest.fixture(scope="module")
def speech():
    from kame.backend.tts.espeak import EspeakTTS

    a = EspeakTTS("en-us").synth("Hello world, this is a test.")
    sil = np.zeros(24000, np.float32)
    x = np.concatenate([sil, a, sil])
    return np.concatenate([x, np.zeros(-len(x) % 1920, np.float32)]), (1.0, 1.0 + len(a) / 24000)


async def test_kyutai_stream_plumbing(checkpoint, speech):
    folder, sp, ids = checkpoint
    assert min(ids) > 3
    pcm, (s, e) = speech
    clock = FakeClock()
    stt = registry.create("stt", f"kyutai:{folder}", clock=clock, max_lag=float("inf"))
    assert stt.n_q == 8 and stt.delay == pytest.approx(0.24)

    async def frames():
        for i in range(0, len(pcm), 1920):
            yield AudioFrame(pcm[i:i + 1920], clock.now())
            clock.advance(0.08)
            await asyncio.sleep(0)

    trs = [tr async for tr in stt.stream(frames())]
    finals = [tr for tr in trs if tr.final]
    assert len(finals) == 1 and finals[0].words
    assert any(not tr.final for tr in trs)
    # every word is one "▁piece" followed by continuation pieces, as the assembly rule says
    starts, conts = {"hel", "wor"}, ("lo", "ld")
    for i, w in enumerate(finals[0].words):
        head = next((h for h in starts if w.text.startswith(h)), "" if i == 0 else None)
        assert head is not None, w  # only the first word may start mid-word
        rest = w.text[len(head):]
        while rest:
            c = next((c for c in conts if rest.startswith(c)), None)
            assert c, w
            rest = rest[len(c):]
        assert s - 0.4 <= w.start <= w.end <= e + 0.7, (w, s, e)  # + VAD min_silence
    assert [w.start for w in finals[0].words] == sorted(w.start for w in finals[0].words)


def test_kyutai_word_assembly(checkpoint):
    """Scripted tokens: pieces join into words; pad/end-pad carry no text; times follow steps."""
    from kame.backend.stt.kyutai import KyutaiRecognizer

    folder, sp, ids = checkpoint
    stt = registry.create("stt", f"kyutai:{folder}")
    hel, lo, wor, ld = ids
    script = iter([3, hel, lo, 3, 0, wor, 3, ld, 3, 3] + [3] * 20)

    class Scripted:
        def reset(self):
            pass

        def step(self, pcm):
            return next(script)

    rec = KyutaiRecognizer(stt, Scripted())
    for _ in range(10):
        rec.accept(np.zeros(1920, np.float32))
    words = rec.final()
    assert [w.text for w in words] == ["hello", "world"]
    # "hel" sampled after frame 2 -> 2 * 0.08 - 0.24 delay = 0 s; "ld" after frame 8 -> 0.4 s
    assert words[0].start == pytest.approx(0.0) and words[1].end == pytest.approx(8 * 0.08 - 0.24)


def test_kyutai_rejects_non_stt_checkpoint(tmp_path):
    from kame.model import load_frontend, save_frontend

    model, _ = load_frontend("random:tiny")  # a Moshi-shaped LM (dep_q 8)
    save_frontend(model, tmp_path)
    with pytest.raises(CheckpointError, match=r"speech-to-speech front-end checkpoint \(dep_q 8\), not a Kyutai "
                                              r"STT; use it as frontend.spec="):
        registry.create("stt", f"kyutai:{tmp_path}")
    # a folder that is not there is a Kyutai STT checkpoint missing (was: "front-end checkpoint ...")
    with pytest.raises(CheckpointError, match=r"Kyutai STT checkpoint '.*gone' does not exist \(kyutai:FOLDER"):
        registry.create("stt", f"kyutai:{tmp_path / 'gone'}")
