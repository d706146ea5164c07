"""Server soak: concurrent sessions, protocol fuzzing, connect/disconnect cycles (same as ``kame bench soak``).

    python bench/soak.py [--agent echo|config] [--sessions 16] [--seconds 60] [--fuzz 10000] [--cycles 1000]
"""

import sys

from kame.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "soak", *sys.argv[1:]]))
