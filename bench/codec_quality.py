"""Codec intelligibility/fidelity benchmark (same as `kame bench codec-quality`).

    python bench/codec_quality.py --codec embedded --sentences 48
"""

import sys

from kame.bench.codec_quality import run_cli

if __name__ == "__main__":
    sys.exit(run_cli())
