"""What kame counts as a number in a value read from a file, a message or a caller (a config key,
a time, a count): the one "finite real number, not a bool" check. Imports nothing of kame's, so
the model config, the codecs, the cascade and the back-end all use it (``kame.backend.options``
re-exports both names).

    is_finite_number(1.5), is_finite_number(np.float32(2))   # True
    is_finite_number(True), is_finite_number(float("nan"))   # False: a bool is not a number here
    is_finite_number(10**400)                                 # False: too large for a float
"""

from __future__ import annotations

import math
import numbers


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
