"""The options the built-in espeak and piper TTS specs take after ';', and their checks:

    espeak:en-us+f2;seed=0,rate=180,pitch=60     # EspeakTTS("en-us+f2", seed=0, rate=180, pitch=60)
    piper;seed=0,length_scale=1.1                 # PiperTTS(seed=0, length_scale=1.1); embedded: the same

Light (no engine, no numpy is imported): the registry calls ``check_espeak`` / ``check_piper`` at
the config check (kame.registry.check_spec, as the schemes' ``options``), so an unknown option or
a bad value is a ConfigError naming the spec and the option before any voice loads; the
constructors check their keyword arguments by the same rules (``option``). A spec alone gives
an unseeded TTS (the default, for live speech: docs/backend.md, "Repeatable speech").
"""

from __future__ import annotations

from ...registry import split_options
from ..options import number

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


def option(owner: str, name: str, value, rules: dict[str, dict]):
    """``value`` of option ``name`` checked by ``rules[name]`` (ConfigError "<owner>: <name> must
    be ..., got <value>"), as an int or float; text ("165") is read as a number."""
    return number(owner, name, value, **rules[name])


def _check(arg: str | None, where: str, rules: dict[str, dict], example: str) -> None:
    _, given = split_options(arg, where, tuple(rules), example)
    for name, value in given.items():
        option(where, name, value, rules)


def check_espeak(arg: str | None, where: str) -> None:
    """The config check of an espeak spec's options (``arg``: the part after 'espeak:')."""
    _check(arg, where, ESPEAK_OPTIONS, ESPEAK_EXAMPLE)


def check_piper(arg: str | None, where: str) -> None:
    """The config check of a piper (or embedded) spec's options."""
    _check(arg, where, PIPER_OPTIONS, PIPER_EXAMPLE)
