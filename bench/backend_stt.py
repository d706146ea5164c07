"""STT WER and streaming latency of the embedded STTs (the STT part of ``kame bench backend``).

    python bench/backend_stt.py [--stt SPEC ...] [--sentences N]
"""

import sys

from kame.bench.backend_stt import run_cli

if __name__ == "__main__":
    sys.exit(run_cli())
