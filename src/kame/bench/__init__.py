"""kame's benchmarks: one module per `kame bench NAME` (bench/*.py scripts call kame.cli), and
the argparse helpers they share."""

import argparse


def at_least(minimum: float, cast=int):
    """An argparse ``type``: a number >= minimum ("argument --x: must be >= 1, got 0")."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        return value
    return parse
