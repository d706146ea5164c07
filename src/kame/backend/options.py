"""Checks of the back-end components' numeric options (timeouts, intervals, rates), so a bad
value is a ConfigError naming the component and the option at construction, not a hang, a busy
loop or a crash in a worker thread later.

    self.timeout = number("openai STT", "timeout", timeout, above=0)          # a finite float > 0
    self.final_beam = number("embedded STT", "final_beam", final_beam, min=1, cast=int)
    self.max_lag = number("STT", "max_lag", max_lag, min=0, allow_inf=True)   # inf: never skip

and the predicates for values read from a file or a message (``is_finite_number``: a time, a count).
"""

from __future__ import annotations

import math
import numbers

from ..errors import ConfigError


def number(owner: str, name: str, value, *, min: float | None = None, above: float | None = None,
           cast=float, allow_inf: bool = False):
    """``value`` as ``cast`` (float or int), checked: a ConfigError "<owner>: <name> must be ...,
    got <value>" if it is not a number (bools are not), is NaN / infinite (unless ``allow_inf``),
    or is below ``min`` / not above ``above``."""
    kind = "a whole number" if cast is int else "a number"
    bounds = [f">= {min:g}" if min is not None else "", f"> {above:g}" if above is not None else ""]
    want = " ".join(x for x in [kind, *bounds] if x)
    bad = ConfigError(f"{owner}: {name} must be {want}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise bad
    try:
        x = float(value)
    except ValueError:
        raise bad from None
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise bad
    if cast is int:
        if not x.is_integer():
            raise bad
        x = int(x)
    if (min is not None and x < min) or (above is not None and x <= above):
        raise bad
    return x


def is_real_number(x) -> bool:
    """An int or float (numpy's too), not a bool (which Python counts as an int)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def is_finite_number(x) -> bool:
    """A finite real number (numpy's too), not a bool: not NaN, not infinite (nor an int too large
    for a float: JSON's 1e400 written out as digits)."""
    try:
        return is_real_number(x) and math.isfinite(x)
    except OverflowError:
        return False
