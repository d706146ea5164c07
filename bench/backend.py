"""STT WER/latency, LLM time-to-first-token and speed, oracle lag (same as ``kame bench backend``).

    python bench/backend.py [--no-stt] [--llm SPEC ...] [--prompts N] [--turns N]
"""

import sys

from kame.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "backend", *sys.argv[1:]]))
