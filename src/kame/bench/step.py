"""``kame bench step``: front-end LM step time (temporal transformer + depformer + sampling).

For each config (default the random-weight presets tiny, small, 100m), batch size (1 and 4),
with and without the oracle stream, it steps the batched Stepper for a number of frames on one
CPU thread and reports p50 / p99 time per batched step, the real-time factor of the batched
step (mean step time / 80 ms frame: < 1 keeps up with all the batch's sessions), the parameter
count, and the oracle overhead (ratio of p50 times with / without the oracle stream; random
presets only, a checkpoint is loaded once, with it), as a markdown table.

    kame bench step                                   # tiny, small, 100m; batch 1 and 4
    kame bench step --frontend random:tiny --batch 1 --frames 50
    kame bench step --frontend /path/to/checkpoint --dtype bf16
    python bench/step.py ...
"""

from __future__ import annotations

import argparse
import time

from ..cliargs import at_least, naming, thread_count
from ..config import MAX_SESSIONS
from ..model.config import DTYPE_NAMES
from .machine import pct

DEFAULT_FRONTENDS = ["random:tiny", "random:small", "random:100m"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontend", action="append", metavar="SPEC",
                   help=f"frontend spec (repeatable); default: {' '.join(DEFAULT_FRONTENDS)}")
    p.add_argument("--batch", type=at_least(1, maximum=MAX_SESSIONS), action="append",
                   help=f"batch sizes (repeatable; default 1 and 4; at most {MAX_SESSIONS}, runtime.max_sessions' ceiling)")
    p.add_argument("--frames", type=at_least(1), default=40, help="timed steps per case (default 40)")
    p.add_argument("--warmup", type=at_least(0), default=5, help="untimed steps first (default 5)")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads (default 1)")
    p.add_argument("--dtype", default=None, choices=sorted(DTYPE_NAMES), help="weights dtype (default float32 on CPU)")



def bench_pair(plain, with_oracle, batch: int, frames: int, warmup: int) -> tuple[dict, dict]:
    """Step a Moshi-style model and the same model with the oracle stream alternately (so that
    CPU contention hits both alike); the oracle gets a new 20-token prediction every 2 s."""
    import torch

    from ..model.stepper import Sampling, Stepper

    steppers = [Stepper(m, batch, Sampling(), seed=0) for m in (plain, with_oracle)]  # (per-row streams, as kame serve's when frontend.seed is set)
    g = torch.Generator().manual_seed(1)
    cfg = plain.cfg
    times: list[list[float]] = [[], []]
    with torch.no_grad():
        for i in range(frames + warmup):
            if i % 25 == 0:
                for b in range(batch):
                    steppers[1].oracle.reset(b)
                    steppers[1].oracle.append(b, torch.randint(4, cfg.text_card, (20,), generator=g).tolist())
            user = torch.randint(0, cfg.card, (batch, cfg.n_user_q), generator=g) if cfg.n_user_q else None
            for j, st in enumerate(steppers):
                t0 = time.perf_counter()
                st.step(user)
                if i >= warmup:
                    times[j].append(time.perf_counter() - t0)
    return tuple(dict(p50=pct(t, 0.5), p99=pct(t, 0.99), mean=sum(t) / len(t)) for t in times)


def main(args: argparse.Namespace) -> int:
    from .machine import said_interrupted

    rows: list[dict] = []
    stopped = False
    try:
        measure(args, rows)
    except KeyboardInterrupt:  # (was: exit 130, nothing said)
        said_interrupted(len(rows))  # (the cases measured so far are still a table, as kame bench sessions')
        if not rows:
            return 130
        stopped = True
    print(f"\nfront-end step (temporal + depformer + sampling), batch step times, {args.frames} steps after "
          f"{args.warmup} warm-up, {args.dtype or 'float32'} weights, torch threads {args.threads}\n")
    print(table(rows))
    return 130 if stopped else 0


def measure(args: argparse.Namespace, rows: list[dict]) -> None:
    """main's cases, each appended to ``rows`` as it is measured."""
    import torch

    from ..model.expected import check_streamable
    from ..model.loaders import load_frontend
    from ..runtime.frontend import frontend_form, plugin_frontend
    from .machine import header

    torch.set_num_threads(args.threads)
    specs = args.frontend or DEFAULT_FRONTENDS
    # every spec, before the first is benched; a plugin's (or a built-in one a plugin replaced) is
    # its factory's to read, as kame run reads it (was: refused here, or the replacement ignored)
    with naming("--frontend"):
        forms = [frontend_form(spec) for spec in specs]
    print(header(args, add_arguments, "step"), flush=True)
    batches = args.batch or [1, 4]
    for spec, form in zip(specs, forms):
        if form[0] == "plugin":  # (created through the registry, as the runtime creates it)
            with_oracle, _ = plugin_frontend(spec, dtype=args.dtype, oracle=True, fetch_companions=False,
                                             before_weights=lambda info: check_streamable(info.config, spec))
            check_streamable(with_oracle.cfg, spec)  # (a factory may not have passed before_weights on)
        else:
            with_oracle, _ = load_frontend(spec, dtype=args.dtype, oracle=True, fetch_companions=False,
                                           spec_form=form,
                                           before_weights=lambda info: check_streamable(info.config, info.source))
        # The same weights without the oracle table (a Moshi model).
        plain, _ = load_frontend(spec, dtype=args.dtype, oracle=False, fetch_companions=False, spec_form=form) \
            if form[0] == "random" else (None, None)
        if plain is None:
            plain = with_oracle
        oracle_params = sum(p.numel() for p in with_oracle.oracle_emb.parameters()) if with_oracle.has_oracle else 0
        params = with_oracle.num_params() - oracle_params  # the Moshi-architecture part
        for b in batches:
            r_plain, r_orc = bench_pair(plain, with_oracle, b, args.frames, args.warmup)
            rows.append(dict(spec=spec, params=params, oracle_params=oracle_params, batch=b, plain=r_plain,
                             oracle=r_orc, same_model=plain is with_oracle))


def table(rows: list[dict]) -> str:
    lines = ["| frontend | params (M) | oracle table (M) | batch | step p50 / p99 (ms), no oracle "
             "| step p50 / p99 (ms), oracle | oracle overhead (p50 ratio) | per session (ms, p50 / batch) "
             "| RTF (mean step / 80 ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, o = r["plain"], r["oracle"]
        # A checkpoint is loaded once (with the oracle): there is no oracle-free model to compare.
        overhead = "n/a" if r.get("same_model") else f"{o['p50'] / p['p50']:.3f}"
        lines.append(
            f"| `{r['spec']}` | {r['params'] / 1e6:.1f} | {r['oracle_params'] / 1e6:.2f} | {r['batch']} "
            f"| {1e3 * p['p50']:.1f} / {1e3 * p['p99']:.1f} | {1e3 * o['p50']:.1f} / {1e3 * o['p99']:.1f} "
            f"| {overhead} | {1e3 * o['p50'] / r['batch']:.1f} | {o['mean'] / 0.08:.2f} |")
    return "\n".join(lines)
