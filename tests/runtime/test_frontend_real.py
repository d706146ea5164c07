"""The real frame model (tiny random front-end + a tiny codec, greedy, or sampled with
frontend.seed): sessions joining and leaving a batch get exactly what they get alone; the oracle
reaches the stepper."""

from __future__ import annotations

import numpy as np
import pytest

from kame.config import load_config
from kame.errors import CheckpointError, ConfigError
from kame.runtime.clock import FakeClock
from kame.runtime.engine import TandemAgent
from kame.runtime.metrics import MetricsLog

from .fakes import run_plan, speech

F = 1920
CODEC = "mimi:random-tiny"


def real_cfg(**over):
    return load_config(None, {"frontend.spec": "random:tiny", "codec.spec": CODEC, "frontend.temp": 0.0,
                              "frontend.temp_text": 0.0, "backend.stt": "none", "backend.llm": "none",
                              "runtime.max_sessions": 3, "runtime.vad": "energy", "runtime.stats_interval_s": 0.0,
                              "runtime.max_input_backlog_s": 30.0, **over})


async def run(plan, audio, cfg, oracle_at=None):
    clock = FakeClock()
    agent = TandemAgent(cfg, clock=clock, metrics=MetricsLog())
    await agent.start()
    recs = await run_plan(agent, clock, plan, audio, oracle_at=oracle_at)
    await agent.stop()
    return agent, recs


async def test_real_batched_join_leave_equals_alone():
    # B leaves at 9, D joins at 10 and reuses its row (max_sessions 3)
    plan = {"A": (1, 0, 14), "B": (2, 3, 6), "C": (3, 5, 9), "D": (4, 10, 4)}
    audio = {k: speech(seed, n) for k, (seed, _, n) in plan.items()}
    cfg = real_cfg()
    agent, recs = await run(plan, audio, cfg, oracle_at=4)
    assert agent.components["frontend_random"] is True and agent.components["codec"] == CODEC
    for name, r in recs.items():
        _, alone = await run({name: (0, 0, plan[name][2])}, {name: audio[name]}, cfg, oracle_at=4)
        a, b = np.stack(r.audio()), np.stack(alone[name].audio())
        assert a.shape == (plan[name][2], F) and np.abs(a).max() > 0
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert r.text() == alone[name].text()
        assert r.text()  # the tiny model says something (babble)
    # the oracle reached the stepper: start id at frame 4, then one token per frame (5..8)
    fed = {name: r.meta("stats")[-1]["oracle_tokens_fed"] for name, r in recs.items()}
    assert fed == {name: max(0, min(4, n - 5)) for name, (_, _, n) in plan.items()}


async def test_unbatched_mode_equals_batched():
    plan = {"A": (1, 0, 5)}
    audio = {"A": speech(1, 5)}
    _, batched = await run(plan, audio, real_cfg())
    _, single = await run(plan, audio, real_cfg(**{"runtime.batched": False}))
    np.testing.assert_allclose(np.stack(batched["A"].audio()), np.stack(single["A"].audio()), atol=1e-5)
    # (a checkpoint with a codec of another cardinality: test_frontend_checkpoint's
    # test_the_codec_is_resolved_and_fitted_before_the_weights_are_read)


async def test_seeded_sampling_is_the_same_for_max_sessions_1_and_4():
    """frontend.seed: a sampled session's agent tokens and audio do not depend on
    runtime.max_sessions, its row or the sessions around it (was: one generator for the batch)."""
    sampled = {"frontend.temp": 1.0, "frontend.temp_text": 1.0, "frontend.seed": 7}
    plan = {"B": (2, 0, 5), "A": (1, 2, 9), "C": (3, 3, 4)}  # A joins at 2 in row 1; C after it
    audio = {k: speech(seed, n) for k, (seed, _, n) in plan.items()}
    _, four = await run(plan, audio, real_cfg(**{**sampled, "runtime.max_sessions": 4}))
    runs = {}
    for seed in (7, 8):
        cfg = real_cfg(**{**sampled, "frontend.seed": seed, "runtime.max_sessions": 1})
        _, alone = await run({"A": (0, 0, 9)}, {"A": audio["A"]}, cfg)
        runs[seed] = alone["A"]
    assert four["A"].text() == runs[7].text() and four["A"].text()
    # (this codec's random decoder barely moves with the codes: other codes differ by ~1e-4)
    np.testing.assert_allclose(np.stack(four["A"].audio()), np.stack(runs[7].audio()), atol=1e-6)
    assert runs[8].text() != runs[7].text()  # (it samples: another seed, other tokens)


def test_unseeded_frontend_uses_the_global_generator():
    from kame.runtime.frontend import load_frame_models

    factory, _ = load_frame_models(real_cfg(**{"frontend.seed": -1, "frontend.temp": 1.0}))
    st = factory(2).stepper
    assert st.seed is None and st.generator is None  # torch's global stream: nondeterministic


async def test_checkpoint_folder_runs_with_its_own_codec_and_tokenizer(tmp_path):
    import shutil

    from kame.backend.tokenizer import DEFAULT_MODEL
    from kame.codec.mimi import build_random, save_mimi
    from kame.model.loaders import load_frontend, save_frontend

    from kame.backend.tokenizer import TextTokenizer

    codec = build_random("tiny")
    small, _ = load_frontend("random:tiny", card=codec.cardinality)  # text vocabulary 1000
    save_frontend(small, tmp_path / "bad", tokenizer_name="spm.model")
    shutil.copy(DEFAULT_MODEL, tmp_path / "bad" / "spm.model")
    with pytest.raises(CheckpointError, match=r"spm\.model has 4000 pieces, more than its text vocabulary \(text_card 1000\)"):
        await run({"A": (0, 0, 4)}, {"A": speech(1, 4)}, real_cfg(**{"frontend.spec": str(tmp_path / "bad"),
                                                                    "codec.spec": "mimi:random-tiny"}))
    model, _ = load_frontend("random:tiny", card=codec.cardinality, text_card=TextTokenizer(DEFAULT_MODEL).vocab_size)
    ck = tmp_path / "ck"
    save_frontend(model, ck, mimi_name="mimi_tiny.safetensors", tokenizer_name="spm.model")
    save_mimi(codec, ck / "mimi_tiny.safetensors")
    shutil.copy(DEFAULT_MODEL, ck / "spm.model")
    cfg = real_cfg(**{"frontend.spec": str(ck), "codec.spec": "auto", "runtime.max_sessions": 1})
    agent, recs = await run({"A": (0, 0, 4)}, {"A": speech(1, 4)}, cfg)
    comps = agent.components
    assert comps["frontend_random"] is False and comps["codec"] == f"mimi:{ck / 'mimi_tiny.safetensors'}"
    assert comps["tokenizer"] == str(ck / "spm.model") and "frontend_note" not in comps
    assert len(recs["A"].audio()) == 4


def test_bad_specs_fail_before_the_frontend_loads(tmp_path, monkeypatch):
    """A bad codec / front-end spec is reported before the front-end's weights are read; a
    checkpoint whose own Mimi is missing says so (not just "the published Mimi is not cached")."""
    import huggingface_hub.constants as hc

    from kame.model import loaders
    from kame.runtime import frontend

    calls = []
    monkeypatch.setattr(loaders, "read_state", lambda *a: calls.append(a) or {})
    with pytest.raises(ConfigError, match="unknown codec spec 'nope'"):
        frontend.load_frame_models(real_cfg(**{"frontend.spec": str(tmp_path), "codec.spec": "nope"}))
    with pytest.raises(ConfigError, match="unknown random front-end 'random:huge'"):
        frontend.load_frame_models(real_cfg(**{"frontend.spec": "random:huge"}))
    assert not calls
    monkeypatch.undo()
    import shutil

    from kame.backend.tokenizer import DEFAULT_MODEL, TextTokenizer

    # (trained on Mimi codes, it needs its own tokenizer too: Moshi's when config.json names none)
    model, _ = loaders.load_frontend("random:tiny", text_card=TextTokenizer(DEFAULT_MODEL).vocab_size)
    # (Moshi's file name: the published Mimi may stand in for it, a Mimi of its own may not,
    # test_frontend_named_mimi.py)
    loaders.save_frontend(model, tmp_path / "ck", mimi_name=loaders.MIMI_NAME, tokenizer_name="spm.model")
    shutil.copy(DEFAULT_MODEL, tmp_path / "ck" / "spm.model")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # the published Mimi: not cached here
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match=r"codec.spec 'auto' for the front-end .*ck': its config.json mimi_name "
                                              r"'tokenizer-e351c8d8-checkpoint125.safetensors' was not found \(looked "
                                              r"for .*ck/tokenizer-e351c8d8-checkpoint125.safetensors\), "
                                              r"and the published Mimi .* set codec.spec") as err:
        frontend.load_frame_models(real_cfg(**{"frontend.spec": str(tmp_path / "ck"), "codec.spec": "auto"}))
    # trained on Mimi codes (it names a Mimi file): the hint is Mimi, never the embedded codec
    assert str(err.value).endswith("set codec.spec (mimi:PATH, the Mimi it was trained with)")
    assert "embedded" not in str(err.value)


async def test_int16_scaled_floats_from_one_session_leave_the_others_alone():
    """A client that sends int16 values as floats (3000.0): its audio is dropped at its own door
    with an ErrorEvent, and the batched codec step of the other sessions goes on (the codec's own
    check used to fail the whole step: "front-end step failed" in every session)."""
    from kame.runtime.base import ErrorEvent

    loud = np.full(6 * F, 3000.0, np.float32)
    agent, recs = await run({"A": (0, 0, 6), "B": (1, 0, 6)}, {"A": loud, "B": speech(1, 6)}, real_cfg())
    errs = {k: [o.message for o in r.items if isinstance(o, ErrorEvent)] for k, r in recs.items()}
    assert errs["B"] == [] and len(recs["B"].audio()) == 6
    assert len(errs["A"]) == 6 and all(m.startswith("bad audio dropped: samples reach 3000") for m in errs["A"])


def test_one_load_checks_the_frontend_spec_once(tmp_path, monkeypatch):
    from kame.model import loaders
    from kame.runtime import frontend

    from kame.backend.tokenizer import DEFAULT_MODEL, TextTokenizer
    from kame.codec.mimi import build_random

    # (CODEC's cardinality; trained-format weights need a text vocabulary the default tokenizer fits)
    model, _ = loaders.load_frontend("random:tiny", card=build_random("tiny").cardinality,
                                     text_card=TextTokenizer(DEFAULT_MODEL).vocab_size)
    ck = str(loaders.save_frontend(model, tmp_path / "ck"))
    real, calls = loaders.check_frontend_spec, []
    monkeypatch.setattr(loaders, "check_frontend_spec", lambda spec: calls.append(spec) or real(spec))
    for spec in ("random:tiny", ck):
        calls.clear()
        _, info = frontend.load_frame_models(real_cfg(**{"frontend.spec": spec}))
        assert calls == [spec] and info["frontend_random"] is (spec == "random:tiny")


def test_the_step_index_counts_from_a_new_sessions_reset():
    """FrameOut.step is the row's step index since its session joined, also for a row that served
    another session before (was: the old session's count on the new one's first step)."""
    from kame.runtime.frontend import load_frame_models

    factory, _ = load_frame_models(real_cfg())
    fm = factory(2)
    pcm, both = np.zeros((2, F), np.float32), np.ones(2, bool)
    fm.reset([0, 1])
    assert [fm.step(pcm, both).step.tolist() for _ in range(3)] == [[0, 0], [1, 1], [2, 2]]
    fm.reset([0])  # a new session on row 0
    assert [fm.step(pcm, both).step.tolist() for _ in range(2)] == [[0, 3], [1, 4]]
