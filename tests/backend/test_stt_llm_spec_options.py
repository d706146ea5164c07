"""The built-in STT and LLM specs' options are checked at the config check, as the TTS specs'
are (test_tts_spec_options): an unknown option or a bad value of ``embedded`` / ``whisper`` /
``openai:`` STT and ``openai:`` LLM specs is a ConfigError naming the spec and the option before
any model loads (was: accepted by load_config, and refused only when the agent started, after the
front-end had loaded). The constructors check by the same rules (kame.backend.stt.spec,
kame.backend.llm.spec)."""

import re
import sys

import pytest

from kame import registry
from kame.errors import ConfigError

BAD = [  # (kind, spec) -> what the error says after "<kind> spec '<spec>': "
    ("stt", "embedded;foo=1", "unknown option 'foo'; options after ';' are NAME=VALUE, comma-separated, NAME one of "
                              "whisper_interval, final_beam, cpu_threads, partial_interval, max_lag, max_utterance, "
                              "preroll, max_ps_lag"),
    ("stt", "embedded;whisper_interval=abc", "whisper_interval must be a number > 0, got 'abc'"),
    ("stt", "embedded;max_ps_lag=-1", "max_ps_lag must be a number >= 0, got '-1'"),
    ("stt", "whisper;foo=1", "unknown option 'foo'; .* NAME one of whisper_interval, .*, preroll \\(e.g. whisper;"),
    ("stt", "whisper;max_ps_lag=1", "unknown option 'max_ps_lag'"),  # (the embedded STT's alone)
    ("stt", "whisper:/m;final_beam=0.5", "final_beam must be a whole number >= 1, got '0.5'"),
    ("stt", "whisper;cpu_threads=0", "cpu_threads must be a whole number >= 1, got '0'"),
    ("stt", "whisper;max_utterance=0", "max_utterance must be a number > 0, got '0'"),
    ("stt", "embedded;partial_interval=nan", "partial_interval must be a number > 0, got 'nan'"),
    ("stt", "openai:x;foo=1", "unknown option 'foo'; .* NAME one of response_format, language, request_interval, "
                              "timeout, connect_timeout"),
    ("stt", "openai:x;response_format=text", "response_format must be one of verbose_json, json \\(verbose_json: "
                                             "with word times\\), got 'text'"),
    ("stt", "openai:x;timeout=0", "timeout must be a number > 0, got '0'"),
    ("stt", "openai:x;connect_timeout=soon", "connect_timeout must be a number > 0, got 'soon'"),
    ("llm", "openai:x;temperature=1", "unknown option 'temperature'; .* NAME one of first_token_timeout, "
                                      "chunk_timeout, connect_timeout"),
    ("llm", "openai:x;chunk_timeout=-1", "chunk_timeout must be a number > 0, got '-1'"),
    ("llm", "openai:x;first_token_timeout=inf", "first_token_timeout must be a number > 0, got 'inf'"),
]
GOOD = [("stt", "embedded;whisper_interval=1.0,max_ps_lag=inf,final_beam=5"),
        ("stt", "whisper:/m;max_lag=inf,preroll=0"),
        ("stt", "openai:x;language=,response_format=json,request_interval=inf,timeout=30"),
        ("llm", "openai:x;first_token_timeout=60,chunk_timeout=20,connect_timeout=3"), ("stt", "embedded")]


@pytest.mark.parametrize("kind, spec, says", BAD)
def test_a_bad_stt_or_llm_option_is_a_config_error_at_the_spec_check(kind, spec, says):
    with pytest.raises(ConfigError, match=rf"^{kind} spec '{re.escape(spec)}': {says}"):
        registry.check_spec(kind, spec)


@pytest.mark.parametrize("kind, spec", GOOD)
def test_good_options_pass_the_spec_check(kind, spec):
    registry.check_spec(kind, spec)


def test_load_config_refuses_them_before_anything_loads(monkeypatch):
    from kame.config import load_config

    for module in ("kame.backend.stt.whisper", "kame.backend.stt.embedded", "kame.backend.stt.openai",
                   "kame.backend.llm.openai", "faster_whisper", "aiohttp"):
        monkeypatch.setitem(sys.modules, module, None)  # importing one now raises ImportError
    for override, says in [("backend.stt=embedded;foo=1", "unknown option 'foo'"),
                           ("backend.stt=whisper;whisper_interval=0", "whisper_interval must be a number > 0"),
                           ("backend.stt=openai:x;foo=1", "unknown option 'foo'"),
                           ("backend.llm=openai:x;temperature=1", "unknown option 'temperature'")]:
        key, _, spec = override.partition("=")
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: \w+ spec '{re.escape(spec)}': {says}"):
            load_config(None, [override])
    cfg = load_config(None, ["backend.stt=embedded;whisper_interval=1.0", "backend.llm=openai:x;chunk_timeout=20"])
    assert cfg.backend.stt == "embedded;whisper_interval=1.0"


URL = {"base_url": "http://127.0.0.1:9/v1", "api_key": "k"}  # (nothing is sent: the values fail first)


def _constructors():
    """(kind, spec, the constructor call with the same value, its owner): one refusal per table."""
    from kame.backend.llm.openai import OpenAIChat
    from kame.backend.stt.embedded import EmbeddedSTT
    from kame.backend.stt.openai import OpenAITranscriptionSTT
    from kame.backend.stt.whisper import WhisperSTT, check_whisper_options
    from kame.backend.tts.openai import OpenAITTS

    return [  # WHISPER_RULES, EMBEDDED_RULES, STREAMING_RULES, stt OPENAI_RULES, llm OPENAI_RULES
        ("stt", "whisper;final_beam=0", lambda: check_whisper_options("whisper", None, "0"), "whisper STT"),
        ("stt", "embedded;max_ps_lag=-1", lambda: EmbeddedSTT(max_ps_lag="-1"), "embedded STT"),
        ("stt", "whisper;max_utterance=0", lambda: WhisperSTT(max_utterance="0"), "whisper STT"),
        ("stt", "openai:x;timeout=0", lambda: OpenAITranscriptionSTT("x", timeout="0", **URL), "openai STT"),
        ("llm", "openai:x;chunk_timeout=-1", lambda: OpenAIChat("x", chunk_timeout="-1", **URL), "openai LLM"),
        # connect_timeout: one rule (kame.backend.options.CONNECT_TIMEOUT) for the three spec tables
        # and the adapters' shared constructor part (openai_http._init_http)
        ("stt", "openai:x;connect_timeout=0", lambda: OpenAITranscriptionSTT("x", connect_timeout="0", **URL),
         "openai STT"),
        ("llm", "openai:x;connect_timeout=0", lambda: OpenAIChat("x", connect_timeout="0", **URL), "openai LLM"),
        ("tts", "openai:x;connect_timeout=0", lambda: OpenAITTS("x", connect_timeout="0", **URL), "openai TTS"),
    ]


def test_the_constructors_check_by_the_same_rules():
    """A value the config check refuses, given to the constructor, is refused with the same
    "<option> must be ..., got <value>" (was: only the tables' names were compared, which are
    defined as each other)."""
    pytest.importorskip("aiohttp")
    from kame.backend.stt.openai import OpenAITranscriptionSTT

    for kind, spec, construct, owner in _constructors():
        with pytest.raises(ConfigError) as checked:
            registry.check_spec(kind, spec)
        said = str(checked.value).removeprefix(f"{kind} spec '{spec}': ")
        assert said != str(checked.value) and " must be " in said, said
        with pytest.raises(ConfigError) as made:
            construct()
        assert str(made.value) == f"{owner}: {said}", (spec, str(made.value))
    with pytest.raises(ConfigError, match=r"^openai STT: response_format must be one of verbose_json, json"):
        OpenAITranscriptionSTT("x", response_format="text", **URL)
