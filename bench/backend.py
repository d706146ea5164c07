"""STT WER/latency, LLM time-to-first-token and speed, oracle lag (same as ``kame bench backend``).

    python bench/backend.py [--no-stt] [--llm SPEC ...] [--prompts N] [--turns N]
"""

import sys

from kame.bench.backend import run_cli

if __name__ == "__main__":
    sys.exit(run_cli())
