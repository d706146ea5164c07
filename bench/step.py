"""Front-end LM step time (same as ``kame bench step``).

    python bench/step.py [--frontend SPEC ...] [--batch B ...] [--frames N]
"""

import sys

from kame.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "step", *sys.argv[1:]]))
