"""Checks of the back-end components' numeric options (timeouts, intervals, rates), so a bad
value is a ConfigError naming the component and the option at construction, not a hang, a busy
loop or a crash in a worker thread later.

    self.timeout = number("openai STT", "timeout", timeout, above=0)          # a finite float > 0
    self.final_beam = number("embedded STT", "final_beam", final_beam, min=1, cast=int)
    self.max_lag = number("STT", "max_lag", max_lag, min=0, allow_inf=True)   # inf: never skip

and, re-exported from kame.numeric (where they live: the model config and the codecs use them
too), the predicates for values read from a file or a message (``is_finite_number``: a time, a count).
"""

from __future__ import annotations

import math
import numbers

from ..errors import ConfigError
from ..numeric import is_finite_number, is_real_number

__all__ = ["number", "check_options", "CONNECT_TIMEOUT", "is_finite_number", "is_real_number"]

# the bounds of every OpenAI-compatible adapter's connect_timeout (s), as ``number`` takes them: the
# spec tables' (stt/llm/tts spec) and the constructors' (kame.backend.openai_http._init_http)
CONNECT_TIMEOUT = {"above": 0}


def number(owner: str, name: str, value, *, min: float | None = None, above: float | None = None,
           max: float | None = None, cast=float, allow_inf: bool = False):
    """``value`` as ``cast`` (float or int), checked: a ConfigError "<owner>: <name> must be ...,
    got <value>" if it is not a number (bools are not), is NaN / infinite (unless ``allow_inf``),
    or is below ``min`` / not above ``above`` / above ``max``."""
    kind = "a whole number" if cast is int else "a number"
    bounds = [f"{sign} {b:g}" for sign, b in ((">=", min), (">", above), ("<=", max)) if b is not None]
    want = " ".join([kind, " and ".join(bounds)]) if bounds else kind
    bad = ConfigError(f"{owner}: {name} must be {want}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise bad
    try:
        x = float(value)
    except (ValueError, OverflowError):  # (OverflowError: an int too large for a float, 400 digits)
        raise bad from None
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise bad
    if cast is int:
        if not x.is_integer():
            raise bad
        x = int(x)
    if (min is not None and x < min) or (above is not None and x <= above) or (max is not None and x > max):
        raise bad
    return x


def check_options(arg: str | None, where: str, rules: dict[str, dict], example: str = "",
                  allowed: tuple[str, ...] | None = None) -> dict[str, str]:
    """The config check of a spec's options after ';' (``arg``: the part after 'scheme:'): a
    ConfigError starting with ``where`` for a malformed or repeated option, one not in
    ``allowed`` (default: the names in ``rules``), or a value ``number`` refuses by
    ``rules[name]`` (the bounds the constructor checks it by, ``number(..., **rules[name])``);
    returns the options given, values as text."""
    from ..registry import split_options  # (the registry imports this module lazily too)

    _, given = split_options(arg, where, tuple(rules) if allowed is None else allowed, example)
    for name, value in given.items():
        if name in rules:
            number(where, name, value, **rules[name])
    return given
