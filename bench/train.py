"""kame train's memory per process and step time per layout (DDP, sharded, bf16; same as ``kame bench train``).

    python bench/train.py [--frontend random:100m] [--layout shard+bf16 ...] [--steps 6]
"""

import sys

from kame.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "train", *sys.argv[1:]]))
