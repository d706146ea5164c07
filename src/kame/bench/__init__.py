"""kame's benchmarks: one module per `kame bench NAME` (bench/*.py scripts call kame.cli), and
the argparse helpers they share."""

import argparse
import math


def at_least(minimum: float, cast=int):
    """An argparse ``type``: a number >= minimum ("argument --x: must be >= 1, got 0")."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            kind = "an integer" if cast is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        return value
    return parse
