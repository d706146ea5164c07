"""A real `kame run` (random tiny front-end, fake STT and LLM) converted by from_kame_run: the
training example's (codes, oracle) are, step by step, what the run's Stepper was fed and made
(LMModel.forward's contract: oracle[t] fed at step t, the user's frame t + 1 beside the agent's
frame t). Its codec codes each frame exactly in its audio, so the agent's codes survive OUT.wav."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from kame import registry
from kame.audio import write_wav
from kame.backend.tokenizer import default_tokenizer
from kame.cli import main
from kame.codec.base import Codec, CodecStream
from kame.model.stepper import Stepper, oracle_timeline
from kame.train.data import DataError
from kame.train.examples import training_example
from kame.train.recorded import from_kame_run

from ..runtime.fakes import FakeSTT  # (one word per loud frame, a final after 3 quiet ones)

SCALE = 4096  # code c <-> a segment at level c / 4096 (16-bit audio holds it exactly enough)


class SegmentCodec(Codec):
    """Codebook k of a frame is the level of its k-th of K equal segments: codes decode to audio
    that encodes back to them, the user's as the agent's."""

    cardinality = 2048

    def __init__(self, num_codebooks: int) -> None:
        self.num_codebooks = num_codebooks

    def encode(self, pcm: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, K, F]
        B, n = pcm.shape
        F = -(-n // 1920)
        pcm = torch.nn.functional.pad(pcm.float(), (0, F * 1920 - n)).view(B, F, self.num_codebooks, -1)
        return (pcm.mean(-1) * SCALE).round().long().clamp(0, self.cardinality - 1).transpose(1, 2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # [B, K, F] -> [B, F * 1920]
        B, K, F = codes.shape
        seg = (codes.transpose(1, 2).float() / SCALE)[..., None].expand(B, F, K, 1920 // K)
        return seg.reshape(B, F * 1920)

    def stream(self, batch_size: int = 1) -> CodecStream:
        codec = self

        class Stream(CodecStream):
            def encode_frame(self, pcm):
                return codec.encode(pcm)[:, :, 0]

            def decode_frame(self, codes):
                return codec.decode(codes[:, :, None])

            def reset(self, rows=None):
                pass

        return Stream()

    def set_num_codebooks(self, n: int) -> None:
        self.num_codebooks = n


class SmallIdsLLM:
    """Replies with words whose ids in kame's tokenizer fit the tiny front-end's 1000 pieces."""

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        for piece in (" the", " is", " one .", " of the"):  # (spoken as "the is one. of the": ids < 1000)
            yield piece
            await asyncio.sleep(0)


@pytest.fixture
def components():
    registry.schemes("stt")  # the built-in table first
    own = {("codec", "segments1"): lambda arg=None: SegmentCodec(1),
           ("codec", "segments2"): lambda arg=None: SegmentCodec(2),
           ("stt", "fake_rec"): lambda arg=None, **kw: FakeSTT(),
           ("llm", "small_ids"): lambda arg=None, **kw: SmallIdsLLM()}
    for (kind, scheme), target in own.items():
        registry.register(kind, scheme, target)
    yield
    for kind, scheme in own:
        registry._ENTRIES.get(kind, {}).pop(scheme, None)


def segments(levels: list[list[int]]) -> np.ndarray:
    """Frames whose segments are at these levels (codes)."""
    return np.concatenate([np.repeat(np.asarray(f, np.float32) / SCALE, 1920 // len(f)) for f in levels])


@pytest.mark.parametrize("K", [1, 2])  # max_delay 0 and 1 (a random preset on a K-codebook codec)
@pytest.mark.filterwarnings("ignore:.*the agent's text has .* past its end:UserWarning")  # (a random front-end's last word, re-encoded)
def test_a_recorded_run_gives_exactly_what_the_stepper_was_fed(tmp_path, monkeypatch, components, K):
    seen = []  # per step of the run: (user codes, oracle token, valid, output frame, audio codes)
    step = Stepper.step

    def spy(self, user_codes):
        out = step(self, user_codes)
        seen.append((user_codes[0].tolist(), int(out.oracle_in[0]), bool(out.valid[0]), int(out.frame[0]),
                     out.audio[0].tolist(), self.cfg))
        return out

    monkeypatch.setattr(Stepper, "step", spy)
    g = np.random.default_rng(K)
    speech = [[int(x) for x in g.integers(700, 1500, K)] for _ in range(8)]  # loud: the fake STT hears words
    quiet = [[int(x) for x in g.integers(0, 150, K)] for _ in range(12)]
    wav, out = tmp_path / "q.wav", tmp_path / "a.wav"
    write_wav(wav, segments(quiet[:2] + speech + quiet[2:]), 24000)
    rc = main(["run", str(wav), "-o", str(out), "--tail", "1.5", "--no-png", "--set", "frontend.spec=random:tiny",
               "--set", f"codec.spec=segments{K}", "--set", "backend.stt=fake_rec", "--set", "backend.llm=small_ids",
               "--set", "runtime.vad=energy", "--set", "frontend.seed=0"])
    assert rc == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    feed = doc["frontend_feed"]
    assert feed["max_delay"] == K - 1 and feed["oracle_frames"] is True
    assert doc["oracle"] and all(isinstance(o["frame"], int) for o in doc["oracle"])

    d = from_kame_run(out.with_suffix(".json"))
    cfg = seen[0][5]
    T = d.frames
    assert d.source["oracle_frames"] == "recorded" and d.source["agent_lag"] == K
    codes, oracle = training_example(d, SegmentCodec(K), default_tokenizer(), cfg)
    steps = seen[:T]  # (a step after the file's end, as the session closes, is not in it)
    assert len(steps) == T
    # the oracle the stepper fed at each step; the recording's tokens agree
    assert oracle.tolist() == [s[1] for s in steps]
    assert any(s[1] == cfg.text_card for s in steps) and any(0 <= s[1] < cfg.text_card and s[1] != 3 for s in steps)
    assert {f: t for f, t in feed["oracle_tokens"] if f < T} == \
        {t: s[1] for t, s in enumerate(steps) if s[1] != cfg.existing_text_padding_id}
    # the user's codes it heard at step t + 1 beside the agent's frame t
    assert codes[1 + cfg.dep_q:, : T - 1].T.tolist() == [s[0][: cfg.n_user_q] for s in steps[1:]]
    # the agent's codes of each output frame in its column (its last K frames were heard after the file's end)
    made = {s[3]: s[4] for s in steps if s[2] and s[3] < T - K}
    assert made and codes[1: 1 + cfg.dep_q, sorted(made)].T.tolist() == [made[f] for f in sorted(made)]


def test_a_feed_that_disagrees_with_its_events_is_refused(tmp_path, monkeypatch, components):
    """A recording whose frames were shifted (e.g. by a failed step) is not converted as if exact."""
    write_wav(tmp_path / "q.wav", segments([[100]] * 4 + [[900]] * 6 + [[50]] * 6), 24000)
    out = tmp_path / "a.wav"
    assert main(["run", str(tmp_path / "q.wav"), "-o", str(out), "--tail", "1.5", "--no-png",
                 "--set", "frontend.spec=random:tiny", "--set", "codec.spec=segments1", "--set", "backend.stt=fake_rec",
                 "--set", "backend.llm=small_ids", "--set", "runtime.vad=energy"]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    from_kame_run(out.with_suffix(".json"))  # as recorded: fine
    for o in doc["oracle"]:
        o["frame"] = None if o["frame"] is None else o["frame"] + 1
    out.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"at frame \d+ the front-end was fed oracle token \d+, but the run's oracle "
                                        r"events give \d+: its record does not hold together"):
        from_kame_run(out.with_suffix(".json"))


def test_a_failed_step_does_not_shift_the_recorded_feed(tmp_path, monkeypatch, components):
    """A step whose decode failed after the model had stepped: the recording keys each oracle
    token by the step the model counted (was: the steps delivered, one short after the failure)."""
    fed = {}  # the stepper's step index of row 0 -> the oracle token it fed there
    step = Stepper.step

    def spy(self, user_codes):
        at = self.frames[0]
        out = step(self, user_codes)
        fed[at] = int(out.oracle_in[0])
        return out

    class FailingOnce(SegmentCodec):
        def stream(self, batch_size=1):
            inner, calls = super().stream(batch_size), [0]

            class Stream(type(inner)):
                def decode_frame(self, codes):
                    calls[0] += 1
                    if calls[0] == 14:  # (after the fake STT's words and the first prediction)
                        raise RuntimeError("decoder hiccup")
                    return inner.decode_frame(codes)

            return Stream()

    monkeypatch.setattr(Stepper, "step", spy)
    registry.register("codec", "segfail", lambda arg=None: FailingOnce(1))
    try:
        write_wav(tmp_path / "q.wav", segments([[100]] * 4 + [[900]] * 6 + [[50]] * 12), 24000)
        out = tmp_path / "a.wav"
        assert main(["run", str(tmp_path / "q.wav"), "-o", str(out), "--tail", "1.5", "--no-png",
                     "--set", "frontend.spec=random:tiny", "--set", "codec.spec=segfail", "--set", "backend.stt=fake_rec",
                     "--set", "backend.llm=small_ids", "--set", "runtime.vad=energy"]) == 0
    finally:
        registry._ENTRIES["codec"].pop("segfail", None)
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["summary"]["frontend_failed_steps"] == 1
    pad = 3  # (the tiny preset's text padding id)
    feed = doc["frontend_feed"]
    steps, lost = feed["steps"], feed["lost_steps"]
    assert lost == [13] and feed["unstepped_inputs"] == []  # (the step of the 14th decode ran, its output was lost)
    assert steps in (len(fed), len(fed) - 1)  # (a step as the session closes may not be delivered)
    recorded = {f: t for f, t in feed["oracle_tokens"]}
    assert recorded and recorded == {f: t for f, t in fed.items() if t != pad and f < steps and f not in lost}
    with pytest.warns(UserWarning, match="failed on 1 frame.s.: they have no agent audio$"):
        d = from_kame_run(out.with_suffix(".json"))  # the events' frames and the tokens hold together
    oracle = oracle_timeline(d.timeline_events(), steps, start_id=feed["start_id"], pad_id=pad,
                             vocab=feed["text_card"] + 1)
    assert oracle.tolist() == [fed[f] for f in range(steps)]  # the lost step's token too
