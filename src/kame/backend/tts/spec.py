"""The options the built-in TTS specs take after ';', and their checks:

    espeak:en-us+f2;seed=0,rate=180,pitch=60     # EspeakTTS("en-us+f2", seed=0, rate=180, pitch=60)
    piper;seed=0,length_scale=1.1                 # PiperTTS(seed=0, length_scale=1.1); embedded: the same
    openai:tts-1:nova;speed=1.2,response_format=wav   # OpenAITTS("tts-1", voice="nova", speed=1.2, ...)

Light (no engine, no HTTP client; numpy only for the openai check's rate bounds, kame.audio's):
the registry calls ``check_espeak`` / ``check_piper`` / ``check_openai`` at the config check
(kame.registry.check_spec, as the schemes' ``options``), so an unknown option or a bad value is
a ConfigError naming the spec and the option before any voice loads (was, for openai: the
cascade fell back to espeak at start-up); the constructors check their keyword arguments by the
same rules (``ESPEAK_OPTIONS``, ``PIPER_OPTIONS``, ``openai_rules``, ``check_format``). A spec
alone gives an unseeded TTS (the default, for live speech: docs/backend.md, "Repeatable speech").
"""

from __future__ import annotations

from ...errors import ConfigError
from ..options import CONNECT_TIMEOUT, check_options

# name -> its bounds, as kame.backend.options.number takes them
_SEED = {"min": 0, "cast": int}
ESPEAK_OPTIONS = {
    "seed": _SEED,
    "rate": {"min": 80, "max": 450, "cast": int},  # words per minute (espeak-ng's range)
    "pitch": {"min": 0, "max": 100, "cast": int},  # base pitch, 50 normal
}
PIPER_OPTIONS = {
    "seed": _SEED,
    "length_scale": {"above": 0},  # speaking rate: larger is slower (None: the voice's own)
    "noise_scale": {"min": 0},  # generator noise (None: the voice's own)
}
ESPEAK_EXAMPLE = "espeak:en-us;seed=0,rate=180"
PIPER_EXAMPLE = "piper;seed=0"
# openai: the numbers' bounds (openai_rules) and the response format (check_format)
OPENAI_OPTIONS = ("response_format", "speed", "pcm_rate", "first_chunk_timeout", "chunk_timeout", "connect_timeout")
OPENAI_FORMATS = ("pcm", "wav")  # pcm: streamed; wav: read whole
OPENAI_EXAMPLE = "openai:tts-1:nova;speed=1.2"


def openai_rules() -> dict[str, dict]:
    """The openai TTS's numeric options -> their bounds (``pcm_rate``: the rates an audio file
    may have, kame.audio.read_wav's: else resampling it is refused at the first reply, or costs
    gigabytes)."""
    from ...audio import MAX_FILE_RATE, MIN_FILE_RATE

    return {"speed": {"above": 0}, "pcm_rate": {"min": MIN_FILE_RATE, "max": MAX_FILE_RATE, "cast": int},
            "first_chunk_timeout": {"above": 0}, "chunk_timeout": {"above": 0}, "connect_timeout": CONNECT_TIMEOUT}


def check_format(owner: str, value) -> str:
    """The openai TTS's ``response_format``, checked (ConfigError naming ``owner``)."""
    if value not in OPENAI_FORMATS:
        raise ConfigError(f"{owner}: response_format must be 'pcm' or 'wav', got {value!r}")
    return value


def check_espeak(arg: str | None, where: str) -> None:
    """The config check of an espeak spec's options (``arg``: the part after 'espeak:')."""
    check_options(arg, where, ESPEAK_OPTIONS, ESPEAK_EXAMPLE)


def check_piper(arg: str | None, where: str) -> None:
    """The config check of a piper (or embedded) spec's options."""
    check_options(arg, where, PIPER_OPTIONS, PIPER_EXAMPLE)


def check_openai(arg: str | None, where: str) -> None:
    """The config check of an openai spec's options (``arg``: the part after 'openai:')."""
    given = check_options(arg, where, openai_rules(), OPENAI_EXAMPLE, OPENAI_OPTIONS)
    if "response_format" in given:
        check_format(where, given["response_format"])
