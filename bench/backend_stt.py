"""STT WER and streaming latency of the embedded STTs (the STT part of ``kame bench backend``).

    python bench/backend_stt.py [--stt SPEC ...] [--sentences N]
"""

import sys

from kame.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "backend", "--llm", "none", *sys.argv[1:]]))
