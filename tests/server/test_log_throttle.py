"""kame.server.httplog.Throttle: the one rate limiter of `kame serve`'s repeated log lines, a few in
a row then one per interval (HttpLog's malformed requests: MALFORMED_BURST, then one per
MALFORMED_EVERY_S), or one per interval (accept errors, refused connections). Was: HttpLog had a
hand-written copy of it (review1 #7)."""

from kame.server import httplog


def test_a_burst_then_one_per_interval_counting_the_lines_left_out():
    now = [0.0]
    throttle = httplog.Throttle(10.0, lambda: now[0], burst=3)
    assert [throttle.due() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 9.0
    assert throttle.due() is None
    now[0] = 10.0  # one line's worth refilled
    assert [throttle.due(), throttle.due()] == [3, None]
    now[0] = 40.0  # idle long enough: a whole burst again
    assert [throttle.due() for _ in range(4)] == [1, 0, 0, None]


def test_one_per_interval_by_default():
    now = [0.0]
    throttle = httplog.Throttle(60.0, lambda: now[0])
    assert [throttle.due(), throttle.due(), throttle.due()] == [0, None, None]
    now[0] = 59.9
    assert throttle.due() is None
    now[0] = 60.0
    assert throttle.due() == 3


def test_http_log_uses_it():
    log = httplog.HttpLog(clock=lambda: 0.0)
    assert isinstance(log.throttle, httplog.Throttle)
    assert (log.throttle.burst, log.throttle.every_s) == (httplog.MALFORMED_BURST, httplog.MALFORMED_EVERY_S)
