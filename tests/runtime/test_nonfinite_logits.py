"""A front-end step whose logits are NaN or infinite (float16 activations that overflow, a
diverged checkpoint) is reported to that session alone, once, naming frontend.dtype, and counted
(was: the NaN logits sampled as one fixed token every frame - `agent 'dddd...'` - with `errors 0`;
then: the step raised, so every live session lost the frame and got the error, each time)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kame import registry
from kame.model.loaders import Frontend, load_frontend
from kame.runtime.base import ErrorEvent
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.runtime.frontend import load_frame_models
from kame.runtime.metrics import MetricsLog

from .fakes import run_plan, speech
from .test_frontend_real import real_cfg

F = 1920
FLOAT16 = ("the front-end's logits for this session are NaN or infinite, its text and audio tokens meaningless: its "
           "activations overflow float16's range (65504): run it in bfloat16 or float32 (frontend.dtype) (said once "
           "per session)")


def _nan_rows(model, rows: list[int], every: int = 1):
    """Make the text logits of ``rows`` NaN (a hook on text_linear) at every ``every``-th step
    from the first: as a row whose activations overflow (now and then)."""
    calls = [0]

    def hook(_module, _inputs, out):
        calls[0] += 1
        if (calls[0] - 1) % every:
            return out
        out = out.clone()
        out[rows] = float("nan")
        return out

    return model.text_linear.register_forward_hook(hook)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_nan_logits_are_a_fault_of_their_row_alone_and_counted(dtype):
    """The step goes on: the other rows' outputs are those of a run without the NaN row; the bad
    row has a fault whose message does not advise the dtype the model already runs in."""
    factory, _ = load_frame_models(real_cfg(**{"codec.spec": "embedded", "frontend.seed": 0,
                                               "frontend.dtype": dtype}))
    frames = speech(1, 6).reshape(6, 1, F).repeat(3, axis=1)
    on = np.ones(3, bool)
    ref = factory(3)  # (greedy: the same outputs again)
    ref.reset([0, 1, 2])
    want = [ref.step(x, on) for x in frames]
    fm = factory(3)
    fm.reset([0, 1, 2])
    for x in frames[:2]:  # finite logits: nothing said, nothing counted
        assert fm.step(x, on).faults is None
    assert fm.nonfinite_steps == 0
    handle = _nan_rows(fm.stepper.model, [1])
    try:
        got = [fm.step(x, on) for x in frames[2:4]]
        idle = fm.step(frames[4], np.array([True, False, True]))  # the row idle: not said, not counted
    finally:
        handle.remove()
    message = (f"the front-end's logits for this session are NaN or infinite, its text and audio tokens "
               f"meaningless: it runs in {dtype}, so this is no float16 overflow: the checkpoint's weights or "
               f"activations diverge (a broken checkpoint: check it, or load another) (said once per session)")
    assert [g.faults for g in got] == [{1: ("logits", message)}] * 2  # (every frame: the worker says it once)
    assert idle.faults is None
    assert fm.nonfinite_steps == 2
    assert np.abs(want[2].pcm[[0, 2]]).max(axis=1).all()  # (their audio: not the first, silent frames)
    for g, w in zip(got, want[2:4]):  # (the codec's batched decode: float rounding apart)
        np.testing.assert_allclose(g.pcm[[0, 2]], w.pcm[[0, 2]], rtol=0, atol=1e-6)
        assert np.array_equal(g.text[[0, 2]], w.text[[0, 2]])


def _agent(name: str, rows: list[int], every: int = 1, **over):
    """A TandemAgent whose front-end ("name") gives batch ``rows`` NaN logits (_nan_rows)."""
    def create(arg=None, **kw):
        model, info = load_frontend("random:tiny", **kw)
        _nan_rows(model, rows, every)
        return Frontend(model, info)

    registry.register("frontend", name, create)
    cfg = real_cfg(**{"frontend.spec": name, "codec.spec": "embedded", **over})
    return TandemAgent(cfg, clock=FakeClock(), metrics=MetricsLog())


def _errors(rec) -> list[str]:
    return [o.message for o in rec.items if isinstance(o, ErrorEvent)]


async def test_a_float16_session_with_nan_logits_gets_one_error_naming_the_dtype(scratch):
    """The session goes on, every frame with its audio; the ErrorEvent says to run in bfloat16 or
    float32, once, though the NaN logits come and go (every other step)."""
    agent = _agent("nanfe", [0], 2, **{"frontend.dtype": "float16", "runtime.max_sessions": 1})
    await agent.start()
    assert agent.worker.models[0].stepper.model.dtype == torch.float16
    recs = await run_plan(agent, agent.clock, {"A": (1, 0, 6)}, {"A": speech(1, 6)}, failed=lambda: agent.failed_steps)
    await agent.stop()
    assert _errors(recs["A"]) == [FLOAT16]
    assert len(recs["A"].audio()) == 6
    assert agent.failed_steps == 0


async def test_one_sessions_nan_logits_leave_the_other_sessions_alone(scratch):
    """Batch rows 0 and 2 give NaN logits: A (row 0) and C (row 2, joining later) are told once
    each, B (row 1) nothing; every session gets all its frames; no step fails. D, a new session
    in A's row after A left, is told again."""
    agent = _agent("nanfe3", [0, 2], **{"frontend.dtype": "float16", "runtime.max_sessions": 3})
    await agent.start()
    plan = {"A": (1, 0, 4), "B": (2, 0, 9), "C": (3, 3, 4), "D": (4, 5, 4)}
    audio = {name: speech(seed, n) for name, (seed, _, n) in plan.items()}
    recs = await run_plan(agent, agent.clock, plan, audio, failed=lambda: agent.failed_steps)
    await agent.stop()
    assert {n: _errors(r) for n, r in recs.items()} == {"A": [FLOAT16], "B": [], "C": [FLOAT16], "D": [FLOAT16]}
    assert {n: len(r.audio()) for n, r in recs.items()} == {n: frames for n, (_, _, frames) in plan.items()}
    assert agent.failed_steps == 0
