"""Front-end LM step time (same as ``kame bench step``).

    python bench/step.py [--frontend SPEC ...] [--batch B ...] [--frames N]
"""

import sys

from kame.bench.step import run_cli

if __name__ == "__main__":
    sys.exit(run_cli())
