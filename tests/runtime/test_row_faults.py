"""One session's bad input stays that session's: the frame's batched step goes on for the others
(was: a NaN in one row failed the codec's check of the whole batch, "front-end step failed" in
every session). Its audio is replaced by silence, its refused oracle prediction dropped, its
failing VAD replaced, each said once (an ErrorEvent to that session) while it lasts."""

from __future__ import annotations

import numpy as np
import pytest

from kame.backend.types import OracleAppend, OracleReset
from kame.errors import AudioFormatError
from kame.runtime.base import SEE_LOG, ErrorEvent, client_form
from kame.runtime.worker import EnergyVAD, RowInput, StepJob, StepWorker

from .fakes import FakeFrameModel, Recorder, speech, step
from .test_engine import make_agent
from .test_frontend_real import real_cfg, run

F = 1920
NAN = "unusable user audio replaced by silence: audio contains NaN or infinite samples"


class CheckingFrameModel(FakeFrameModel):
    """A fake front-end whose codec checks its batch as kame's codecs do (kame.codec.base:
    finite samples): one bad row fails the step; it records what each step was fed."""

    def __init__(self, batch_size: int, **kw) -> None:
        super().__init__(batch_size, **kw)
        self.fed: list[np.ndarray] = []

    def step(self, pcm, active):
        if not np.isfinite(pcm).all():
            raise AudioFormatError("encode_frame: audio contains NaN or infinite samples")
        self.fed.append(pcm.copy())
        return super().step(pcm, active)


def rows(bad: np.ndarray, **kw) -> list[RowInput]:
    ok = np.full(F, 0.1, np.float32)
    return [RowInput(row=0, pcm=bad, t=0.0, **kw), RowInput(row=1, pcm=ok, t=0.0)]


def test_a_row_of_bad_audio_is_heard_as_silence_and_said_once_while_it_lasts():
    fm = CheckingFrameModel(3)
    w = StepWorker([fm])
    try:
        nan = np.full(F, np.nan, np.float32)
        first = w.run(StepJob(rows=rows(nan, reset=True)))
        assert first.rows[0].problems == [(NAN, None)] and first.rows[1].problems == []
        assert not fm.fed[-1][0].any() and (fm.fed[-1][1] == np.float32(0.1)).all()  # silence for row 0 only
        assert w.run(StepJob(rows=rows(nan))).rows[0].problems == []  # (still bad: not said each frame)
        assert w.run(StepJob(rows=rows(np.zeros(F, np.float32)))).rows[0].problems == []
        loud = w.run(StepJob(rows=rows(np.full(F, 300.0, np.float32)))).rows[0].problems  # bad again: said
        assert loud == [("unusable user audio replaced by silence: samples reach 300, expected float audio in "
                         "[-1, 1] (int16 samples? divide them by 32768)", None)]
        w.run(StepJob(rows=rows(np.zeros(F, np.float32))))
        short = w.run(StepJob(rows=rows(np.zeros(F // 2, np.float32)))).rows[0].problems
        assert short == [(f"unusable user audio replaced by silence: expected a float frame of {F} samples, got "
                          f"shape ({F // 2},) dtype float32", None)]
    finally:
        w.shutdown()


def test_a_refused_oracle_prediction_is_dropped_for_its_row_only():
    fm = CheckingFrameModel(2)
    w = StepWorker([fm])
    try:
        bad = [OracleReset(1, 0.0), OracleAppend(1, (None,), "?", 0.0)]  # (a tokenizer's broken id)
        res = w.run(StepJob(rows=rows(np.zeros(F, np.float32), reset=True, oracle=bad)))
        (message, brief), = res.rows[0].problems
        assert message.startswith("the front-end refused this session's oracle prediction (its tokens are "
                                  "dropped): TypeError: ") and "None" in message
        assert brief == f"the front-end refused this session's oracle prediction (its tokens are dropped); {SEE_LOG}"
        assert res.rows[1].problems == [] and fm.steps == 1
    finally:
        w.shutdown()


def test_a_vad_that_fails_on_one_row_is_replaced():
    made = []

    def vad_factory():
        vad = EnergyVAD()
        if not made:  # the first one made (row 0's) fails
            def push(pcm, t):
                raise RuntimeError("onnx: bad state")
            vad.push = push
        made.append(vad)
        return vad

    w = StepWorker([CheckingFrameModel(2)], vad_factory=vad_factory)
    try:
        res = w.run(StepJob(rows=rows(np.zeros(F, np.float32), reset=True)))
        assert [m for m, _ in res.rows[0].problems] == [
            "voice activity detection failed on this frame (a new VAD takes over): RuntimeError: onnx: bad state"]
        assert res.rows[1].problems == [] and [e.kind for e in res.rows[1].vad] == ["start"]
        again = w.run(StepJob(rows=rows(np.zeros(F, np.float32))))
        assert again.rows[0].problems == [] and len(made) == 3  # (row 0 has a new VAD, working)
    finally:
        w.shutdown()


async def test_a_session_whose_frame_goes_bad_gets_an_error_and_the_others_go_on():
    agent, clock, _ = make_agent(max_sessions=2)
    agent._frame_models = lambda b: CheckingFrameModel(b)
    await agent.start()
    a, b = await agent.open_session("a"), await agent.open_session("b")
    ra, rb = Recorder(a), Recorder(b)
    take = a.take_input

    def broken(tick):  # a's frame spoilt on its way to the batch
        rin = take(tick)
        rin.pcm = np.full(F, np.inf, np.float32)
        return rin

    a.take_input = broken
    for _ in range(3):
        await b.push_audio(np.full(F, 0.1, np.float32))
        await step(agent, clock)
    errs = {k: [o for o in r.items if isinstance(o, ErrorEvent)] for k, r in (("a", ra), ("b", rb))}
    assert [e.message for e in errs["a"]] == [NAN] and errs["b"] == []
    assert client_form(errs["a"][0]) is errs["a"][0]  # (a specific error, for the client too)
    assert len(ra.audio()) == len(rb.audio()) == 3 and agent.failed_steps == 0
    for s in (a, b):
        await s.close()
    await agent.stop()


async def test_a_reused_input_buffer_does_not_change_queued_audio():
    """push_audio keeps its own copy: a caller that reuses its buffer (NaN in it after the push)
    changes nothing queued (was: NaN reached the batch, every session's step failed)."""
    agent, clock, _ = make_agent(max_sessions=2)
    agent._frame_models = lambda b: CheckingFrameModel(b)
    await agent.start()
    a, b = await agent.open_session("a"), await agent.open_session("b")
    ra, rb = Recorder(a), Recorder(b)
    buf = np.full(F, 0.25, np.float32)
    await a.push_audio(buf)
    buf[:] = np.nan  # the caller's next use of its buffer
    await step(agent, clock)
    assert [o for r in (ra, rb) for o in r.items if isinstance(o, ErrorEvent)] == []
    fed = agent.worker.models[0].fed[-1]
    assert (fed[a.row] == np.float32(0.25)).all()
    for s in (a, b):
        await s.close()
    await agent.stop()


async def test_real_codec_a_buffer_reused_by_one_client_leaves_the_batch_alone():
    """The real front-end and codec: a client that reuses its audio buffer cannot fail the others'
    step (the codec's NaN check used to fail the whole batch)."""
    import kame.runtime.session as session_mod

    real_push = session_mod.TandemSession.push_audio
    spoilt = []

    async def push_then_reuse(self, pcm):  # A's client writes NaN into the buffer it just pushed
        await real_push(self, pcm)
        if self.id == "A":
            pcm[:] = np.nan
            spoilt.append(1)

    session_mod.TandemSession.push_audio = push_then_reuse
    try:
        audio = {"A": speech(1, 6).copy(), "B": speech(2, 6)}
        agent, recs = await run({"A": (0, 0, 6), "B": (1, 0, 6)}, audio, real_cfg())
    finally:
        session_mod.TandemSession.push_audio = real_push
    assert spoilt
    errs = {k: [o.message for o in r.items if isinstance(o, ErrorEvent)] for k, r in recs.items()}
    assert errs == {"A": [], "B": []} and agent.failed_steps == 0
    assert all(len(r.audio()) == 6 for r in recs.values())


def test_a_fault_in_a_frame_whose_step_failed_is_said_at_the_next():
    fail = [True]

    def hook():
        if fail.pop() if fail else False:
            raise RuntimeError("the front-end fell over")

    w = StepWorker([CheckingFrameModel(2, hook=hook)])
    try:
        nan = np.full(F, np.nan, np.float32)
        with pytest.raises(RuntimeError, match="the front-end fell over"):
            w.run(StepJob(rows=rows(nan, reset=True)))
        assert w.run(StepJob(rows=rows(nan))).rows[0].problems == [(NAN, None)]  # (its ErrorEvent was lost)
    finally:
        w.shutdown()


def test_a_rows_audio_is_its_own_not_a_view_of_the_batch():
    # (was: a view of the step's [B, 1920] array, so a session that kept its frames, as file mode's
    # recording does, kept the whole batch's audio: B times the memory)
    w = StepWorker([CheckingFrameModel(4)])
    try:
        out = w.run(StepJob(rows=rows(np.zeros(F, np.float32)))).rows
        for r in (0, 1):
            assert out[r].pcm.base is None and out[r].pcm.nbytes == F * 4
    finally:
        w.shutdown()
