"""The stepper: streamed == training forward (with the oracle), batched rows independent
(reset / pause per row; sampled with per-row seeded streams too), oracle feed semantics, sampling,
STT shape."""

import threading

import pytest
import torch

from ._ref import make_checkpoint
from kame.model.loaders import load_frontend
from kame.model.stepper import OracleFeed, Sampling, Stepper, oracle_ids, oracle_timeline, sample


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kame_ckpt")
    make_checkpoint(folder, "moshi", oracle=True, seed=3)
    m, _ = load_frontend(folder)
    with torch.no_grad():  # make the oracle matter more than the cloned init
        m.oracle_emb.weight.normal_(0, 1.0)
    return m


def _user(B, T, seed=5):
    return torch.randint(0, 100, (B, 8, T), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _session(model, user, events, steps):
    """Run the stepper `steps` steps; events[b]: row b's oracle calls (frame, "reset") /
    (frame, "append", ids), made before the step of that frame."""
    B = user.shape[0]
    st = Stepper(model, B, Sampling(greedy=True))
    text_logits, audio_logits, oracle_in, frames = [], [], [], []
    for t in range(steps):
        for b in range(B):
            for ev in events[b]:
                if ev[0] == t:
                    st.oracle.reset(b) if ev[1] == "reset" else st.oracle.append(b, ev[2])
        o = st.step(user[:, :, t])
        text_logits.append(o.text_logits)
        audio_logits.append(o.audio_logits)
        oracle_in.append(o.oracle_in)
        if o.valid.all():
            assert (o.frame == len(frames)).all()
            frames.append(torch.cat([o.text[:, None], o.audio], dim=1))
    return (torch.stack(text_logits, 1), torch.stack(audio_logits, 1), torch.stack(oracle_in, 1),
            torch.stack(frames, 2), st)


@torch.no_grad()
def test_streamed_equals_training_forward_with_oracle(model):
    """forward(codes, oracle) == the stepper, text and audio logits, when oracle[:, t] is the
    token the stepper fed at step t (oracle_timeline of the same events)."""
    B, T = 2, 20  # context is 12: also checks the ring buffer against the windowed mask
    user = _user(B, T + 1)
    first = torch.randint(4, 300, (T,), generator=torch.Generator().manual_seed(6)).tolist()
    first[8:11] = [3, 3, 3]  # some pad frames inside a prediction
    events = [
        [(0, "reset"), (0, "append", first)],  # a prediction from the first frame
        # a session start as at inference: pad until the back-end's first prediction (frame 4),
        # late tokens (skipped), a second prediction (frame 10) replacing the first's unfed ones
        [(4, "reset"), (4, "append", [11, 12, 13, 14, 15, 16]), (7, "append", [20, 21]),
         (10, "reset"), (10, "append", [30, 31, 32]), (13, "append", [40, 41]),
         (17, "append", [50, 51, 52])],
    ]
    text_logits, audio_logits, oracle_in, gen, st = _session(model, user, events, T + 1)
    assert oracle_in[1].tolist()[:T] == [3, 3, 3, 3, 300, 11, 12, 13, 14, 15, 300, 30, 31, 32, 40, 41,
                                         3, 51, 52, 3]
    assert st.oracle.stats(1).skipped == 1 and st.oracle.stats(1).superseded == 3
    oracle = torch.stack([oracle_timeline(ev, T, **oracle_ids(model.cfg)) for ev in events])
    assert torch.equal(oracle, oracle_in[:, :T])  # the pure function gives the stepper's feed
    # Training layout: the user's frame f+1 is seen with the model's frame f (moshi's convention).
    codes = torch.cat([gen, user[:, :, 1:]], dim=1)  # gen: the model's frames 0..T-1
    out = model(codes, oracle=oracle)
    assert out.text_mask.all()
    assert (out.text_logits[:, 0] - text_logits[:, :T]).abs().max() < 1e-5
    # audio codebook k (delay d) of frame f is sampled at step f + d; forward masks the last d frames
    for k, d in enumerate(model.cfg.delays[1: 1 + model.cfg.dep_q]):
        assert out.mask[:, k, :T - d].all() and not out.mask[:, k, T - d:].any()
        assert (out.logits[:, k, :T - d] - audio_logits[:, d:T, k]).abs().max() < 1e-5
    # another oracle, or none (= pad at every step), gives other text predictions
    for other in (None, oracle.roll(1, dims=1)):
        assert (model(codes, oracle=other).text_logits - out.text_logits).abs().max() > 1e-2


@torch.no_grad()
def _run_single(model, user, oracle_events, T):
    st = Stepper(model, 1, Sampling(greedy=True))
    outs = []
    for t in range(T):
        for ev in oracle_events.get(t, []):
            st.oracle.reset(0) if ev == "reset" else st.oracle.append(0, ev)
        o = st.step(user[:, :, t])
        outs.append((o.valid.clone(), o.text.clone(), o.audio.clone(), o.text_logits.clone(), o.oracle_in.clone()))
    return outs


@torch.no_grad()
def test_batched_rows_reset_and_pause_independently(model):
    T = 14
    user = _user(3, T, seed=7)
    st = Stepper(model, 3, Sampling(greedy=True))
    got = {0: [], 1: [], 2: []}
    for t in range(T):
        if t == 2:
            st.oracle.reset(0)
            st.oracle.append(0, [11, 12, 13])
        if t == 5:
            st.reset([1])  # a new session joins row 1
        if t == 3:
            st.pause([2])
        if t == 7:
            st.resume([2])
        o = st.step(user[:, :, t])
        assert not o.text_logits.isnan().any()  # paused rows are computed harmlessly
        for b in range(3):
            got[b].append((o.valid[b], o.text[b], o.audio[b], o.text_logits[b], o.oracle_in[b]))
        if 3 <= t < 7:
            assert not o.valid[2]
    # row 0: one session with an oracle prediction at frame 2
    ref0 = _run_single(model, user[0:1], {2: ["reset", [11, 12, 13]]}, T)
    # row 1: its session starts at step 5
    ref1 = _run_single(model, user[1:2, :, 5:], {}, T - 5)
    # row 2: paused for steps 3..6 (its inputs at those steps are never seen)
    keep = [t for t in range(T) if not 3 <= t < 7]
    ref2 = _run_single(model, user[2:3, :, keep], {}, len(keep))
    for b, ref, steps in ((0, ref0, range(T)), (1, ref1, range(5, T)), (2, ref2, keep)):
        for r, t in zip(ref, steps):
            v, text, audio, lg, orc = got[b][t]
            assert bool(v) == bool(r[0][0])
            assert int(orc) == int(r[4][0])
            assert torch.allclose(lg, r[3][0], atol=1e-5)
            if v:
                assert int(text) == int(r[1][0]) and torch.equal(audio, r[2][0])


def test_oracle_feed_semantics():
    f = OracleFeed(2, start_id=32000, pad_id=3)

    def step(frames, run=(True, True)):
        f._apply(list(frames))
        return f._next(list(frames), list(run))

    assert step([0, 0]) == [3, 3]  # no prediction yet: pad
    f.reset(0)
    f.append(0, [10, 11])
    assert step([1, 1]) == [32000, 3]  # start id at the current frame
    assert step([2, 2]) == [10, 3]
    assert step([3, 3])[0] == 11
    assert step([4, 4])[0] == 3  # exhausted: pad
    # A late token: reset at frame 5, the tokens arrive after frames 6 and 7 passed.
    f.reset(1)
    assert step([5, 5]) == [3, 32000]
    assert step([6, 6])[1] == 3
    assert step([7, 7])[1] == 3
    f.append(1, [20, 21, 22, 23])  # 20 was for frame 6, 21 for 7: skipped
    assert [step([t, t])[1] for t in (8, 9, 10)] == [22, 23, 3]
    assert f.stats(1).skipped == 2 and f.stats(1).fed == 3
    # Newest prediction wins; unfed tokens of the old one are counted as superseded.
    f.reset(0)
    f.append(0, list(range(100, 110)))
    assert step([11, 11])[0] == 32000
    assert step([12, 12])[0] == 100
    f.reset(0)
    f.append(0, [200])
    assert step([13, 13])[0] == 32000 and step([14, 14])[0] == 200
    s = f.stats(0)
    assert s.superseded == 9 and s.predictions == 3 and s.skipped == 0
    # A paused row does not consume its oracle (nor count it).
    f.reset(1)
    f.append(1, [30])
    before = f.stats(1)
    assert step([15, 15], run=(True, False))[1] == 32000
    assert f.stats(1).fed == before.fed and f.stats(1).pad_frames == before.pad_frames
    assert step([15, 15], run=(True, True))[1] == 32000
    assert step([16, 16])[1] == 30
    assert f.stats(1).fed == before.fed + 2
    # An append with no prediction open starts one (start id first); clear forgets everything.
    g = OracleFeed(1, start_id=32000, pad_id=3)
    g.append(0, [40, 41])
    g._apply([4])
    assert [g._next([t], [True])[0] for t in (4, 5, 6, 7)] == [32000, 40, 41, 3]
    g.clear(0)
    g._apply([8])
    assert g._next([8], [True]) == [3] and g.stats(0).predictions == 0
    # Ids outside the vocabulary raise at call time (a bad back-end never breaks a step).
    with pytest.raises(ValueError, match=r"32001.*\[0, 32001\)"):
        g.append(0, [5, 32001])
    with pytest.raises(ValueError, match="-1"):
        g.append(0, [-1])
    with pytest.raises(IndexError):
        g.stats(1)


def test_oracle_feed_thread_safe(model):
    st = Stepper(model, 2, Sampling(greedy=True))
    n_tokens = 200
    st.oracle.reset(0)

    def producer():
        for i in range(n_tokens):
            st.oracle.append(0, [4 + i % 50])

    th = threading.Thread(target=producer)
    th.start()
    for _ in range(30):
        st.step(_user(2, 1)[:, :, 0])
    th.join()
    s = st.oracle.stats(0)
    rows = st.oracle._rows[0]
    assert len(rows.tokens) == n_tokens + 1  # nothing lost
    frames = int(st.state.offsets[0])
    assert s.fed + s.skipped + s.pad_frames >= frames - 1
    assert s.fed + s.skipped <= n_tokens + 1


def test_sampling():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=g)
    assert torch.equal(sample(logits, 0.7, 25, greedy=True), logits.argmax(-1))
    assert torch.equal(sample(logits, 0.0, 25, greedy=False), logits.argmax(-1))
    assert torch.equal(sample(logits, 0.7, 1, False, g), logits.argmax(-1))
    top = logits.topk(5, dim=-1).indices
    for _ in range(20):
        s = sample(logits, 1.0, 5, False, g)
        assert (top == s[:, None]).any(-1).all()
    a = sample(logits, 1.0, 50, False, torch.Generator().manual_seed(1))
    b = sample(logits, 1.0, 50, False, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    d = Sampling()
    assert (d.temp, d.top_k, d.temp_text, d.top_k_text) == (0.8, 250, 0.7, 25)


@torch.no_grad()
def test_a_tiny_temperature_samples_the_greedy_token():
    """A valid temperature of 1e-40 is near-greedy: the best token (was: logits / temp overflowed to
    inf, the softmax was NaN, and the token was 0, or an arbitrary one after a top-k)."""
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(2)) * 30
    logits[:, 0] = -100  # (token 0 is nobody's best)
    for top_k in (0, 5):
        got = sample(logits, 1e-40, top_k, False, torch.Generator().manual_seed(0))
        assert torch.equal(got, logits.argmax(-1)), top_k


@torch.no_grad()
def test_sampled_stepping_reproducible(model):
    runs = []
    for _ in range(2):
        st = Stepper(model, 2, Sampling(), generator=torch.Generator().manual_seed(4))
        runs.append(torch.stack([st.step(_user(2, 1, seed=t)[:, :, 0]).audio for t in range(6)]))
    assert torch.equal(runs[0], runs[1])


def _tokens(out, row):
    return (int(out.text[row]), tuple(out.audio[row].tolist())) if out.valid[row] else None


@torch.no_grad()
def test_seeded_rows_sample_as_alone(model):
    """seed=: a row's sampled tokens are the same alone and as row 1 of 3 with other sessions
    joining, pausing and leaving around it, and with its own pause (was: one [B, V] noise tensor
    per step from one shared generator, so they depended on the batch size and the row)."""
    T, samp = 12, Sampling(temp=1.0, temp_text=1.0)
    user = _user(3, T, seed=8)
    st = Stepper(model, 3, samp, active=False, seed=5)
    st.reset([1])
    got = []
    for t in range(T):
        if t == 2:
            st.reset([0])  # another session joins
        if t == 4:
            st.pause([1])
        if t == 6:
            st.resume([1])
            st.reset([2])
        if t == 9:
            st.pause([0])  # and leaves
        got.append(_tokens(st.step(user[:, :, t]), 1))
    keep = [t for t in range(T) if not 4 <= t < 6]  # row 1's own steps
    alone = Stepper(model, 1, samp, seed=5)
    ref = [_tokens(alone.step(user[1:2, :, t]), 0) for t in keep]
    assert [got[t] for t in keep] == ref and sum(r is not None for r in ref) >= 6
    other = Stepper(model, 1, samp, seed=6)  # (the samples are random: another seed, other tokens)
    assert [_tokens(other.step(user[1:2, :, t]), 0) for t in keep] != ref
    high = Stepper(model, 1, samp, seed=2**32 + 5)  # (all 64 bits count: was the stream of seed 5)
    assert [_tokens(high.step(user[1:2, :, t]), 0) for t in keep] != ref


@torch.no_grad()
def test_sampling_set_during_a_seeded_step_waits_for_the_next(model, monkeypatch):
    """A Sampling field set while a step runs (another thread; here between the text and the
    audio samples) applies from the next step: the step completes (was: the per-row noise, sized
    before the text sample, did not fit the audio's new top-k: RuntimeError half-way, the model's
    cache moved and the offsets not)."""
    st = Stepper(model, 2, Sampling(top_k=4), seed=1)  # (4 < the model's card: top-k 0 draws more)
    user = _user(2, 2, seed=3)
    generate = model.depformer_generate

    def racing(*a, **k):
        st.sampling.top_k = 0
        return generate(*a, **k)

    monkeypatch.setattr(model, "depformer_generate", racing)
    st.step(user[:, :, 0])
    monkeypatch.setattr(model, "depformer_generate", generate)
    assert st.state.offsets.tolist() == [1, 1] and st.sampling.top_k == 0
    st.step(user[:, :, 1])  # (the new top-k: noise of the vocabulary's size)


@torch.no_grad()
def test_seeded_session_joining_later_samples_the_same(model):
    """seed=: a session joining at step 5 samples, on its own steps, what it samples joining at
    step 0 (its row's stream is seeded anew when it joins; was: the shared stream went on)."""
    T, samp = 10, Sampling(temp=1.0, temp_text=1.0)
    user = _user(2, T, seed=9)
    runs = []
    for join in (0, 5):
        st = Stepper(model, 2, samp, active=False, seed=7)
        st.reset([0])  # a session in row 0 from step 0
        out = []
        for t in range(join + T):
            if t == join:
                st.reset([1])
            o = st.step(user[:, :, max(t - join, 0)])
            if t >= join:
                out.append(_tokens(o, 1))
        runs.append(out)
    assert runs[0] == runs[1] and sum(r is not None for r in runs[0]) >= 6


@torch.no_grad()
def test_seed_and_shared_generator_forms(model):
    user = _user(2, 3)
    a, b = (Stepper(model, 2, Sampling(), seed=3) for _ in range(2))
    assert a.seed == 3 and a.generator is None
    assert all(torch.equal(a.step(user[:, :, t]).sampled_text, b.step(user[:, :, t]).sampled_text) for t in range(3))
    shared = Stepper(model, 2, Sampling(), generator=torch.Generator().manual_seed(3))  # still one shared stream
    assert shared.seed is None and shared.step(user[:, :, 0]).valid.shape == (2,)
    with pytest.raises(ValueError, match="seed.*generator.*not both"):
        Stepper(model, 2, seed=3, generator=torch.Generator())
    with pytest.raises(ValueError, match="no shared generator"):
        a.generator = torch.Generator()
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        Stepper(model, 2, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        Stepper(model, 2, seed=1.5)


@torch.no_grad()
def test_stt_shape_and_errors():
    model, info = load_frontend("random:stt-tiny")
    st = Stepper(model, 2, Sampling(greedy=True))
    out = st.step(torch.zeros(2, 8, dtype=torch.long))
    assert out.audio.shape == (2, 0) and out.valid.all()  # no delays: valid at once
    assert len(out.extra_heads) == 2 and out.extra_heads[0].shape == (2, 6)
    assert torch.allclose(out.extra_heads[0].sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="user_codes"):
        st.step(torch.zeros(2, 7, dtype=torch.long))


def test_bad_rows_raise_at_call_time(model):
    st = Stepper(model, 2)
    with pytest.raises(IndexError):
        st.reset([2])
    with pytest.raises(IndexError):
        st.pause([-1])
    with pytest.raises(IndexError):
        st.oracle.append(5, [1])
    assert st.frames == [0, 0] and st.active == [True, True]


@torch.no_grad()
def test_bad_step_inputs_leave_the_stepper_unchanged(model):
    st = Stepper(model, 2, Sampling(greedy=True))
    st.step(_user(2, 1)[:, :, 0])
    st.pause([1])  # queued: must not be applied by a rejected step
    with pytest.raises(ValueError, match=r"\[0, 100\).*got \[0, 100\]|\[0, 100\).*101"):
        st.step(torch.full((2, 8), 101))
    with pytest.raises(ValueError, match="integer codes"):
        st.step(torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"\(2, 8\)"):
        st.step(torch.zeros(3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="user_codes"):
        st.step(None)
    with pytest.raises(ValueError, match="oracle token"):
        st.oracle.append(0, [300 + 1])  # tiny text_card 300: ids 0..300 (300 = start id)
    assert st.frames == [1, 1] and st.active == [True, True]
    o = st.step(_user(2, 1)[:, :, 0])  # the session goes on; the queued pause applies now
    assert st.frames == [2, 1] and o.valid.tolist() == [True, False]


@torch.no_grad()
def test_row_reset_clears_its_oracle_in_the_same_step(model):
    st = Stepper(model, 2, Sampling(greedy=True))
    st.oracle.reset(0)  # a prediction starting at frame 0: start id at frame 0
    st.oracle.append(0, [50, 51, 52])
    for _ in range(2):
        st.step(_user(2, 1)[:, :, 0])
    st.reset([0])  # new session in row 0 (frame 0 again): the old prediction must not leak into it
    o = st.step(_user(2, 1)[:, :, 0])
    assert int(o.oracle_in[0]) == 3 and st.oracle.stats(0).predictions == 0
    st.reset([1])
    st.oracle.reset(1)  # the new session's first prediction, queued after the reset: kept
    st.oracle.append(1, [60])
    outs = [int(st.step(_user(2, 1)[:, :, 0]).oracle_in[1]) for _ in range(3)]
    assert outs == [300, 60, 3]


@torch.no_grad()
def test_slots_start_paused(model):
    st = Stepper(model, 3, Sampling(greedy=True), active=False)
    o = st.step(_user(3, 1)[:, :, 0])
    assert not o.valid.any() and st.frames == [0, 0, 0]
    st.reset([1])
    for _ in range(3):
        o = st.step(_user(3, 1)[:, :, 0])
    assert o.valid.tolist() == [False, True, False] and st.frames == [0, 3, 0]
