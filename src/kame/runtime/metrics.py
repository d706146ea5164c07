"""Typed latency/throughput metrics as data (one event per measurement).

Components emit ``Metric`` events through a ``MetricsSink`` (a callable); sessions collect
them, the server sends them as 0x04 metadata, file mode writes them to the JSON transcript,
benchmarks aggregate them. All times come from the one injectable Clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

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


def late_share(late: int, frames: int) -> str:
    """"14 of 15 frames (93 %)"."""
    return f"{late} of {frames} frames ({100 * late / max(frames, 1):.0f} %)"
