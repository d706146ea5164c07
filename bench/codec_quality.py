"""Codec intelligibility/fidelity benchmark (same as `kame bench codec-quality`).

    python bench/codec_quality.py --codec embedded --sentences 48
    python bench/codec_quality.py --channel room --sentences 12     # through a room first
    python bench/codec_quality.py --recordings registry             # real recordings
"""

import sys

from kame.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "codec-quality", *sys.argv[1:]]))
