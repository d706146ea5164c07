"""Turn taking for the cascade: a streaming VAD -> speech start / end-of-speech times.

    tracker = TurnTracker(make_vad("auto"))
    events = tracker.update(pcm_80ms, t)   # [VADEvent("start"|"end", t, detected_at)]
    tracker.speech_run(t)                  # seconds of the current speech region (barge-in)
    tracker.current_speech_end()           # end of the user's latest speech (latency origin)

The end of a user's *turn* (what starts the reply) is the STT's final transcript; the VAD gives
the precise end-of-speech time for latency metrics and detects barge-in. The VAD is the one the
tandem uses (runtime.vad: kame.runtime.worker.make_vad_factory -> StreamingVAD silero/webrtc or
EnergyVAD), so both modes detect the user's end of speech identically.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


class TurnTracker:
    """Follows a streaming VAD: speech region start, end-of-speech time, speech duration."""

    def __init__(self, vad) -> None:
        self.vad = vad
        self.speech_start: float | None = None  # start of the current speech region
        self.last_speech_end: float | None = None  # end of the last finished speech region

    @property
    def in_speech(self) -> bool:
        return bool(self.vad.in_speech)

    def speech_run(self, t: float) -> float:
        """Seconds since the current speech region started (0 when not in speech)."""
        return t - self.speech_start if self.in_speech and self.speech_start is not None else 0.0

    def current_speech_end(self) -> float | None:
        """Best estimate of the end of the user's latest speech (even before "end" fires)."""
        st = getattr(self.vad, "st", None)  # StreamingVAD keeps it in its state; EnergyVAD as last_end
        t = getattr(st, "last_speech_end", None) if st is not None else getattr(self.vad, "last_end", None)
        return t if t is not None else self.last_speech_end

    def update(self, pcm: np.ndarray, t: float) -> list:
        events = self.vad.push(pcm, t)
        for ev in events:
            if ev.kind == "start":
                self.speech_start = ev.t
            else:
                self.last_speech_end = ev.t
        return events
