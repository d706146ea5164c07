"""What a benchmark ran on and how it was called: the header every ``kame bench`` prints first,
so that its tables can be pasted into BENCHMARKS.md with the machine and the command.

    print(header(args, add_arguments, "step"))
    # command: kame bench step --frontend random:tiny --frames 5
    # machine: AMD EPYC (2 cores), load average 1.2; kame 0.1.0, torch 2.13.0+cpu, python 3.11.7; 2026-12-04 20:40 UTC
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shlex
import time
from typing import Callable

_SECRET_KEY = re.compile(r"(token|key|secret|password)$", re.I)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo; ``platform.processor()`` is empty on Linux) and
    the number of cores this process may use."""
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    from ..cliargs import counted

    return f"{name} ({counted(cores, 'core')})"  # (was: "(1 cores)" under taskset -c 0)


PROC_STATUS = "/proc/self/status"  # (Linux's; a test points it elsewhere to play another system)


def rss_mb() -> tuple[float, float]:
    """This process's resident memory now and its peak, in MB (the one reading every bench
    uses): Linux's /proc (VmRSS, VmHWM). Without /proc (macOS, Windows) the peak is
    ``resource``'s ru_maxrss (bytes on macOS, KiB elsewhere) and now is nan; nan for what cannot be
    measured at all (Windows has no ``resource``): a table shows it as "n/a" (figure)."""
    import sys

    try:
        with open(PROC_STATUS) as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError, IndexError):  # (no /proc, or not Linux's fields)
        pass
    try:
        import resource
    except ImportError:  # Windows
        return float("nan"), float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float("nan"), peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_line() -> str:
    from .. import __version__

    try:
        load = f"load average {os.getloadavg()[0]:.1f}"
    except OSError:
        load = "load average unknown"
    return (f"machine: {cpu_name()}, {load}; kame {__version__}, torch {_version('torch')}, "
            f"python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M %Z')}")


def _mask(value: str) -> str:
    """A value as shown: a secret --set value (…token=, …key=) hidden, and the "user:password@"
    of every URL in it shown as "***@" as the openai adapters show theirs (was: a second take on
    it here, which showed a password holding "/": "http://alice:pa/ss@host")."""
    from ..backend.openai_http import hide_userinfo  # (here: aiohttp is not for every bench's --help)

    key, eq, rest = value.partition("=")
    if eq and _SECRET_KEY.search(key.strip()):
        return f"{key}=***"
    first, *urls = value.split("://")  # (each part after a "://" starts at a URL's authority)
    return "://".join([first, *(hide_userinfo("//" + url)[2:] for url in urls)])


def plugin_words(args: argparse.Namespace) -> list[str]:
    """The ``--plugin MODULE`` words of kame's top-level options in ``args`` (to show them, or
    pass them on to the kame processes a bench starts)."""
    return [w for p in getattr(args, "plugin", None) or [] for w in ("--plugin", p)]


def command_line(args: argparse.Namespace, add_arguments: Callable[[argparse.ArgumentParser], None],
                 name: str) -> str:
    """The ``kame bench NAME ...`` command that gives ``args`` (the options that differ from
    their defaults, as the module's ``add_arguments`` declares them), secrets masked."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    words = ["kame"]
    words += plugin_words(args)
    words += ["bench", name]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings or not hasattr(args, action.dest):
            continue
        value, flag = getattr(args, action.dest), max(action.option_strings, key=len)
        if value == action.default or value is None or value is False or value == []:
            continue
        if value is True:
            words.append(flag)
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            words += [flag, _mask(_number(v) if isinstance(v, float) else str(v))]
    return " ".join(shlex.quote(w) for w in words)


def add_dtype_argument(p, default: str, note: str = "") -> None:
    """--dtype of kame bench step and codec: the names load_frontend and frontend.dtype take (bf16,
    fp16, half, fp32, float), stored as the full name (float32, bfloat16, float16)."""
    from ..model.config import DTYPE_NAMES

    # (``note`` after the parenthesis, which holds names only; was: inside it, "(or ..., fp32; mimi: ...)")
    also = ", ".join(k for k in DTYPE_NAMES if k not in DTYPE_NAMES.values())  # (was: float left out)
    p.add_argument("--dtype", type=lambda s: DTYPE_NAMES.get(s, s), choices=sorted(set(DTYPE_NAMES.values())),
                   default=None, help=f"weights dtype: float32, bfloat16 or float16 (or {also}){note}; "
                                      f"default: {default}")


def pct(xs: list[float], q: float) -> float:
    """The nearest-rank q-quantile (q in 0..1) of a bench's timings: a value that was measured,
    never one interpolated between two; nan for no values (a table prints it as "–")."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def figure(x: float, spec: str, none: str = "–") -> str:
    """A figure of a bench's table, or "–" where there is none (no speech frames, a one-piece
    reply's stream rate), ``none`` as given (e.g. "n/a": not measured on this system): never "nan"."""
    return format(x, spec) if math.isfinite(x) else none


def _number(v: float) -> str:
    """A float as short as it reads back exactly: 8.0 -> "8", 0.12345678 stays (was: "0.123457")."""
    short = format(v, "g")
    return short if float(short) == v else repr(v)


def header(args: argparse.Namespace, add_arguments: Callable[[argparse.ArgumentParser], None], name: str) -> str:
    """Two lines: ``command: kame bench NAME ...`` and ``machine: ...``."""
    return f"command: {command_line(args, add_arguments, name)}\n{machine_line()}"


def said_interrupted(cases: int, table: str = "table", case: str = "case", kept: str = "") -> None:
    """Ctrl-C during a bench's cases: one line saying what its ``table`` holds, the ``cases``
    measured so far (kame bench step's, sessions'; was, with none yet: exit 130, nothing said), or
    ``kept``, what is done with them instead, its {} the count of ``case`` (kame bench latency's:
    "analysing the 1 mode run before Ctrl-C ...")."""
    from ..cliargs import counted

    if not cases:
        text = f"Ctrl-C before the first {case} was measured; no {table}"
    elif kept:
        text = kept.format(counted(cases, case))
    else:
        text = f"the {table} holds the {cases} {case}(s) measured before Ctrl-C"
    print("\ninterrupted: " + text, flush=True)


def stopped_by_ctrl_c(measure: Callable[[], object], rows, table: str = "table", case: str = "case",
                      kept: str = "") -> bool:
    """Run a bench's ``measure()``, which adds each case to ``rows`` as it is measured: whether
    Ctrl-C cut it short, which is then said (``said_interrupted``, with ``table``, ``case`` and
    ``kept``); the cases measured before it are still in ``rows``, for the table (kame bench codec's,
    backend's, codec-quality's, latency's, sessions'; was, in the first four: exit 130, no table,
    nothing said). A second signal that quits at once (kame.runtime.interrupt.QuitAtOnce) goes on out."""
    from ..runtime.interrupt import QuitAtOnce

    try:
        measure()
    except QuitAtOnce:
        raise
    except KeyboardInterrupt:
        said_interrupted(len(rows), table, case, kept)
        return True
    return False
