"""kame.train.batching's oracle augmentation (KAME's skips and shifts, the true replies it keeps,
jitter, a slow LLM's stream, the hint-only curriculum), the oracle-echo curriculum and input
dropouts, on events and batches made by hand."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from kame.errors import ConfigError
from kame.model.config import preset
from kame.train.batching import augment_oracle
from kame.train.finetune import TrainConfig


# --- the oracle augmentation ---------------------------------------------------------------------
EVENTS = [(2, "reset"), (2, "append", [5, 6]), (6, "reset"), (6, "append", [7]), (7, "append", [8]),
          (10, "reset"), (10, "append", [9]), (20, "reset"), (20, "append", [10, 11])]


def _prediction_of(events):
    """Each event's prediction: the index of the reset it follows (-1 before any)."""
    out, p = [], -1
    for i, e in enumerate(events):
        p = i if e[1] == "reset" else p
        out.append(p)
    return out


def test_augmentation_never_drops_the_last_prediction_and_is_seeded():
    tcfg = TrainConfig(skip_prob=(0.7, 0.7), shift_prob=0.5)
    seen_shifts, seen_counts = set(), set()
    pred = _prediction_of(EVENTS)
    for seed in range(300):
        ev = augment_oracle(EVENTS, np.random.default_rng([seed, 0, 0]), tcfg)
        assert ev == augment_oracle(EVENTS, np.random.default_rng([seed, 0, 0]), tcfg)  # seeded
        assert [e[1:] for e in ev[-2:]] == [("reset",), ("append", [10, 11])]  # the last prediction, whole
        shift = ev[-1][0] - 20
        assert -15 <= shift <= 10
        seen_shifts.add(shift)
        seen_counts.add(sum(e[1] == "reset" for e in ev))
        # skipped predictions go whole: each kept event is an original one, shifted, and each kept
        # append's own reset was kept (events before frame 0 aside)
        kept = [[(f + shift, *rest) for f, *rest in EVENTS].index(e) for e in ev]
        for i in kept:
            r = pred[i]
            assert r == -1 or r in kept or EVENTS[r][0] + shift < 0, (seed, ev)
            if r != -1 and r in kept:  # and a kept prediction keeps all its appends
                assert all(j in kept for j, q in enumerate(pred) if q == r and EVENTS[j][0] + shift >= 0)
    assert {1, 2, 3, 4} <= seen_counts and 0 in seen_shifts and 10 in seen_shifts and -15 in seen_shifts
    everything = augment_oracle(EVENTS, np.random.default_rng(1), TrainConfig(skip_prob=(0.0, 0.0), shift_prob=0.0))
    assert everything == EVENTS
    only_last = augment_oracle(EVENTS, np.random.default_rng(1), TrainConfig(skip_prob=(1.0, 1.0), shift_prob=0.0))
    assert only_last == EVENTS[-2:]


def test_a_true_reply_marked_use_hint_is_never_skipped():
    """KAME's randomized guidance: a prediction whose reset says use_hint (the true reply) is kept
    like the last one; the others are still skipped; the draws are those of an unprotected run."""
    from kame.train.batching import protected_events
    from kame.train.data import OracleEvent

    oracle = [OracleEvent(f, "reset", use_hint=(f == 6)) if op == "reset" else OracleEvent(f, "append", list(rest[0]))
              for f, op, *rest in EVENTS]
    protected = protected_events(oracle)
    assert protected == {2}  # the reset at frame 6, event 2
    none = TrainConfig(skip_prob=(1.0, 1.0), shift_prob=0.0)
    assert augment_oracle(EVENTS, np.random.default_rng(1), none, protected) == EVENTS[2:5] + EVENTS[-2:]
    assert augment_oracle(EVENTS, np.random.default_rng(1), none) == EVENTS[-2:]
    tcfg = TrainConfig(skip_prob=(0.5, 0.5))
    counts = set()
    for seed in range(50):
        ev = augment_oracle(EVENTS, np.random.default_rng([seed, 0, 0]), tcfg, protected)
        plain = augment_oracle(EVENTS, np.random.default_rng([seed, 0, 0]), tcfg)
        shift = ev[-1][0] - 20
        assert (6 + shift, "reset") in ev or 6 + shift < 0
        assert all(e in ev for e in plain)  # the same draws: protecting one only adds it back
        counts.add(sum(e[1] == "reset" for e in ev))
    assert {2, 3, 4} <= counts


def test_hint_only_curriculum_shows_only_the_true_replies_then_fewer_and_fewer():
    from kame.model.stepper import oracle_ids, oracle_timeline
    from kame.train.batching import Example, batches, hint_only_share, true_replies

    # two drawn replies then the true one (event 4, protected), as --llm random makes them
    events = [(3, "reset"), (3, "append", [11, 12]), (6, "reset"), (6, "append", [13]), (9, "reset"),
              (9, "append", [20, 21, 22])]
    assert true_replies(events, {4}) == (events[4:], frozenset({0}))
    assert true_replies(events, {0, 4}) == (events[:2] + events[4:], frozenset({0, 2}))
    tc = TrainConfig(hint_only=(10, 20))
    assert [hint_only_share(s, tc) for s in (0, 9, 10, 15, 19, 20, 50)] == [1, 1, 1, 0.5, pytest.approx(0.1), 0, 0]
    assert hint_only_share(0, TrainConfig()) == 0  # off by default
    cfg = preset("tiny").replace(text_card=4000)
    T = 16
    full = oracle_timeline(events, T, **oracle_ids(cfg))
    ex = [Example(f"d{i}", torch.zeros(cfg.num_codebooks, T, dtype=torch.long), full, events, frozenset({4}))
          for i in range(4)]
    hint = oracle_timeline(events[4:], T, **oracle_ids(cfg))
    tcfg = TrainConfig(batch_size=2, window_frames=T, oracle_aug=False, hint_only=(3, 9))
    feed = batches(ex, cfg, tcfg)
    seen = [[("hint" if torch.equal(o, hint) else "full" if torch.equal(o, full) else "?") for o in next(feed)[1]]
            for _ in range(12)]
    assert all(w == ["hint", "hint"] for w in seen[:3]) and all(w == ["full", "full"] for w in seen[9:])
    middle = [x for w in seen[3:9] for x in w]
    assert "hint" in middle and "full" in middle and "?" not in middle
    straight = [o for _, (_, o) in zip(range(8), batches(ex, cfg, tcfg))]
    resumed = batches(ex, cfg, tcfg, skip=5)  # a resumed run's windows are the straight run's
    assert all(torch.equal(next(resumed)[1], o) for o in straight[5:])
    # a dialogue with no true reply marked keeps all its predictions; with the augmentation on, the
    # true reply alone is shifted as KAME's (shift and jitter still apply)
    plain = Example("p", ex[0].codes, full, events)
    assert torch.equal(plain.oracle(cfg, tcfg, 0, 0, hint_only=True), full)
    aug = TrainConfig(skip_prob=(0.0, 0.0))
    shifted = ex[0].oracle(cfg, aug, 0, 0, hint_only=True)
    starts = (shifted == cfg.text_card).nonzero().flatten().tolist()
    assert len(starts) == 1 and starts[0] != 9
    with pytest.raises(ConfigError, match="--hint-only A B must be steps"):
        TrainConfig(hint_only=(5, 2)).check()


def test_jitter_delays_each_prediction_whole_and_keeps_the_frames_in_order():
    assert TrainConfig().jitter_frames == 0  # off, as in KAME's defaults
    base = TrainConfig(skip_prob=(0.0, 0.0), shift_prob=0.0)
    assert augment_oracle(EVENTS, np.random.default_rng(0), base) == EVENTS
    tcfg = TrainConfig(skip_prob=(0.0, 0.0), shift_prob=0.0, jitter_frames=4)
    pred = _prediction_of(EVENTS)
    delays = set()
    for seed in range(40):
        ev = augment_oracle(EVENTS, np.random.default_rng([seed, 0, 0]), tcfg)
        assert [e[1:] for e in ev] == [e[1:] for e in EVENTS]  # nothing skipped, nothing reordered
        frames = [e[0] for e in ev]
        assert frames == sorted(frames)
        for i, (e, orig) in enumerate(zip(ev, EVENTS)):
            r = pred[i]
            assert e[0] - orig[0] == ev[r][0] - EVENTS[r][0] or e[0] == ev[i - 1][0]  # a prediction moves whole
            assert 0 <= e[0] - orig[0] <= 4 or e[0] == ev[i - 1][0]
            delays.add(e[0] - orig[0])
    assert delays == {0, 1, 2, 3, 4}
    # two predictions a frame apart: the later never arrives before the earlier
    close = [(5, "reset"), (5, "append", [1]), (6, "reset"), (6, "append", [2])]
    outs = [augment_oracle(close, np.random.default_rng([s, 0, 0]), tcfg) for s in range(40)]
    assert all(o[2][0] >= o[0][0] for o in outs) and any(o[2][0] == o[0][0] for o in outs)
    with pytest.raises(ConfigError, match=r"--jitter \(jitter_frames\) must be an int >= 0"):
        TrainConfig(jitter_frames=-1).check()


def test_augmentation_shifts_every_sample_by_default_and_drops_what_moves_before_frame_0():
    assert TrainConfig().shift_prob == 1.0  # KAME's
    shifts = [augment_oracle(EVENTS, np.random.default_rng([s, 0, 0]), TrainConfig(skip_prob=(0.0, 0.0)))[-1][0] - 20
              for s in range(200)]
    assert 0 not in shifts
    left = TrainConfig(skip_prob=(0.0, 0.0), shift_left=(7, 7), shift_right=(7, 7))
    for s in range(20):
        ev = augment_oracle(EVENTS, np.random.default_rng([s, 0, 0]), left)
        if ev[-1][0] == 13:  # moved left 7: the events at frames 2 and 6 are dropped, not put at 0 (7 is at 0)
            assert ev == [(0, "append", [8]), (3, "reset"), (3, "append", [9]), (13, "reset"), (13, "append", [10, 11])]
            break
    else:
        raise AssertionError("no left shift in 20 seeds")
    # all of it before frame 0: the last prediction stays, at 0
    early = [(2, "reset"), (2, "append", [5]), (4, "reset"), (5, "append", [6])]
    far = TrainConfig(skip_prob=(0.0, 0.0), shift_left=(10, 10), shift_right=(10, 10))
    outs = [augment_oracle(early, np.random.default_rng([s, 0, 0]), far) for s in range(20)]
    assert [(0, "reset"), (0, "append", [6])] in outs


# --- input dropouts ---------------------------------------------------------------------------------
def test_input_dropouts_change_what_the_model_reads_never_the_targets():
    from kame.train.batching import input_dropouts

    cfg = preset("tiny").replace(text_card=4000)
    pad = cfg.existing_text_padding_id
    codes = torch.randint(0, 900, (6, cfg.num_codebooks, 40))
    codes[:, 0, ::3] = pad
    codes[:, :, -4:] = -1  # collate's padding
    keep = codes.clone()
    assert input_dropouts(codes, cfg, TrainConfig(), 0) is None  # KAME's default: off
    every = input_dropouts(codes, cfg, TrainConfig(text_token_dropout=1.0), 0)
    assert torch.equal(codes, keep)  # a copy: the targets stay
    words = (codes[:, 0] != pad) & (codes[:, 0] != -1)
    assert (every[:, 0][words] == pad).all() and torch.equal(every[:, 0][~words], codes[:, 0][~words])
    assert torch.equal(every[:, 1:], codes[:, 1:])
    text = input_dropouts(codes, cfg, TrainConfig(text_emb_dropout=1.0), 0)
    assert (text[:, 0] == -1).all() and torch.equal(text[:, 1:], codes[:, 1:])
    sem = input_dropouts(codes, cfg, TrainConfig(semantic_emb_dropout=1.0), 0)
    assert (sem[:, 1] == -1).all() and torch.equal(sem[:, [0, *range(2, cfg.num_codebooks)]],
                                                   codes[:, [0, *range(2, cfg.num_codebooks)]])
    half = TrainConfig(text_token_dropout=0.5, text_emb_dropout=0.5, semantic_emb_dropout=0.5)
    a = input_dropouts(codes, cfg, half, 7)
    assert torch.equal(a, input_dropouts(codes, cfg, half, 7))  # drawn from (seed, step, place in the batch)
    assert not torch.equal(a, input_dropouts(codes, cfg, half, 8))
    # per window of the global batch: the same window reads the same on 2 processes x 3 as on 1 x 6
    assert torch.equal(input_dropouts(codes[3:], cfg, half, 7, first=3), a[3:])
    assert not torch.equal(input_dropouts(codes[:3], cfg, half, 7, first=3), a[:3])
    # a short window padded in a batch with a longer one reads as it does alone (collate pads with -1)
    short = codes[3:4, :, :20]
    for step in range(30):
        alone = input_dropouts(short, cfg, half, step, first=3)
        padded = input_dropouts(torch.cat([short, torch.full((1, cfg.num_codebooks, 20), -1)], 2), cfg, half, step,
                                first=3)
        assert torch.equal(padded[:, :, :20], alone), step
    rows = (a[:, 1] == -1).all(-1)  # whole windows, some not all
    assert 0 < int(rows.sum()) < 6 and ((a[:, 1] == -1) == rows[:, None] | (codes[:, 1] == -1)).all()
    with pytest.raises(ConfigError, match="--text-token-dropout must be in"):
        TrainConfig(text_token_dropout=1.5).check()


def test_oracle_echo_gives_the_agents_words_at_the_frames_it_says_them_then_slides_them_to_the_oracles():
    from kame.model.stepper import oracle_ids, oracle_timeline
    from kame.train.batching import Example, _cut, _echo_alpha, batches, echo_oracle

    cfg = preset("tiny").replace(text_card=4000)
    P, E, S, T = cfg.existing_text_padding_id, cfg.existing_text_end_padding_id, cfg.text_card, 18
    text = torch.full((T,), P)
    text[2] = 99  # said before any reset: echoes nothing
    text[5], text[6], text[9], text[10], text[11] = E, 101, E, 102, 103  # "101" then a word of two tokens
    text[14], text[15] = E, 104  # the second reply's
    events = [(4, "reset"), (4, "append", [101, 102, 103]), (13, "reset"), (13, "append", [104])]
    oracle = oracle_timeline(events, T, **oracle_ids(cfg))

    def where(o):  # {token: frame} of what the oracle gives, and the frames of its start ids
        return {int(o[f]): f for f in range(T) if int(o[f]) not in (P, S)}, (o == S).nonzero().flatten().tolist()

    assert where(echo_oracle(text, oracle, 0.0, cfg)) == ({101: 6, 102: 10, 103: 11, 104: 15}, [4, 13])  # as said
    assert where(echo_oracle(text, oracle, 1.0, cfg)) == ({101: 5, 102: 6, 103: 7, 104: 14}, [4, 13])  # as streamed
    assert where(echo_oracle(text, oracle, 0.5, cfg))[0] == {101: 6, 102: 8, 103: 9, 104: 14}  # (round half even)
    assert where(echo_oracle(text, oracle, 1.0, cfg))[0] == where(oracle)[0]  # (one a frame, as the feed streams)

    # the curriculum: windows of steps before A echo at alpha 0, then at (step - A) / (B - A) +- 0.1,
    # from step B on the oracle is the recorded one (augmented: before B the recorded resets are kept)
    codes = torch.zeros(cfg.num_codebooks, T, dtype=torch.long)
    codes[0] = text
    ex = [Example(f"d{i}", codes, oracle, events) for i in range(2)]
    tcfg = TrainConfig(batch_size=2, window_frames=T, oracle_aug=False, oracle_echo=(2, 6))
    feed = batches(ex, cfg, tcfg)
    seen = [next(feed)[1] for _ in range(8)]
    aligned = echo_oracle(text, oracle, 0.0, cfg)
    assert all(torch.equal(o, aligned) for w in seen[:2] for o in w)
    assert all(torch.equal(o, oracle) for w in seen[6:] for o in w)
    for step in range(2, 6):
        alphas = [_echo_alpha(step, k, tcfg) for k in range(2)]
        assert all(abs(a - (step - 2) / 4) <= 0.1 + 1e-9 for a in alphas)
        assert all(torch.equal(o, echo_oracle(text, oracle, a, cfg)) for o, a in zip(seen[step], alphas))
    skipping = TrainConfig(batch_size=2, window_frames=T, skip_prob=(1.0, 1.0), shift_prob=1.0, oracle_echo=(9, 9))
    assert all(torch.equal(o, aligned) for o in next(batches(ex, cfg, skipping))[1])  # (not the augmented resets)
    # a window cut in the middle of a reply keeps its words (the dialogue is echoed, then cut)
    window = _cut(ex, cfg, tcfg, 0, (0, 8, 10), echo=0.0)[1]  # frames 8-17: its first reset is at 13
    assert torch.equal(window, aligned[8:]) and int(window[2]) == 102
    assert all(torch.equal(o, oracle) for o in next(batches(ex, cfg, TrainConfig(batch_size=2, window_frames=T,
                                                                                  oracle_aug=False)))[1])  # off
    with pytest.raises(ConfigError, match="--oracle-echo A B must be steps"):
        TrainConfig(oracle_echo=(5, 2)).check()
    from kame.backend.tokenizer import default_tokenizer
    from kame.train.finetune import check_fit

    with pytest.raises(ConfigError, match="--oracle-echo teaches a front-end to read its oracle stream, and this one"):
        check_fit(cfg.replace(oracle=False), default_tokenizer(), TrainConfig(oracle_echo=(1, 2), window_frames=T))
    check_fit(cfg, default_tokenizer(), TrainConfig(oracle_echo=(1, 2), window_frames=T))


# --- a slow LLM's stream (slow_prob, slow_rate) --------------------------------------------------
# a reply whose every word is one id of the default tokenizer: an LLM sending a word a piece at r pieces/s
# sends r oracle ids/s (slow_rate's unit: oracle-vocabulary tokens/s, kame's llm_tokens_per_s)
ONE_ID_WORDS = "I think the answer is that it can be done in a day or two and then we will see how it".split()


def _live(rate: float, reset_frame: int = 13) -> list[tuple]:
    """The timeline events the live back-end (kame.backend.oracle's OracleProducer, on a FakeClock)
    sends for ONE_ID_WORDS from an LLM streaming a word a piece at ``rate`` pieces/s, its reset (with
    the first word, which goes out as the second piece begins) at the start of frame
    ``reset_frame``; an event is fed at the first frame at or after it (ceil)."""
    import asyncio

    from kame.backend.oracle import OracleProducer
    from kame.backend.policy import OraclePolicy
    from kame.backend.tokenizer import default_tokenizer
    from kame.backend.types import FRAME_S, OracleAppend, OracleReset
    from kame.runtime.clock import FakeClock

    from ..backend.scripted_llm import ScriptedLLM
    from ..backend.test_oracle_routed import said, settle

    async def run():
        clock, events, llm = FakeClock(), [], ScriptedLLM()
        producer = OracleProducer(llm, default_tokenizer(), OraclePolicy(), clock=clock, on_event=events.append)
        await producer.on_transcript(said("what is the capital", 0.0, final=False))
        await settle()
        base = clock.now()  # (frame 0's start)
        t0 = base + reset_frame * FRAME_S - 1 / rate  # (piece 1 at the frame's start)
        pieces = [ONE_ID_WORDS[0]] + [" " + w for w in ONE_ID_WORDS[1:]]
        for k, piece in enumerate(pieces):
            clock.set(t0 + k / rate)
            llm.calls[0].send(piece)
            await settle()
        clock.set(t0 + len(pieces) / rate)  # (the reply's end: its last word goes out)
        llm.calls[0].end()
        await settle()
        await producer.aclose()
        frame = lambda t: math.ceil(round((t - base) / FRAME_S, 6))  # noqa: E731
        return [(frame(e.t), "reset") if isinstance(e, OracleReset) else (frame(e.t), "append", list(e.token_ids))
                for e in events if isinstance(e, (OracleReset, OracleAppend))]

    return asyncio.run(run())


def test_a_slow_llm_stream_drops_the_tokens_the_live_feed_drops():
    """A prediction written whole (kame data synth's) re-timed as from an LLM of r tokens/s: the
    oracle training sees is the one the live feed gives, the live back-end run on a FakeClock
    (OracleProducer; oracle_timeline's rule skips a token that comes after its frame, token i at
    reset + 1 + i), not every token. (Was: compared with a copy of streamed's own formula.)"""
    from kame.backend.tokenizer import default_tokenizer
    from kame.model.stepper import oracle_timeline

    ids = default_tokenizer().encode(" ".join(ONE_ID_WORDS))
    assert len(ids) == len(ONE_ID_WORDS)
    whole = [(13, "reset"), (13, "append", ids)]
    ids_of = dict(start_id=30000, pad_id=3, vocab=40000)
    pad = ids_of["pad_id"]

    def slow(rate, events=whole, seed=0):
        tcfg = TrainConfig(skip_prob=(0.0, 0.0), shift_prob=0.0, slow_prob=1.0, slow_rate=(rate, rate)).check()
        return augment_oracle(events, np.random.default_rng([seed, 0, 0]), tcfg)

    n = len(ids)
    for rate in (2.0, 5.0, 7.0, 10.0, 12.5, 25.0):
        live = _live(rate)
        assert [i for ev in live if ev[1] == "append" for i in ev[2]] == ids and live[0] == (13, "reset"), live
        assert torch.equal(oracle_timeline(slow(rate), 60, **ids_of), oracle_timeline(live, 60, **ids_of)), rate
    # at 5 tokens/s token 1 arrives at frame 16, after its frame 15: only the first token is fed
    assert oracle_timeline(slow(5.0), 60, **ids_of).tolist() == [pad] * 13 + [30000, ids[0]] + [pad] * 45
    # an LLM as fast as the feed (12.5 tokens/s) or faster: every token fed, as the data was
    assert oracle_timeline(slow(12.5), 60, **ids_of).tolist() == [pad] * 13 + [30000] + ids + [pad] * (46 - n)
    assert slow(25.0)[:4] == [(13, "reset"), (13, "append", ids[:1]), (14, "append", ids[1:3]),
                              (15, "append", ids[3:5])]
    assert torch.equal(oracle_timeline(slow(25.0), 60, **ids_of), oracle_timeline(whole, 60, **ids_of))
    # a prediction's tokens stop at the next one's reset (the back-end sends only the newest prediction's)
    first, second = [(5, "reset"), (5, "append", ids[:6])], [(9, "reset"), (9, "append", [200, 201, 202, 203])]
    assert slow(5.0, first + second) == [ev for ev in slow(5.0, first) if ev[0] < 9] + slow(5.0, second)
    # a recorded stream already slower than r keeps its own, later, arrivals
    recorded = [(3, "reset"), (3, "append", [1]), (10, "append", [2, 3])]
    assert slow(12.5, recorded) == recorded
    assert slow(5.0, recorded) == [(3, "reset"), (3, "append", [1]), (10, "append", [2, 3])]
    # then the shift moves the slow stream whole; skips still go whole
    shifted = TrainConfig(skip_prob=(0.0, 0.0), shift_right=(4, 4), shift_left=(4, 4), slow_prob=1.0,
                          slow_rate=(5.0, 5.0))
    for seed in range(10):
        ev = augment_oracle(whole, np.random.default_rng([seed, 0, 0]), shifted)
        s = ev[0][0] - 13
        assert abs(s) == 4 and ev == [(f + s, *rest) for f, *rest in slow(5.0)]
    # through a training example's oracle (Example.oracle: augmented, then oracle_timeline)
    from kame.model.stepper import oracle_ids
    from kame.train.batching import Example

    cfg = preset("tiny").replace(text_card=4000)
    codes = torch.zeros(cfg.num_codebooks, 60, dtype=torch.long)
    ex = Example("d", codes, oracle_timeline(whole, 60, **oracle_ids(cfg)), whole)
    tcfg = TrainConfig(skip_prob=(0.0, 0.0), shift_prob=0.0, slow_prob=1.0, slow_rate=(5.0, 5.0))
    assert torch.equal(ex.oracle(cfg, tcfg, 0, 0), oracle_timeline(_live(5.0), 60, **oracle_ids(cfg)))
    # slow_prob 0.5, r ~ U[2, 5]: some dialogues (seeds) slow, the others as written
    half = TrainConfig(skip_prob=(0.0, 0.0), shift_prob=0.0, slow_prob=0.5, slow_rate=(2.0, 5.0))
    fed = [int((oracle_timeline(augment_oracle(whole, np.random.default_rng([s, 0, 0]), half), 60, **ids_of) != pad)
               .sum()) for s in range(40)]
    assert set(fed) == {2, n + 1}  # the start id and one token, or the start id and all


class _Draws:
    """A numpy Generator that records the names of the draws made from it."""

    def __init__(self, seed):
        self.rng, self.names = np.random.default_rng(seed), []

    def __getattr__(self, name):
        def draw(*args, **kwargs):
            self.names.append(name)
            return getattr(self.rng, name)(*args, **kwargs)
        return draw


def test_slow_prob_0_draws_nothing_new_so_earlier_runs_reproduce():
    assert TrainConfig().slow_prob == 0.0 and TrainConfig().slow_rate == (2.0, 12.5)  # off by default
    for knobs in ({}, {"jitter_frames": 3}, {"skip_prob": (0.5, 0.5), "shift_prob": 0.0}):
        for seed in range(5):
            off, on = _Draws([seed, 0, 0]), _Draws([seed, 0, 0])
            ev = augment_oracle(EVENTS, off, TrainConfig(**knobs))
            slow = augment_oracle(EVENTS, on, TrainConfig(**knobs, slow_prob=1.0))
            assert on.names == off.names + ["random", "uniform"]  # the slow draws come last, and only with slow_prob
            assert ev == augment_oracle(EVENTS, np.random.default_rng([seed, 0, 0]),
                                        TrainConfig(**knobs, slow_rate=(3.0, 4.0)))  # (the rate is not read)
            assert [e for e in slow if e[1] == "reset"] == [e for e in ev if e[1] == "reset"]  # the same predictions
    # what augment_oracle drew before slow_prob was added: the skip probability, one draw per
    # prediction, the shift's two (side, frames)
    off = _Draws([0, 0, 0])
    augment_oracle(EVENTS, off, TrainConfig())
    assert off.names == ["uniform"] + ["random"] * 4 + ["random", "random", "integers"]


def test_slow_knobs_are_range_checked_and_an_older_run_resumes_without_them(tmp_path):
    import json
    from dataclasses import asdict

    from kame.train.config import check_resume, recorded_config

    for bad, said in (({"slow_prob": 1.5}, "--slow-prob must be in [0, 1], got 1.5"),
                      ({"slow_prob": -0.1}, "--slow-prob must be in [0, 1], got -0.1"),
                      ({"slow_prob": float("nan")}, "--slow-prob must be in [0, 1], got nan"),
                      ({"slow_rate": (0.0, 5.0)}, "--slow-rate A B must be tokens/s 0 < A <= B, got (0.0, 5.0)"),
                      ({"slow_rate": (6.0, 5.0)}, "--slow-rate A B must be tokens/s 0 < A <= B, got (6.0, 5.0)"),
                      ({"slow_rate": (2.0, float("inf"))}, "--slow-rate A B must be tokens/s 0 < A <= B")):
        with pytest.raises(ConfigError, match=re.escape(said)):
            TrainConfig(**bad).check()
    TrainConfig(slow_prob=1.0, slow_rate=(5.0, 5.0)).check()
    TrainConfig(slow_prob=0.5, slow_rate=(0.5, 40.0)).check()
    # what would do nothing is refused (was: --no-oracle-aug silently turned --slow-prob off, and --slow-rate
    # without --slow-prob did nothing, unsaid)
    with pytest.raises(ConfigError, match=re.escape("--slow-rate is --slow-prob's speed, and --slow-prob is 0 (off): "
                                                    "give --slow-prob P too, or drop --slow-rate")):
        TrainConfig(slow_prob=0.0, slow_rate=(0.5, 40.0)).check()
    with pytest.raises(ConfigError, match=re.escape("--slow-prob re-times the oracle's augmentation, which "
                                                    "--no-oracle-aug turns off: drop one of them")):
        TrainConfig(oracle_aug=False, slow_prob=1.0).check()
    TrainConfig(oracle_aug=False).check()
    # a checkpoint's record of a run before the knobs: the run had them off, and resumes so
    config = json.loads(json.dumps(asdict(TrainConfig())))
    assert config["slow_prob"] == 0.0 and config["slow_rate"] == [2.0, 12.5]  # recorded as the others are
    older = {k: v for k, v in config.items() if k not in ("slow_prob", "slow_rate")}
    rec = {"config": older, "manifest_sha256": "x", "world_size": 1}
    assert recorded_config(rec)["slow_prob"] == 0.0 and recorded_config(rec)["slow_rate"] == [2.0, 12.5]
    check_resume(rec, TrainConfig(), "x", 1, tmp_path)
    with pytest.raises(ConfigError, match=r"slow_prob 0.0 -> 0.5"):
        check_resume(rec, TrainConfig(slow_prob=0.5), "x", 1, tmp_path)
