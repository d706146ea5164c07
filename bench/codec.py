"""Codec encode/decode time per 80 ms frame (same as ``kame bench codec``).

    python bench/codec.py [--codec SPEC ...] [--frames N] [--batch B]
"""

import sys

from kame.bench.codec import run_cli

if __name__ == "__main__":
    sys.exit(run_cli())
