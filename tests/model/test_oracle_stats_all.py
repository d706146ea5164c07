"""OracleFeed counts the start ids it fed (OracleStats.starts), and stats_all() reads every row's
stats at once: the front-end's frame model hands them to the sessions (FrameOut.oracle_counts)."""

from __future__ import annotations

from kame.model.stepper import OracleFeed, OracleStats


def test_starts_and_stats_all():
    f = OracleFeed(2, start_id=50, pad_id=3, vocab=51)
    f.reset(0)
    f.append(0, [7, 8])
    f.reset(0)  # before the same step: the first start id is never fed
    f.append(0, [9])
    f._apply([0, 0])
    for t in range(3):
        f._next([t, t], [True, True])
    f.reset(0)  # a bare reset (no tokens): its start id is fed, then pad
    f._apply([3, 3])
    f._next([3, 3], [True, True])
    f._next([4, 4], [True, True])
    a, b = f.stats_all()
    assert (a.fed, a.starts, a.predictions, a.superseded, a.pad_frames) == (3, 2, 3, 3, 2)
    assert a.fed - a.starts == 1  # the prediction's own token fed: 9
    assert b == OracleStats(pad_frames=5) and a == f.stats(0)
