"""Real-time sessions sustained vs front-end size, batched vs per-session stepping.

    python bench/sessions.py [--frontend random:tiny] [--sessions 4] [--seconds 4]

Same as ``kame bench sessions`` (implementation: src/kame/bench/sessions.py).
"""

import sys

from kame.bench.sessions import run_cli

if __name__ == "__main__":
    sys.exit(run_cli())
