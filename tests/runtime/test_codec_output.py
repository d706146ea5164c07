"""A codec's stream output is checked every frame (a plugin codec's too): broken codes or audio
are replaced by silence and reported once per session, naming the codec, with the session
going on (was: NaN audio lost the whole `kame run` at the final write, a wrong length passed
silently, a numpy array gave a traceback every frame)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from kame import registry
from kame.runtime.base import ErrorEvent
from kame.runtime.frontend import CodecInterfaceError, load_frame_models

from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.runtime.metrics import MetricsLog

from .fakes import run_plan, speech
from .test_frontend_real import real_cfg
from .wrapped_codec import INNER, WrappedCodec, WrappedStream

F = 1920


class WrapStream(WrappedStream):
    """The inner codec's stream, made to misbehave by ``mode``."""

    def __init__(self, inner, mode):
        super().__init__(inner)
        self.mode, self.n = mode, 0

    def encode_frame(self, pcm):
        self.n += 1
        codes = self.inner.encode_frame(pcm)
        if self.mode == "raise" and self.n == 3:
            raise RuntimeError("fell over at frame 3")
        if self.mode == "floatcodes":
            return codes.float()
        if self.mode == "bigcodes":
            return codes + 100_000
        if self.mode == "numpycodes":
            return codes.numpy()
        return codes

    def decode_frame(self, codes):
        out = self.inner.decode_frame(codes)
        if self.mode == "nan":
            out = out.clone()
            out[:, 3] = float("nan")
        elif self.mode == "nanrow0":
            out = out.clone()
            out[0, 3] = float("nan")
        elif self.mode == "short":
            out = out[:, :1280]
        elif self.mode == "numpy":
            out = out.numpy()
        elif self.mode == "loud":
            out = out * 1000
        return out


class WrapCodec(WrappedCodec):
    def __init__(self, mode):
        super().__init__(INNER)
        self.mode = mode

    def stream(self, batch_size=1):
        # the first stream codes the silent frame at load (checked there): broken from the next on,
        # except "numpycodes", the load's case
        first, self.made = not getattr(self, "made", False), True
        mode = "ok" if first and self.mode != "numpycodes" else self.mode
        return WrapStream(self.inner.stream(batch_size), mode)


@pytest.fixture(autouse=True)
def wrap_codec():
    registry.schemes("codec")  # the built-in table first
    registry.register("codec", "wrap", lambda arg=None, **kw: WrapCodec(arg or "ok"))
    yield
    del registry._ENTRIES["codec"]["wrap"]


class StepLines(logging.Handler):
    """The engine's "frame step failed" lines."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("frame step failed"):
            self.records.append(record)


async def run(plan: dict, audio: dict, cfg) -> tuple[dict, int]:
    """fakes.run_plan, counting a frame whose step failed as stepped ->
    ({name: Recorder}, the number of failed steps)."""
    clock = FakeClock()
    agent = TandemAgent(cfg, clock=clock, metrics=MetricsLog())
    lines = StepLines()
    logging.getLogger("kame.runtime.engine").addHandler(lines)
    try:
        await agent.start()
        recs = await run_plan(agent, clock, plan, audio, failed=lambda: agent.failed_steps)
        await agent.stop()
    finally:
        logging.getLogger("kame.runtime.engine").removeHandler(lines)
    assert all(r.exc_info is None for r in lines.records)  # a named codec failure: one line, no traceback
    assert bool(lines.records) == bool(agent.failed_steps)  # (one per run of failures, not per frame)
    return recs, agent.failed_steps


def cfg(mode, **over):
    return real_cfg(**{"codec.spec": f"wrap:{mode}", "frontend.seed": 0, **over})


BROKEN = {
    "nan": "decode_frame returned: audio contains NaN or infinite samples",
    "loud": "decode_frame returned: samples reach",
    "short": "decode_frame returned: expected pcm of shape [3, 1920] (80 ms at 24000 Hz; one row per session), "
             "got (3, 1280) (1280 samples is 80 ms at 16000 Hz: resample to 24000 Hz first)",
    "numpy": "decode_frame returned: expected a torch.Tensor of float samples, got ndarray",
    "floatcodes": "encode_frame returned: expected integer codes, got dtype torch.float32",
    "bigcodes": "encode_frame returned: codes must be in [0, 128)",
}


@pytest.mark.parametrize("mode", sorted(BROKEN))
async def test_broken_codec_output_is_reported_once_per_session_and_replaced_by_silence(mode):
    """Two sessions from frame 0 (told at the first frame), a third joining at frame 4 (told when
    it first meets the broken codec; the engine sends the error to the sessions live then, so A
    and B hear it a second time): no error per frame, and the sessions go on with finite audio."""
    plan = {"A": (1, 0, 8), "B": (2, 0, 8), "C": (3, 4, 4)}
    audio = {k: speech(seed, n) for k, (seed, _, n) in plan.items()}
    recs, failed = await run(plan, audio, cfg(mode))  # (max_sessions 3: a batch of 3 rows)
    want = f"front-end step failed: codec wrap:{mode} broke its interface: {BROKEN[mode]}"
    errs = {k: [o.message for o in r.items if isinstance(o, ErrorEvent)] for k, r in recs.items()}
    assert [len(errs[k]) for k in "ABC"] == [2, 2, 1], errs
    for e in sum(errs.values(), []):
        assert e.startswith(want), e
        assert e.endswith("(its broken frames are replaced by silence; said once per session)")
    assert failed == 2  # (was: one a frame, or none)
    for name, r in recs.items():
        pcm = np.stack(r.audio())
        assert np.isfinite(pcm).all() and np.abs(pcm).max() <= 1.0 and pcm.shape[1] == F
        assert len(pcm) >= plan[name][2] - 2  # only the frames whose step raised are missing


async def test_a_codec_that_raises_is_named():
    recs, failed = await run({"A": (1, 0, 6)}, {"A": speech(1, 6)}, cfg("raise"))
    assert failed == 1
    errs = [o.message for o in recs["A"].items if isinstance(o, ErrorEvent)]
    assert errs == ["front-end step failed: codec wrap:raise failed in encode_frame(): RuntimeError: fell over at "
                    "frame 3"]
    assert len(recs["A"].audio()) == 5  # the session went on


def test_only_the_broken_rows_are_silenced_and_a_new_session_is_told_again():
    """NaN in row 0's decoded audio: row 0 is silent, row 1 is what a working codec gives it."""
    ok, _ = load_frame_models(cfg("ok", **{"frontend.seed": 0}))
    bad, info = load_frame_models(cfg("nanrow0"))
    assert info["codec"] == "wrap:nanrow0"
    fm_ok, fm_bad = ok(2), bad(2)
    fm_ok.reset([0, 1])
    fm_bad.reset([0, 1])
    rng = np.random.default_rng(0)
    active = np.ones(2, bool)
    frames = [rng.standard_normal((2, F)).astype(np.float32) * 0.1 for _ in range(5)]
    fm_ok.step(frames[0], active)
    with pytest.raises(CodecInterfaceError, match=r"^codec wrap:nanrow0 broke its interface: decode_frame returned: "
                                                  r"audio contains NaN or infinite samples \(its broken frames"):
        fm_bad.step(frames[0], active)
    outs = [(fm_ok.step(x, active).pcm, fm_bad.step(x, active).pcm) for x in frames[1:4]]  # told: no raise
    assert fm_bad.codec_faults == 4
    for good, got in outs:
        assert not got[0].any()
        np.testing.assert_array_equal(got[1], good[1])
    assert np.abs(outs[-1][1][1]).max() > 0
    fm_bad.reset([0])  # a new session in row 0: told when it meets the codec
    with pytest.raises(CodecInterfaceError):
        fm_bad.step(frames[4], active)
    fm_bad.step(frames[4], np.array([False, True]))  # rows told, and an idle row: nothing raised


def test_codes_a_codec_cannot_give_are_refused_when_it_loads():
    with pytest.raises(CodecInterfaceError, match=r"^codec wrap:numpycodes broke its interface: encode_frame of a "
                                                  r"silent frame returned: expected integer codes of shape \[B, K\], "
                                                  r"got ndarray$"):
        load_frame_models(cfg("numpycodes"))


def test_a_good_codec_costs_no_repair():
    factory, _ = load_frame_models(cfg("ok"))
    fm = factory(1)
    fm.reset([0])
    for x in speech(1, 4).reshape(4, 1, F):
        assert torch.isfinite(torch.from_numpy(fm.step(x, np.ones(1, bool)).pcm)).all()
    assert fm.codec_faults == 0
