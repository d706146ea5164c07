"""The soak fuzzer's bookkeeping (kame.bench.soak): which messages the server must answer with a
0x05 error, and the per-connection tally of missing and extra errors."""

from __future__ import annotations

import random

import pytest

from kame.bench.soak import _expect_error, _tally
from kame.server import protocol as P


def _server_refuses_ping(payload: bytes) -> bool:
    try:
        P.parse_ping(payload)
        return False
    except P.ProtocolError as exc:
        assert exc.code == "bad_ping"
        return True


@pytest.mark.parametrize("cat", ["ping", "random_bytes"])
def test_a_ping_is_expected_to_fail_exactly_when_the_server_refuses_it(cat):
    # (was: every 0x06 message taken for valid; random bytes beginning with 0x06 and over 64
    # bytes got bad_ping, and the fuzz table said "unanswered -1")
    rng = random.Random(0)
    for n in [0, 1, P.MAX_PING_BYTES - 1, P.MAX_PING_BYTES, P.MAX_PING_BYTES + 1, 200, 599]:
        payload = rng.randbytes(n)
        assert _expect_error(cat, b"\x06" + payload, 4096) == _server_refuses_ping(payload), n
    assert _expect_error("random_bytes", b"\x06" + bytes(5000), 4096)  # over max_message_bytes: refused whole


def test_valid_messages_are_not_expected_to_fail():
    assert not _expect_error("valid_pcm", P.encode(P.Kind.PCM, bytes(320)), 4096)
    assert not _expect_error("ping", b"\x06" + bytes(10), 4096)


def test_the_tally_never_goes_negative():
    assert _tally(bad=3, answered=3) == (0, 0)
    assert _tally(bad=3, answered=1) == (2, 0)  # two bad messages got no error
    assert _tally(bad=0, answered=3) == (0, 3)  # three errors for messages taken for valid (was: -3 unanswered)


def test_the_fuzz_table_shows_unexpected_errors():
    from kame.bench.soak import tables

    f = {"messages": 100, "wall_s": 1.0, "errors": {"bad_ping": 3}, "closes": {"client_close": 2}, "unanswered": 0,
         "unexpected": 3, "canary_errors": 0, "canary_close": 1000, "canary_audio_s": 3.0, "canary_expected_s": 3.5,
         "loop_lag": {"p99": 0.001}}
    header, _, row = tables({"fuzz": f}).splitlines()[:3]
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")]))
    assert cells["unanswered"] == "0" and cells["unexpected 0x05"] == "3"
