"""STT WER and streaming latency of the embedded STTs (the STT part of ``kame bench backend``).

    python bench/backend_stt.py [--stt SPEC ...] [--sentences N]

Runs ``kame bench backend --llm none`` with the options given: its --help shows only the options
it takes (was: kame bench backend's usage, --llm and --no-stt included, which it sets itself).
"""

import argparse
import sys

from kame.bench.backend_stt import add_stt_arguments
from kame.cli import PLUGIN_HELP
from kame.cli import main as kame_main


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python bench/backend_stt.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    ap.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=PLUGIN_HELP)
    add_stt_arguments(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser().parse_args(argv)  # (--help, and an option it does not take, such as --llm: said here)
    return kame_main(["bench", "backend", "--llm", "none", *argv])


if __name__ == "__main__":
    sys.exit(main())
