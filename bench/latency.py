"""Latency of the tandem vs the cascade on the same scripted dialogues (same as ``kame bench latency``).

    python bench/latency.py [--turns N] [--modes tandem,cascade] [--window S] [--set KEY=VALUE ...]
"""

import sys

from kame.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "latency", *sys.argv[1:]]))
