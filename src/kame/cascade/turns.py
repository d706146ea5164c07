"""Turn taking for the cascade: a streaming VAD -> speech start / end-of-speech times.

    tracker = TurnTracker(make_vad("auto"))
    events = tracker.update(pcm_80ms, t)   # [VADEvent("start"|"end", t, detected_at)]
    tracker.heard_since(t0)                # seconds of user voice heard after t0 (barge-in)
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

    def current_speech_end(self) -> float | None:
        """Best estimate of the end of the user's latest speech (even before "end" fires)."""
        t = self.vad.last_voice
        return t if t is not None else self.last_speech_end

    def heard_since(self, t0: float) -> float:
        """Seconds of user voice heard after ``t0`` in the current speech region (barge-in)."""
        return voice_heard_since(t0, self.speech_start if self.in_speech else None, self.vad.last_voice)

    def update(self, pcm: np.ndarray, t: float) -> list:
        events = self.vad.push(pcm, t)
        for ev in events:
            if ev.kind == "start":
                self.speech_start = ev.t
            else:
                self.last_speech_end = ev.t
        return events


def voice_heard_since(t0: float, speech_start: float | None, last_voice: float | None) -> float:
    """Seconds of user voice after ``t0`` (when the agent's reply started) in the speech region
    that began at ``speech_start`` (None: the user is not speaking), measured up to the VAD's
    latest voiced chunk ``last_voice``. The barge-in rule of the cascade and of hybrid routing.

    The VAD stays "in speech" for its ``min_silence`` after the user's last sound, so a reply
    that starts before the end of the user's turn is *reported* meets a region that is still
    open; its silent tail must not count as talking over the reply. Counting up to the latest
    voiced chunk (not up to now) makes that tail count for nothing, while a user who goes on
    talking, or starts again, after ``t0`` is counted as usual."""
    if speech_start is None or last_voice is None:
        return 0.0
    return max(0.0, last_voice - max(speech_start, t0))
