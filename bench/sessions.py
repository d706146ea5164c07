"""Real-time sessions sustained vs front-end size, batched vs per-session stepping.

    python bench/sessions.py [--frontend random:tiny] [--sessions 4] [--seconds 4]

Same as ``kame bench sessions`` (implementation: src/kame/bench/sessions.py).
"""

import sys

from kame.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "sessions", *sys.argv[1:]]))
