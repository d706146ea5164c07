"""Data types exchanged by back-end components (all times on the session's Clock, seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 24000  # audio exchanged inside kame: 24 kHz mono float32
FRAME_SIZE = 1920  # 80 ms
# the words an oracle prediction that completed with no text is reported with (kame.backend.oracle
# says them; `kame run`'s summary finds them among the session's errors: kame.runtime.runreport)
EMPTY_ANSWER = "answered with no text"
FRAME_S = 0.08  # the frame's duration in seconds (FRAME_SIZE at 24 kHz)


@dataclass(frozen=True)
class AudioFrame:
    """One 80 ms frame of user audio: pcm float32 [FRAME_SIZE] at 24 kHz; ``t`` = start time."""

    pcm: np.ndarray
    t: float


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """A partial (``final=False``) or final transcript of the current user utterance.

    A partial replaces the previous partial; a final commits the utterance, and the next
    partial starts a new one. ``t`` is when it was produced (for latency metrics).
    """

    words: tuple[Word, ...]
    final: bool
    t: float

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class OracleReset:
    """A new prediction starts: the feed resets (start token at the current frame). ``bare``: no
    prediction follows (no appends): it only stops the feed of the tokens still queued, e.g. when
    hybrid routing answers a final (OracleProducer.on_routed); not counted as a prediction."""

    prediction_id: int
    t: float
    bare: bool = False


@dataclass(frozen=True)
class OracleAppend:
    """More tokens of prediction ``prediction_id`` (text-stream vocabulary ids)."""

    prediction_id: int
    token_ids: tuple[int, ...]
    text: str
    t: float


OracleEvent = OracleReset | OracleAppend


@dataclass
class Turn:
    """One committed turn of the conversation, for prompts and transcripts."""

    speaker: str  # "user" | "agent"
    text: str
    start: float
    end: float
    extra: dict = field(default_factory=dict)
