"""A front-end step whose logits are NaN or infinite (float16 activations that overflow, a
diverged checkpoint) is reported once per session, naming frontend.dtype, and counted (was: the
NaN logits sampled as one fixed token every frame - `agent 'dddd...'` - with `errors 0`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kame import registry
from kame.model.loaders import Frontend, load_frontend
from kame.runtime.base import ErrorEvent
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.runtime.frontend import NonFiniteLogits, load_frame_models
from kame.runtime.metrics import MetricsLog

from .fakes import run_plan, speech
from .test_frontend_real import real_cfg

F = 1920


def _nan_rows(model, rows: list[int]):
    """Make the text logits of ``rows`` NaN (a hook on text_linear): as a row whose activations overflow."""
    def hook(_module, _inputs, out):
        out = out.clone()
        out[rows] = float("nan")
        return out

    return model.text_linear.register_forward_hook(hook)


def test_nan_logits_raise_once_per_session_and_are_counted():
    factory, _ = load_frame_models(real_cfg(**{"codec.spec": "embedded", "frontend.seed": 0}))
    fm = factory(3)
    fm.reset([0, 1, 2])
    frames = speech(1, 8).reshape(8, 1, F).repeat(3, axis=1)
    on = np.ones(3, bool)
    for x in frames[:2]:  # finite logits: nothing said, nothing counted
        fm.step(x, on)
    assert fm.nonfinite_steps == 0
    handle = _nan_rows(fm.stepper.model, [1])
    try:
        with pytest.raises(NonFiniteLogits, match=r"^the front-end's logits are NaN or infinite \(batch rows \[1\]\), "
                                                  r"its tokens meaningless: in float32: a diverged checkpoint, or "
                                                  r"activations beyond float32's range \(try frontend.dtype=float32\) "
                                                  r"\(said once per session\)$"):
            fm.step(frames[2], on)
        fm.step(frames[3], on)  # told: counted only
        fm.step(frames[4], np.array([True, False, True]))  # the row idle: not counted
        assert fm.nonfinite_steps == 2
        fm.reset([1])  # a new session in the row: told again
        with pytest.raises(NonFiniteLogits, match=r"batch rows \[1\]"):
            fm.step(frames[5], on)
        assert fm.nonfinite_steps == 3
    finally:
        handle.remove()


async def test_a_float16_session_with_nan_logits_gets_one_error_naming_the_dtype(scratch):
    """The session goes on (its other frames have audio); the engine's ErrorEvent says to run in
    bfloat16 or float32."""
    def create(arg=None, **kw):
        model, info = load_frontend("random:tiny", **kw)
        assert model.dtype == torch.float16
        _nan_rows(model, [0])
        return Frontend(model, info)

    registry.register("frontend", "nanfe", create)
    cfg = real_cfg(**{"frontend.spec": "nanfe", "frontend.dtype": "float16", "codec.spec": "embedded",
                      "runtime.max_sessions": 1})
    clock = FakeClock()
    agent = TandemAgent(cfg, clock=clock, metrics=MetricsLog())
    await agent.start()
    recs = await run_plan(agent, clock, {"A": (1, 0, 6)}, {"A": speech(1, 6)}, failed=lambda: agent.failed_steps)
    await agent.stop()
    errs = [o.message for o in recs["A"].items if isinstance(o, ErrorEvent)]
    assert errs == ["front-end step failed: the front-end's logits are NaN or infinite (batch rows [0]), its tokens "
                    "meaningless: its activations overflow float16's range (65504): run it in bfloat16 or float32 "
                    "(frontend.dtype) (said once per session)"], errs
    assert len(recs["A"].audio()) == 5  # only the frame whose step raised is missing
