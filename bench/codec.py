"""Codec encode/decode time per 80 ms frame (same as ``kame bench codec``).

    python bench/codec.py [--codec SPEC ...] [--frames N] [--batch B]
"""

import sys

from kame.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "codec", *sys.argv[1:]]))
