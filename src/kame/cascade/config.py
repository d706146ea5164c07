"""The [cascade] config section: the cascade baseline (VAD/STT -> LLM -> TTS) and hybrid routing.

    from kame.cascade.config import CascadeConfig
    cfg = CascadeConfig.from_dict({"tts": "espeak:en-us+f2", "barge_in_min_speech": 0.3})

An unknown key raises kame.errors.ConfigError naming it. The STT and LLM specs are shared
with the tandem (top-level ``stt`` / ``llm`` of the KAME config), so both modes compare the
same components; only the TTS is cascade-specific.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..numeric import is_finite_number


@dataclass
class CascadeConfig:
    # --- components ---------------------------------------------------------------------
    tts: str = "embedded"  # tts spec: "embedded"/"piper", "espeak[:VOICE]", "openai:MODEL[:VOICE]"
    tts_fallback: str | None = "espeak"  # used (and logged) if ``tts`` fails to load; None = fail
    # --- reply generation ---------------------------------------------------------------
    max_tokens: int | None = None  # LLM reply length cap; None = backend.llm_max_tokens (same as the tandem)
    temperature: float | None = None  # None = backend.llm_temperature (same as the tandem)
    # stall timeouts (s, session clock) of a reply's LLM and TTS streams: a stream that gives
    # nothing this long has failed (the reply ends, "... stalled: ..."); each is raised to the
    # component's own where its spec sets it (openai:MODEL;first_token_timeout=60:
    # kame.backend.policy.stall_limits)
    first_timeout: float | None = None  # request -> first piece / chunk; None = backend.llm_first_token_timeout_s
    chunk_timeout: float | None = None  # between two pieces / chunks; None = backend.llm_chunk_timeout_s
    # --- streaming TTS: start speaking on the first complete sentence/clause --------------
    first_clause_min_words: int = 4  # the first segment may end at , ; : once it has this many words
    max_segment_words: int = 30  # force a cut in run-on text without punctuation
    # --- turn taking ------------------------------------------------------------------------
    # speech probability above which a frame is speech (silero/webrtc VADs: the turn VAD's and
    # the STT's; the energy VAD keeps its dB threshold)
    vad_threshold: float = 0.5
    barge_in_min_speech: float = 0.24  # s of user speech while the agent talks before it stops
    # s of silence that ends the user's speech: the STT's utterance (its final transcript starts
    # the reply) and the turn VAD's speech region (end-of-speech time, barge-in)
    end_of_turn_silence: float = 0.5
    # --- output -------------------------------------------------------------------------
    emit_silence: bool = True  # one AgentAudio every 80 ms even when silent (like the tandem)
    silence_threshold: float = 0.01  # |pcm| peak above which agent audio counts as "audible"
    # --- hybrid routing (used by the tandem runtime) --------------------------------------
    hybrid_routing: bool = False  # tandem: answer "structured" turns (numbers, code, extraction) by the cascade path

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "CascadeConfig":
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown [cascade] config key(s) {unknown}; known: {sorted(names)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """ConfigError naming the dotted key and its value (``cascade.max_segment_words: must be
        >= 2, got 1``) for a value out of its range (the rules are _RANGES)."""
        if not isinstance(self.tts, str) or not self.tts.strip():
            raise ConfigError(f"cascade.tts: expected a non-empty tts spec string, got {self.tts!r}")
        from .. import registry  # scheme names only: nothing is imported

        for key, spec in (("tts", self.tts), ("tts_fallback", self.tts_fallback)):
            if spec:  # (a fallback of None or "" is no fallback)
                registry.check_key_spec(f"cascade.{key}", "tts", spec)
        ints = {f.name for f in dataclasses.fields(self) if str(f.type).startswith("int")}  # (a count)
        for key, (lo, hi, lo_open, hi_open, what) in _RANGES.items():
            value = getattr(self, key)
            if value is None and key in _OPTIONAL:
                continue
            if key in ints and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
                raise ConfigError(f"cascade.{key}: expected an integer, got {value!r}")  # (as [cascade] in TOML)
            if key not in ints and not is_finite_number(value):  # (true/false: not a number)
                raise ConfigError(f"cascade.{key}: expected a finite number, got {value!r}")
            if (lo is not None and (value <= lo if lo_open else value < lo)) or \
                    (hi is not None and (value >= hi if hi_open else value > hi)):
                rule = f"{what or 'must be'} {_range_text(lo, hi, lo_open, hi_open)}"
                raise ConfigError(f"cascade.{key}: {rule}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolved_timeouts(cfg: CascadeConfig, backend: Any) -> dict[str, float]:
    """``first_timeout`` / ``chunk_timeout`` for dataclasses.replace: the cascade's own, else the
    [backend] section's (``backend``: a kame.config.BackendConfig or None), else the oracle's
    defaults (kame.backend.policy.OraclePolicy): the same stall rules in both modes unless set."""
    from ..backend.policy import OraclePolicy

    return {
        "first_timeout": cfg.first_timeout if cfg.first_timeout is not None else
        float(getattr(backend, "llm_first_token_timeout_s", OraclePolicy.first_token_timeout)),
        "chunk_timeout": cfg.chunk_timeout if cfg.chunk_timeout is not None else
        float(getattr(backend, "llm_chunk_timeout_s", OraclePolicy.chunk_timeout)),
    }


# the numeric keys' ranges: key -> (low, high, low excluded, high excluded, what the value is);
# None = unbounded
_RANGES: dict[str, tuple[float | None, float | None, bool, bool, str]] = {
    "max_tokens": (1, None, False, False, ""),
    "temperature": (0.0, None, False, False, ""),
    "first_timeout": (0.0, None, True, False, "a time in s, must be"),
    "chunk_timeout": (0.0, None, True, False, "a time in s, must be"),
    "first_clause_min_words": (1, None, False, False, ""),
    "max_segment_words": (2, None, False, False, ""),
    "vad_threshold": (0.0, 1.0, True, True, "a speech probability"),
    "barge_in_min_speech": (0.0, None, False, False, ""),
    "end_of_turn_silence": (0.0, None, True, False, ""),
    "silence_threshold": (0.0, 1.0, False, True, "a sample level (|x| of float audio)"),
}
_OPTIONAL = {"max_tokens", "temperature", "first_timeout", "chunk_timeout"}  # None: the [backend] value


def _range_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"{'<' if hi_open else '<='} {hi:g}"
