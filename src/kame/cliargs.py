"""argparse ``type`` functions shared by kame's commands (``kame serve``, ``kame codec fit``,
``kame bench ...``): a bad value is an argparse error naming the option, exit status 2. And what
their messages share: the option an error is about (``naming``), a count and its noun (``counted``).

    p.add_argument("--sessions", type=at_least(1), default=4)           # an int >= 1
    p.add_argument("--seconds", type=at_least(0.1, float), default=4.0)  # a finite float >= 0.1
    p.add_argument("--sessions", type=at_least(1, maximum=256))         # ... and <= 256
    p.add_argument("--interval", type=more_than(0, float), default=0.5)  # a finite float > 0
    p.add_argument("--tail", type=tail_seconds, default=3.0)            # seconds in [0, 3600)
    p.add_argument("--config", action=Once)                             # given at most once
    p.add_argument("--hint-only", type=at_least(0), nargs=2, action=Ordered)   # A B, A <= B

    with naming("--tokenizer"):                                         # a KameError inside says
        tokenizer = TextTokenizer(args.tokenizer)                       # "--tokenizer: ..."

    print(f"{counted(n, 'dialogue')}, {counted(k, 'process', 'processes')}")  # "1 dialogue, 2 processes"

The checks of the files and folders a command writes are in kame.paths.
"""

import argparse
import contextlib
import numbers
import os

from .errors import KameError, PluginError
from .numeric import is_finite_number


def _number(text: str, cast):
    """``text`` as a finite ``cast`` (int or float), else argparse's error saying what it wanted."""
    try:
        value = cast(text)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if not is_finite_number(value):  # nan, inf, or an int too large for a float (was: OverflowError)
        too_large = " (too large)" if cast is int else ""
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}{too_large}")
    return value


def _bound(limit: float) -> str:
    """A limit as said in an error: an int exactly (was: 2**64 - 1 said as 1.84467e+19), a float as %g."""
    return str(int(limit)) if isinstance(limit, numbers.Integral) else f"{limit:g}"


def at_least(minimum: float, cast=int, maximum: float | None = None):
    """An argparse ``type``: a number >= minimum ("argument --x: must be >= 1, got 0"), and
    <= maximum if given."""
    def parse(text: str):
        value = _number(text, cast)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {_bound(minimum)}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {_bound(maximum)}, got {text}")
        return value
    return parse


def more_than(minimum: float, cast=float):
    """An argparse ``type``: a finite number > minimum ("argument --x: must be > 0, got 0"), for a
    quantity whose zero means nothing (a time between two things)."""
    def parse(text: str):
        value = _number(text, cast)
        if not value > minimum:
            raise argparse.ArgumentTypeError(f"must be > {_bound(minimum)}, got {text}")
        return value
    return parse


MAX_TAIL_S = 3600  # --tail, --max-tail: seconds of silence after an input, below this


def tail_seconds(text: str) -> float:
    """An argparse ``type`` for --tail and --max-tail: seconds of silence in [0, 3600) (was: checked
    after parsing, "kame: error: --tail must be ...", exit status 1; the check stays there,
    kame.runtime.filemode.check_tail, for the runs a command builds itself)."""
    value = _number(text, float)
    if not 0 <= value < MAX_TAIL_S:
        raise argparse.ArgumentTypeError(f"must be seconds in [0, {MAX_TAIL_S}), got {text}")
    return value


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # (not on every platform)
        return os.cpu_count() or 1


def thread_count(text: str) -> int:
    """An argparse ``type`` for --threads: 1 to this machine's cores (was: any number: 1000
    threads on 2 cores ran 18x slower and drove the load average past 300)."""
    cores = usable_cores()
    try:
        return at_least(1, int, cores)(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (this machine has {counted(cores, 'core')})") from None


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (``plural``: when not noun + "s"): "1 dialogue",
    "2 dialogues", "1 process" (was, in the reports: "1 dialogues", "1 windows", "2 process(es)")."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


class Ordered(argparse.Action):
    """A two-value option A B (nargs=2, each value checked by its ``type``) whose A may not be
    above B: else argparse's error naming the option ("argument --hint-only: A must be <= B, got
    5 2"; was: checked after parsing, exit status 1)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values[0] > values[1]:
            parser.error(f"argument {option_string}: A must be <= B, got {' '.join(map(_bound, values))}")
        setattr(namespace, self.dest, values)


@contextlib.contextmanager
def naming(flag: str, key: str | None = None):
    """kame's errors (KameError) raised inside name the option ``flag`` they are about: "--codec:
    unknown codec spec 'x' ..." (was: the spec's or file's error alone, or, checked as the config key
    ``key``, "codec.spec: ...", a key the user never typed: its name is replaced). A PluginError
    is said as it is (the plugin's fault, not the option's: as registry.check_key_spec does); one
    that names ``flag`` already is left as it is."""
    try:
        yield
    except PluginError:
        raise
    except KameError as exc:
        text = str(exc)
        if key is not None and text.startswith(f"{key}: "):
            text = text[len(key) + 2:]
        if not text.startswith((f"{flag}:", f"{flag} ")):
            exc.args = (f"{flag}: {text}",)
        raise


class Once(argparse.Action):
    """An option that may be given once: a second one is an argparse error (was: the last
    --config FILE silently replaced the first; --set is the way to add to a config)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) not in (None, self.default):
            parser.error(f"argument {option_string}: given twice ({getattr(namespace, self.dest)!r}, then {values!r}); "
                         f"give one (and --set KEY=VALUE for single keys)")
        setattr(namespace, self.dest, values)
