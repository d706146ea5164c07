"""oracle_timeline: the oracle tokens a Stepper feeds one session, as a pure function of the
back-end's resets/appends (the training forward's `oracle`). It must give what OracleFeed gives
step by step (they share their rules)."""

import random

import pytest
import torch

from kame.model.config import preset
from kame.model.stepper import OracleFeed, oracle_ids, oracle_timeline

START, PAD = 300, 3


def timeline(events, T):
    return oracle_timeline(events, T, start_id=START, pad_id=PAD).tolist()


def test_pad_until_the_first_prediction_then_its_tokens():
    assert timeline([], 4) == [PAD] * 4
    # start id at the reset's frame, the i-th token at frame + 1 + i, pad once exhausted
    assert timeline([(2, "reset"), (2, "append", [10, 11])], 7) == [PAD, PAD, START, 10, 11, PAD, PAD]
    # tokens appended later go on after the earlier ones
    assert timeline([(1, "reset"), (1, "append", [10]), (2, "append", [11, 12])], 6) == [PAD, START, 10, 11, 12, PAD]
    # an append with no prediction open starts one (start id first)
    assert timeline([(1, "append", [10, 11])], 5) == [PAD, START, 10, 11, PAD]
    # an empty append is no call: it starts nothing
    assert timeline([(1, "append", [])], 3) == [PAD] * 3


def test_newest_prediction_wins_and_late_tokens_are_skipped():
    ev = [(0, "reset"), (0, "append", [10, 11, 12, 13, 14]), (3, "reset"), (3, "append", [20, 21])]
    assert timeline(ev, 7) == [START, 10, 11, START, 20, 21, PAD]
    # tokens for frames that have passed are skipped: only the later ones are fed
    ev = [(1, "reset"), (4, "append", [10, 11, 12, 13])]  # 10 was for frame 2, 11 for 3
    assert timeline(ev, 7) == [PAD, START, PAD, PAD, 12, 13, PAD]


def test_window_and_vocabulary():
    ev = [(2, "reset"), (2, "append", [10, 11, 12]), (9, "reset")]
    assert timeline(ev, 4) == [PAD, PAD, START, 10]  # events past the window change nothing
    assert timeline(ev, 0) == []
    out = oracle_timeline(ev, 4, start_id=START, pad_id=PAD)
    assert out.dtype == torch.long and out.shape == (4,)
    cfg = preset("tiny")
    ids = oracle_ids(cfg)
    assert ids == dict(start_id=cfg.text_card, pad_id=cfg.existing_text_padding_id, vocab=cfg.text_ids)
    assert oracle_timeline([(0, "reset")], 2, **ids).tolist() == [cfg.text_card, cfg.existing_text_padding_id]


@pytest.mark.parametrize("events, match", [
    ([(3, "reset"), (2, "append", [1])], r"event 1 at frame 2 comes after one at frame 3"),
    ([(0, "start")], r"event 0 must be \(frame, 'reset'\) or \(frame, 'append', token_ids\)"),
    ([(0, "append")], r"event 0 must be"),
    ([(0, "reset", [1])], r"event 0 must be"),
    ([(-1, "reset")], r"event 0: its frame must be an int >= 0"),
    ([(1.5, "reset")], r"its frame must be an int"),
    ([(0, "reset"), (1, "append", [5, 301])], r"\[301\] outside the text vocabulary \[0, 301\) \(event 1\)"),
])
def test_bad_events_raise_saying_what_is_wrong(events, match):
    with pytest.raises(ValueError, match=match):
        oracle_timeline(events, 8, start_id=START, pad_id=PAD)


@pytest.mark.parametrize("seed", range(20))
def test_same_as_the_feed_step_by_step(seed):
    """Random resets/appends (late ones too): the pure function == OracleFeed fed the same calls."""
    rng = random.Random(seed)
    T = 30
    events = []
    for f in range(T + 3):  # some events past the window
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            if rng.random() < 0.3:
                events.append((f, "reset"))
            else:
                events.append((f, "append", [rng.randrange(0, START + 1) for _ in range(rng.randrange(0, 6))]))
    feed = OracleFeed(1, start_id=START, pad_id=PAD)
    got = []
    for f in range(T):
        for ev in events:
            if ev[0] == f:
                feed.reset(0) if ev[1] == "reset" else feed.append(0, ev[2])
        feed._apply([f])
        got.append(feed._next([f], [True])[0])
    assert timeline(events, T) == got
