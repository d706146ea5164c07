"""The options the built-in STT specs take after ';', and their checks:

    embedded;whisper_interval=1.0,max_ps_lag=2         # EmbeddedSTT(whisper_interval=1.0, max_ps_lag=2)
    whisper:/models/ct2;final_beam=5                    # WhisperSTT("/models/ct2", final_beam=5)
    openai:gpt-4o-transcribe;response_format=json,language=de

Light (no model, no HTTP client): the registry calls ``check_embedded`` / ``check_whisper`` /
``check_openai`` at the config check (kame.registry.check_spec, as the schemes' ``options`` in
kame/components.py), so an unknown option or a bad value is a ConfigError naming the spec and the
option before any model loads (was: only when the STT was created, after the front-end had
loaded); the constructors check their keyword arguments by the same rules (``STREAMING_RULES``,
``WHISPER_RULES``, ``EMBEDDED_RULES``, ``OPENAI_RULES``, ``check_format``).
"""

from __future__ import annotations

from ...errors import ConfigError
from ..options import CONNECT_TIMEOUT, check_options

# name -> its bounds, as kame.backend.options.number takes them
# every VAD-segmented STT's (kame.backend.stt.streaming.SegmentedSTT)
STREAMING_RULES = {
    "partial_interval": {"above": 0},  # s between partial decodes
    "max_lag": {"min": 0, "allow_inf": True},  # skip partial decodes while more audio than this waits (inf: never)
    "max_utterance": {"above": 0},  # s: an utterance is cut there
    "preroll": {"min": 0},  # s of audio kept before the VAD's start of speech
}
WHISPER_RULES = {  # (the order is the error's list of the options)
    "whisper_interval": {"above": 0},
    "final_beam": {"min": 1, "cast": int},
    "cpu_threads": {"min": 1, "cast": int},
    **STREAMING_RULES,
}
EMBEDDED_RULES = {**WHISPER_RULES, "max_ps_lag": {"min": 0, "allow_inf": True}}
WHISPER_EXAMPLE = "whisper;whisper_interval=1.0"
EMBEDDED_EXAMPLE = "embedded;whisper_interval=1.0"
# openai: its numbers' bounds, the response format (check_format) and the language (any text; empty:
# the server detects it)
OPENAI_RULES = {"request_interval": {"above": 0, "allow_inf": True}, "timeout": {"above": 0},
                "connect_timeout": CONNECT_TIMEOUT}
OPENAI_OPTIONS = ("response_format", "language", "request_interval", "timeout", "connect_timeout")
OPENAI_FORMATS = ("verbose_json", "json")  # verbose_json: with word times
OPENAI_EXAMPLE = "openai:gpt-4o-transcribe;response_format=json"


def check_format(owner: str, value) -> str:
    """The openai STT's ``response_format``, checked (ConfigError naming ``owner``)."""
    if value not in OPENAI_FORMATS:
        raise ConfigError(f"{owner}: response_format must be one of {', '.join(OPENAI_FORMATS)} "
                          f"(verbose_json: with word times), got {value!r}")
    return value


def check_whisper(arg: str | None, where: str) -> None:
    """The config check of a whisper spec's options (``arg``: the part after 'whisper:')."""
    check_options(arg, where, WHISPER_RULES, WHISPER_EXAMPLE)


def check_embedded(arg: str | None, where: str) -> None:
    """The config check of an embedded STT spec's options."""
    check_options(arg, where, EMBEDDED_RULES, EMBEDDED_EXAMPLE)


def check_openai(arg: str | None, where: str) -> None:
    """The config check of an openai STT spec's options (``arg``: the part after 'openai:')."""
    given = check_options(arg, where, OPENAI_RULES, OPENAI_EXAMPLE, OPENAI_OPTIONS)
    if "response_format" in given:
        check_format(where, given["response_format"])
