"""``kame bench sessions``: how many real-time tandem sessions one machine sustains.

For each front-end (default the random presets tiny and small) and each stepping mode
(batched: ONE step for all sessions per frame; per-session: one batch-1 step per session,
one after the other), it runs the real TandemAgent on the wall clock (MonotonicClock) with N
sessions (1, 2, 4, 8 by default) that each push 80 ms of audio every 80 ms, for a few seconds,
and reports the worker's compute time per frame (p50/p99; all sessions' encode + LM step +
decode + VAD), the frame load (p50 / 80 ms) and the missed-deadline ratio (frames finished after their 80 ms deadline / frames). N is
"sustained" when fewer than 5 % of the deadlines are missed. Because a shared machine makes
wall-clock step times noisy, it also reports the process CPU time per frame (all threads,
event loop included) and the sessions one core could carry at that cost (N x 80 ms / CPU per
frame): a contention-robust view of batched vs per-session cost. The back-end is off (front-end +
codec only: the STT/LLM run elsewhere or on other cores); VAD is the energy detector.

    kame bench sessions                                  # tiny + small, batched vs per-session
    kame bench sessions --frontend random:tiny --sessions 1 --sessions 16 --seconds 3
    kame bench sessions --codec mimi:random-tiny --threads 2
    python bench/sessions.py ...
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from ..cliargs import at_least, naming, thread_count, usable_cores
from ..config import MAX_SESSIONS
from ..errors import ConfigError
from .machine import pct

DEFAULT_FRONTENDS = ["random:tiny", "random:small"]
DEFAULT_SESSIONS = [1, 2, 4, 8]
SUSTAINED = 0.05  # missed-deadline ratio under which N sessions count as sustained


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontend", action="append", metavar="SPEC", help=f"repeatable; default {', '.join(DEFAULT_FRONTENDS)}")
    p.add_argument("--sessions", type=at_least(1, maximum=MAX_SESSIONS), action="append", help=f"repeatable; default {', '.join(map(str, DEFAULT_SESSIONS))}")
    p.add_argument("--mode", choices=("both", "batched", "per-session"), default="both",
                   help="how the sessions are stepped (not tandem/cascade: this bench is the tandem's front-end "
                        "alone): batched (one step for all sessions per frame), per-session (one batch-1 step "
                        "per session), or both (the default)")
    p.add_argument("--rows", type=at_least(1, maximum=MAX_SESSIONS), metavar="N",
                   help="rows of the batch (runtime.max_sessions), for a part-filled batch as a server's with "
                        "fewer users than rows: batched stepping only, at least the largest --sessions "
                        "(default: as many as the case's sessions)")
    p.add_argument("--codec", default="auto", help="codec spec (default: the front-end's own: embedded)")
    p.add_argument("--seconds", type=at_least(0.1, float), default=4.0, help="measured seconds per case (default 4)")
    p.add_argument("--warmup", type=at_least(0, float), default=0.8, help="unmeasured seconds first (default 0.8)")
    p.add_argument("--threads", type=thread_count, default=min(2, usable_cores()),
                   help="torch threads of the worker (default 2, or 1 on a one-core machine)")


async def run_case(frontend: str, codec: str, n: int, batched: bool, seconds: float, warmup: float,
                   threads: int, rows: int | None = None) -> dict:
    """N live sessions on the wall clock, in a batch of ``rows`` rows (None: N); returns step
    times and missed deadlines."""
    from ..config import load_config
    from ..runtime.clock import MonotonicClock
    from ..runtime.engine import TandemAgent
    from ..runtime.metrics import MetricsLog

    batch_rows = rows if batched and rows else n  # (per-session stepping: one-row models)
    cfg = load_config(None, {"frontend.spec": frontend, "codec.spec": codec, "backend.stt": "none",
                             "backend.llm": "none", "runtime.max_sessions": batch_rows,
                             "runtime.batched": batched,
                             "runtime.vad": "energy", "runtime.torch_threads": threads,
                             "runtime.stats_interval_s": 0.0})
    clock = MonotonicClock()
    log = MetricsLog()
    agent = TandemAgent(cfg, clock=clock, metrics=log)
    await agent.start()
    comps = dict(agent.components)
    sessions, drains = [], []
    rng = np.random.default_rng(0)
    frame = (rng.standard_normal(1920) * 0.1).astype(np.float32)

    async def drain(s):
        async for _ in s.outputs():
            pass

    try:  # (the agent stopped when Ctrl-C cancels the case too: was, its step thread left inside torch's
        # C++ code as the interpreter ended, an abort "terminate called without an active exception")
        for i in range(n):
            sessions.append(await agent.open_session(f"b{i}"))
        drains = [asyncio.create_task(drain(s)) for s in sessions]
        t0 = clock.now()
        k = 0
        measure_from = None
        while clock.now() - t0 < warmup + seconds:
            for s in sessions:  # the "clients": 80 ms of audio every 80 ms
                await s.push_audio(frame)
            if measure_from is None and clock.now() - t0 >= warmup:
                measure_from, cpu0, wall0 = len(log.events), time.process_time(), clock.now()
            k += 1
            await clock.sleep(t0 + k * 0.08 - clock.now())
        cpu = time.process_time() - cpu0  # CPU seconds of the whole process (all threads) while measuring
        wall = clock.now() - wall0
        events = log.events[measure_from or 0:]
    finally:
        for s in sessions:
            await s.close()
        await asyncio.gather(*drains, return_exceptions=True)
        await agent.stop()
    steps = [m.value for m in events if m.name == "step_time"]
    missed = [m.value for m in events if m.name == "missed_deadline"]
    return {"frontend": frontend, "codec": comps.get("codec"), "params": comps.get("frontend_params"),
            "batched": batched, "sessions": n, "rows": batch_rows, "frames": len(steps), "step_p50": pct(steps, 0.5),
            "step_p99": pct(steps, 0.99), "missed": len(missed), "missed_ratio": len(missed) / max(1, len(steps)),
            "max_late": max(missed, default=0.0), "cpu_per_frame": cpu / max(1, len(steps)),
            "cpu_share": cpu / max(wall, 1e-9)}


def table(rows: list[dict]) -> str:
    out = ["| front-end | params | codec | stepping | sessions | frames | step p50 / p99 (ms) | "
           "frame load (p50 / 80 ms) | missed deadlines | sustained | CPU ms / frame | sessions per core (est.) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        load = r["step_p50"] / 0.08  # share of each 80 ms frame the worker is busy (>= 1: cannot keep up)
        out.append(
            f"| `{r['frontend']}` | {r['params'] / 1e6:.1f} M | `{r['codec']}` | "
            f"{'batched' if r['batched'] else 'per-session'} | {r['sessions']}"
            f"{f' of {rows} rows' if (rows := r.get('rows', r['sessions'])) != r['sessions'] else ''} | {r['frames']} | "
            f"{r['step_p50'] * 1e3:.1f} / {r['step_p99'] * 1e3:.1f} | {load:.2f} | "
            f"{r['missed']} ({100 * r['missed_ratio']:.0f} %) | {'yes' if r['missed_ratio'] < SUSTAINED else 'no'} | "
            f"{r['cpu_per_frame'] * 1e3:.1f} | {r['sessions'] * 0.08 / max(r['cpu_per_frame'], 1e-9):.1f} |")
    return "\n".join(out)


def _codec(spec: str) -> str:
    """'auto' is the random front-ends' own codec ("embedded"); fall back to a tiny random
    Mimi (same token layout) if the fitted embedded codec is not installed. Another spec (the
    spec itself checked by main's load_config) is checked once, before any output, as cheaply as
    it can be: a Mimi checkpoint found and its header read, not its weights (a truncated or corrupt
    file said now); a random Mimi not built (nothing is left that can fail); any other codec (embedded:PATH, a plugin's) built once more, up front, and dropped: each
    case's agent builds its own (was: every codec built and dropped, mimi:random's 14 s too). One that
    cannot be (a missing checkpoint) is said at once, naming --codec (was: "codec.spec = ...: ...",
    a config key, once the header was out and the first case built its agent)."""
    from .. import registry
    from ..errors import KameError

    if spec != "auto":
        scheme, arg = registry.parse_spec(spec)
        with naming("--codec"):
            if scheme != "mimi":
                registry.create("codec", spec)
            else:
                from ..codec.mimi import check_arg
                from ..model.tensorfiles import check_safetensors

                source = check_arg(arg)  # (as the codec checks it: mimi:random-typo said as itself says it)
                if not isinstance(source, str):  # a checkpoint: checked as its loader does, its header read, not its
                    check_safetensors(source, "Mimi checkpoint")  # weights (a truncated, corrupt or misnamed file said
                    # now, not when the first case built its agent, after the header was out, as "codec.spec = ...")
        return spec
    try:
        registry.create("codec", "embedded")
        return "auto"
    except KameError as exc:
        print(f"note: codec 'embedded' unavailable ({exc}); using mimi:random-tiny")
        return "mimi:random-tiny"


def main(args) -> int:
    from ..config import load_config
    from ..runtime.frontend import frontend_form
    from .machine import header, stopped_by_ctrl_c

    command = header(args, add_arguments, "sessions")  # as given (--codec auto may become mimi:random-tiny below)
    frontends = args.frontend or DEFAULT_FRONTENDS
    with naming("--codec", key="codec.spec"):  # (as the options, not the config keys they set: was "codec.spec: ...")
        load_config(None, {"codec.spec": args.codec})
    args.codec = _codec(args.codec)
    for fe in frontends:  # every spec, before the first is measured (a typo would throw those runs away)
        with naming("--frontend", key="frontend.spec"):
            load_config(None, {"frontend.spec": fe})
            frontend_form(fe)  # (a plugin's: its factory reads it, as kame run's does)
    print(command, flush=True)
    ns = sorted(set(args.sessions or DEFAULT_SESSIONS))
    if args.rows is not None and (args.rows < ns[-1] or args.mode == "per-session"):
        raise ConfigError(f"--rows {args.rows}: " + (
            "per-session stepping has no shared batch (give --mode batched or both)" if args.mode == "per-session"
            else f"below --sessions {ns[-1]}" + ("" if args.sessions else " (the default list's largest)")
            + ": a batch holds at least its sessions"))
    modes = {"both": [True, False], "batched": [True], "per-session": [False]}[args.mode]
    rows: list[dict] = []

    def measure() -> None:  # (each case kept as it is measured: Ctrl-C keeps the ones before)
        for fe in frontends:
            for batched in modes:
                for n in ns:
                    r = asyncio.run(run_case(fe, args.codec, n, batched, args.seconds, args.warmup, args.threads,
                                             args.rows))
                    rows.append(r)
                    print(f"  {fe} {'batched' if batched else 'per-session'} N={n}: p50 {r['step_p50'] * 1e3:.1f} ms, "
                          f"missed {100 * r['missed_ratio']:.0f} %", flush=True)
                    if r["missed_ratio"] > 0.5:  # hopeless beyond: skip larger N
                        break

    interrupted = stopped_by_ctrl_c(measure, rows)
    if interrupted and not rows:
        return 130
    print()
    print(f"torch threads {args.threads}; {args.seconds:g} s per case after {args.warmup:g} s warm-up; "
          f"sustained = < {SUSTAINED:.0%} missed")
    print()
    print(table(rows))
    for fe in frontends:
        for batched in modes:
            run = [r for r in rows if r["frontend"] == fe and r["batched"] == batched]
            if not run:  # (not reached before a Ctrl-C)
                continue
            ok = [r["sessions"] for r in run if r["missed_ratio"] < SUSTAINED]
            skipped = [n for n in ns if n > run[-1]["sessions"]]  # after a case missed > 50 %
            print(f"- {fe} {'batched' if batched else 'per-session'}: sustains {max(ok) if ok else 0} "
                  f"session(s) of the tested {[r['sessions'] for r in run]}"
                  + (f" ({skipped} not run: {run[-1]['sessions']} missed over half its deadlines)"
                     if skipped and run[-1]["missed_ratio"] > 0.5 else f" ({skipped} not run: Ctrl-C)" if skipped else ""))
    return 130 if interrupted else 0



__all__ = ["add_arguments", "main", "run_case", "table"]
