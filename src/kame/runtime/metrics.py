"""Typed latency/throughput metrics as data (one event per measurement).

Components emit ``Metric`` events through a ``MetricsSink`` (a callable); sessions collect
them, the server sends them as 0x04 metadata, file mode writes them to the JSON transcript,
benchmarks aggregate them. All times come from the one injectable Clock.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

log = logging.getLogger(__name__)

MetricName = Literal[
    "stt_partial_latency",  # audio time of last word end -> partial emitted
    "stt_final_latency",  # user's end of speech -> final transcript
    "llm_ttft",  # LLM request sent -> first token
    "llm_tokens_per_s",
    "oracle_lag",  # user's last word -> first oracle token fed to the front-end
    "oracle_restart",  # the oracle started a new prediction (value 1; labels: reason)
    "first_response_latency",  # user's end of speech -> first agent audio
    "content_latency",  # user's end of speech -> first word of the answer audible
    "step_time",  # one batched front-end step (+ codec), seconds
    "missed_deadline",  # a frame whose deadline passed (value = lateness, s)
    "tts_first_chunk",  # TTS request -> first audio chunk
    "reply_stall",  # a cascade reply's LLM or TTS stalled (value = wall seconds its timer ran; labels: component, clock_s)
]


@dataclass(frozen=True)
class Metric:
    name: MetricName
    value: float  # seconds unless the name says otherwise
    t: float  # clock time when measured
    session: str | None = None
    labels: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


MetricsSink = Callable[[Metric], None]


def null_sink(_: Metric) -> None:
    pass


def sink_name(sink) -> str:
    """``mymod.my_sink`` / ``mymod.Dashboard``: how messages name a sink."""
    named = sink if hasattr(sink, "__qualname__") else type(sink)
    return f"{getattr(named, '__module__', '?')}.{getattr(named, '__qualname__', repr(sink))}"


class GuardedSink:
    """An agent's sink as every part of it calls it (frame ticker, sessions, STT, oracle producer):
    a sink that raises must not cost a frame's audio, so its failure is logged once (naming the
    sink) and that metric is dropped. ``sink``: the one given."""

    def __init__(self, sink: MetricsSink) -> None:
        self.sink = sink
        self.failures = 0

    def __call__(self, m: Metric) -> None:
        try:
            out = self.sink(m)
        except Exception:  # noqa: BLE001 - the sink's bug, not the agent's
            self.failures += 1
            if self.failures == 1:
                log.exception("metrics sink %s raised on a %r metric; the agent goes on and drops the metrics "
                              "it fails on (logged once)", sink_name(self.sink), m.name)
            return
        if inspect.isawaitable(out):  # (a plain def that returns a coroutine: never awaited)
            getattr(out, "close", lambda: None)()
            self.failures += 1
            if self.failures == 1:
                log.error("metrics sink %s returned an awaitable, which nobody awaits: a sink is called, not "
                          "awaited (logged once); record the metric and return, or queue it for your own task",
                          sink_name(self.sink))


def guard_sink(sink: MetricsSink | None) -> MetricsSink:
    """The agent's sink (None: null_sink), checked and wrapped (GuardedSink). An ``async def`` sink
    is a TypeError: the agent calls it inside its frame loop and sessions, where nothing awaits it."""
    if sink is None or sink is null_sink or isinstance(sink, GuardedSink):
        return sink or null_sink
    if not callable(sink):
        raise TypeError(f"metrics: {sink!r} is not callable; give a function metric -> None "
                        f"(e.g. kame.runtime.metrics.MetricsLog())")
    if inspect.iscoroutinefunction(sink) or inspect.iscoroutinefunction(getattr(sink, "__call__", None)):
        raise TypeError(f"metrics: {sink_name(sink)} is an async def, but a sink is called, not awaited (inside "
                        f"the agent's frame loop): write it as a plain def that records the metric "
                        f"(or puts it on a queue your own task reads)")
    return GuardedSink(sink)


class MetricsLog:
    """A sink that keeps every metric; ``values(name)`` lists one kind."""

    def __init__(self) -> None:
        self.events: list[Metric] = []

    def __call__(self, m: Metric) -> None:
        self.events.append(m)

    def values(self, name: str) -> list[float]:
        return [m.value for m in self.events if m.name == name]


# ---- behind real time: one rule for the server's log, `kame client` and `kame run` -----------------

LATE_SHARE = 0.05  # more than this share of the frames late (the page's flag, bench sessions' "sustained")
MIN_LATE = 3  # ... and at least this many: one slow step (a warm-up) re-anchors the schedule and is 1 miss
SLOW_CAUSE = "the front-end (model + codec) is too slow for the CPU, or too many sessions or other work share the CPU"


def behind_real_time(late: int, frames: int) -> bool:
    """Whether ``late`` of ``frames`` frames that missed their 80 ms deadline (or, in `kame run`,
    whose step took longer than 80 ms) mean the agent runs slower than real time."""
    return late >= MIN_LATE and late > LATE_SHARE * frames


RECENT_FRAMES = 63  # the recent frames (~5 s) judged for "falls behind real time" (live by the session; by kame client)


def behind_recently(totals, window: int = RECENT_FRAMES) -> tuple[int, int] | None:
    """The rule over a session's recent frames, as the server applies it live, from the running
    totals ``(late, frames)`` it reports in order (its "stats" Metas, one every
    runtime.stats_interval_s): each stretch from one report back to the latest report at least
    ``window`` frames before it (or to the session's start) is judged by behind_real_time. The
    worst stretch so judged, as ``(late, frames)``, or None: none was behind (was: `kame client`
    judged the session's totals only, and a long session that fell behind for a while looked
    fine, 66 of 2240 frames, when 6 s of it missed 14 of 73)."""
    points = [(0, 0)]  # (late, frames) at the session's start
    for late, frames in totals:
        if frames > points[-1][1] and late >= points[-1][0]:  # (in order; a repeat or a stray skipped)
            points.append((late, frames))
    worst, i = None, 0
    for late, frames in points[1:]:
        while i + 1 < len(points) and frames - points[i + 1][1] >= window:
            i += 1
        dl, df = late - points[i][0], frames - points[i][1]
        if behind_real_time(dl, df) and (worst is None or dl * worst[1] > worst[0] * df):
            worst = (dl, df)
    return worst


def late_share(late: int, frames: int) -> str:
    """"14 of 15 frames (93 %)"."""
    return f"{late} of {frames} frames ({100 * late / max(frames, 1):.0f} %)"
