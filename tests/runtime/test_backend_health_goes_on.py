"""BackendHealth's "backend" Metas around a failure the stream went on from ("goes_on"): a real
down after it (the stream ended after all, before any transcript) is said again without
"goes_on", so file mode and kame client stop waiting for a final that cannot come (was: one Meta,
"goes_on" forever, as a change of up/down only was said)."""

from __future__ import annotations

from kame.runtime.base import BackendHealth, Meta


def metas(out) -> list[tuple]:
    return [(o.data["status"], o.data.get("goes_on")) for o in out if isinstance(o, Meta)]


def test_a_down_after_one_that_went_on_is_said_again():
    out: list = []
    h = BackendHealth(out.append)
    h.report("stt", False, 1.0, "child died", goes_on=True)
    h.report("stt", False, 2.0, "stalled")
    h.report("stt", False, 3.0, "stalled again")  # (down already, its stream ended: no new Meta)
    h.report("stt", True, 4.0)
    h.report("stt", False, 5.0, "child died", goes_on=True)
    h.report("stt", False, 6.0, "child died", goes_on=True)  # (still going on: nothing new)
    assert metas(out) == [("down", True), ("down", None), ("up", None), ("down", True)]
