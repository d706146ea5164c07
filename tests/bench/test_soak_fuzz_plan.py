"""kame bench soak --parts fuzz --seed N sends the same messages every run (kame.bench.soak.fuzz_plan):
each worker has a fixed share, each connection's messages come from an RNG keyed by (seed, worker,
connection). Was: four workers drew from one shared budget, so how many each sent depended on the
event loop, and a connection the server closed early shifted the next connection's draws: two runs
of --seed 0 sent different mixes."""

from __future__ import annotations

import pytest

from kame.bench.soak import fuzz_plan, speechlike
from kame.cli import main
from kame.server import protocol as P

MAX, HARD = 4096, 4 * 4096


def _good():
    src = P.OpusEncoder()
    return [p for p in (src.encode(speechlike(0.08, i)) for i in range(30)) if p]


def _plan(seed, n, w, max_errors=100, workers=4):
    return list(fuzz_plan(seed, n, workers, w, _good(), MAX, HARD, max_errors))


def test_the_plan_is_the_same_whatever_the_scheduling():
    good = _good()
    in_order = [_plan(0, 700, w) for w in range(4)]
    # the workers' connections drawn interleaved, last worker first (as an event loop might run them)
    gens = {w: fuzz_plan(0, 700, 4, w, good, MAX, HARD, 100) for w in reversed(range(4))}
    interleaved: dict[int, list] = {w: [] for w in range(4)}
    while gens:
        for w in list(gens):
            conn = next(gens[w], None)
            if conn is None:
                del gens[w]
            else:
                interleaved[w].append(conn)
    assert [interleaved[w] for w in range(4)] == in_order
    assert [sum(map(len, p)) for p in in_order] == [175] * 4  # each worker's share, all of it
    assert [sum(map(len, _plan(0, 7, w))) for w in range(4)] == [2, 2, 2, 1]
    assert in_order != [_plan(1, 700, w) for w in range(4)]  # another seed, other messages


def test_a_connection_closed_early_does_not_shift_the_next_ones_messages():
    """A connection's plan ends at the message the server closes it on (here the 3rd bad one); the
    next connection's messages are its own, the same as when the first ran long."""
    long, short = _plan(0, 700, 0), _plan(0, 700, 0, max_errors=3)
    assert len(short[0]) < len(long[0])
    assert short[0] == long[0][: len(short[0])]
    assert short[1] == long[1][: len(short[1])]  # (was: drawn on from where the first connection stopped)
    assert sum(map(len, short)) == 175  # (the rest of the share on the following connections)


def test_soak_sends_its_plan(tmp_path, capsys):
    """The fuzz part sends exactly the messages fuzz_plan gives for --seed (the echo agent's server
    closes each connection where the plan expects it)."""
    import json
    from collections import Counter

    from kame.cli import main
    from kame.config import ServerConfig
    from kame.server.guard import hard_limit

    assert main(["bench", "soak", "--agent", "echo", "--parts", "fuzz", "--fuzz", "120", "--seed", "3",
                 "--json", str(tmp_path / "soak.json")]) == 0
    capsys.readouterr()
    fuzz = json.loads((tmp_path / "soak.json").read_text())["fuzz"]
    cfg = ServerConfig()
    planned = Counter(cat for w in range(4) for conn in fuzz_plan(3, 120, 4, w, _good(), cfg.max_message_bytes,
                                                                   hard_limit(cfg), cfg.max_errors) for cat, _ in conn)
    assert fuzz["sent"] == dict(planned) and fuzz["messages"] == 120


def test_seeds_help_names_what_the_plan_depends_on(capsys):
    """The plan depends on the workers too, fewer for an agent of fewer than 5 sessions
    (fuzz_workers): --help says so (was: seed, --fuzz and server limits alone)."""
    with pytest.raises(SystemExit):
        main(["bench", "soak", "--help"])
    assert "the same seed, --fuzz, server limits and the agent's session count: the same messages" in \
        " ".join(capsys.readouterr().out.split())
