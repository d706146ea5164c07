"""Turn taking for the cascade: a streaming VAD -> speech start / end-of-speech times.

    tracker = TurnTracker(make_vad("auto"))
    events = tracker.update(pcm_80ms, t)   # [VADEvent("start"|"end", t, detected_at)] (off the event loop)
    tracker.note(events)                   # on the event loop: the speech regions they open / close
    tracker.heard_since(t0)                # seconds of user voice heard after t0 (barge-in: barges_in)
    tracker.end_of(final)                  # end of the speech a final transcript belongs to (latency origin)

The end of a user's *turn* (what starts the reply) is the STT's final transcript; the VAD gives
the precise end-of-speech time for latency metrics and detects barge-in. The VAD is the one the
tandem uses (runtime.vad: kame.runtime.worker.make_vad_factory -> StreamingVAD silero/webrtc or
EnergyVAD), so both modes detect the user's end of speech identically. Which speech a final
belongs to is ``SpeechRegions``' rule, hybrid routing's too (kame.cascade.hybrid).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Iterable

import numpy as np

from ..backend.types import Transcript

log = logging.getLogger(__name__)

# How far an STT's word times and the VAD's may disagree (s): whisper puts a word's end up to
# ~0.2 s after the VAD's end of speech, a first word's start before the VAD's start.
WORD_SLACK_S = 0.5
KEEP_REGIONS = 64  # speech regions remembered (a final is about one of the last few)


class SpeechRegions:
    """The user's recent speech regions, from the VAD's "start" / "end" events, and which one a
    final transcript belongs to: its end of speech, the latency origin of the turn it ends. One
    piece of code for the cascade session (``TurnTracker``) and hybrid routing (``HybridRouter``).

    A final often comes late (an STT under load: seconds after the speech), while the user speaks
    again: its end of speech is still that of the speech its words were in, never the next
    utterance's voice."""

    def __init__(self) -> None:
        self._regions: deque[list] = deque(maxlen=KEEP_REGIONS)  # [start, end or None while open]

    def add(self, events: Iterable) -> None:
        for ev in events:
            if ev.kind == "start":
                self._regions.append([ev.t, None])
            elif self._regions and self._regions[-1][1] is None:
                self._regions[-1][1] = ev.t

    @property
    def open_start(self) -> float | None:
        """Start of the speech region still open (None: the user is not speaking)."""
        return self._regions[-1][0] if self._regions and self._regions[-1][1] is None else None

    def end_of(self, tr: Transcript, last_voice: float | None) -> float:
        """End of the speech the final ``tr`` belongs to: the VAD's "end" of the speech region its
        last word is in (the one it overlaps most, else the nearest within WORD_SLACK_S; the latest
        on a tie). While that region is still open (the final came before the VAD's end), the
        VAD's latest voice ``last_voice``, unless the user went on talking after the words (more
        than WORD_SLACK_S later): then the last word's end, as when no region is near the words
        (the VAD did not hear them). A final without words: the end of the latest region that
        has ended (else ``last_voice``, else when the final came)."""
        if not tr.words:
            ended = [end for _, end in self._regions if end is not None]
            return ended[-1] if ended else (last_voice if last_voice is not None else tr.t)
        ws, we = tr.words[-1].start, tr.words[-1].end
        best, score = None, None
        for region in self._regions:
            start, end = region[0], (region[1] if region[1] is not None else float("inf"))
            gap = max(0.0, start - we, ws - end)  # (0: the word and the region overlap)
            s = max(0.0, min(we, end) - max(ws, start)) - gap
            if gap <= WORD_SLACK_S and (score is None or s >= score):
                best, score = region, s
        if best is None:
            return we
        if best[1] is not None:
            return best[1]
        return last_voice if last_voice is not None and last_voice <= we + WORD_SLACK_S else we


class TurnTracker:
    """Follows a streaming VAD: speech regions (start, end-of-speech time), voice heard."""

    def __init__(self, vad) -> None:
        self.vad = vad
        self.regions = SpeechRegions()

    @property
    def in_speech(self) -> bool:
        return bool(self.vad.in_speech)

    def end_of(self, tr: Transcript) -> float:
        """End of the speech the final ``tr`` belongs to (``SpeechRegions.end_of``): the latency origin."""
        return self.regions.end_of(tr, self.vad.last_voice)

    def heard_since(self, t0: float) -> float:
        """Seconds of user voice heard after ``t0`` in the current speech region (barge-in)."""
        return voice_heard_since(t0, self.regions.open_start if self.in_speech else None, self.vad.last_voice)

    def update(self, pcm: np.ndarray, t: float) -> list:
        """The VAD's events for one frame (model compute: the session runs it off the event loop,
        then ``note``s the events on it, where the regions are read)."""
        return self.vad.push(pcm, t)

    def note(self, events: Iterable) -> None:
        self.regions.add(events)


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


def barges_in(heard: float, min_speech: float) -> bool:
    """The user's voice ``heard`` over a reply (voice_heard_since) cuts it: voice actually heard
    (more than 0 s), ``min_speech`` (cascade.barge_in_min_speech) of it or more. So 0 means any
    voice, never silence (was: 0 s heard >= 0, so every reply was cut on its first frame)."""
    return heard > 0 and heard >= min_speech
