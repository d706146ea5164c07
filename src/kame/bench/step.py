"""``kame bench step``: front-end LM step time (temporal transformer + depformer + sampling).

For each config (default the random-weight presets tiny, small, 100m), batch size (1 and 4),
with and without the oracle stream, it steps the batched Stepper for a number of frames on one
CPU thread and reports p50 / p99 time per batched step, the real-time factor of the batched
step (mean step time / 80 ms frame: < 1 keeps up with all the batch's sessions), the parameter
count, and the oracle overhead (ratio of p50 times with / without the oracle stream), as a
markdown table. Each front-end is loaded with its own oracle setting, as kame run's
frontend.oracle=auto loads it (a Kyutai STT checkpoint, or a config.json with "oracle": false,
has none). "no oracle" times the same weights without the oracle stream, as frontend.oracle=off
runs them; "oracle" with it, fed a prediction every 2 s; a front-end without one gets its
"no oracle" time only (the others n/a, with the reason under the table).

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
from .machine import add_dtype_argument, pct

DEFAULT_FRONTENDS = ["random:tiny", "random:small", "random:100m"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontend", action="append", metavar="SPEC",
                   help=f"frontend spec (repeatable); default: {' '.join(DEFAULT_FRONTENDS)}")
    p.add_argument("--batch", type=at_least(1, maximum=MAX_SESSIONS), action="append",
                   help=f"batch sizes (repeatable; default 1 and 4; at most {MAX_SESSIONS}, runtime.max_sessions' ceiling)")
    p.add_argument("--frames", type=at_least(1), default=40, help="timed steps per case (default 40)")
    p.add_argument("--warmup", type=at_least(0), default=5, help="untimed steps first (default 5)")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads (default 1)")
    add_dtype_argument(p, "float32 on CPU")



def bench_pair(plain, with_oracle, batch: int, frames: int, warmup: int) -> tuple[dict, dict | None]:
    """Step a Moshi-style model and the same model with the oracle stream alternately (so that
    CPU contention hits both alike); the oracle gets a new 20-token prediction every 2 s.
    with_oracle None (a front-end without an oracle stream): ``plain`` alone, (times, None)."""
    import torch

    from ..model.stepper import Sampling, Stepper

    models = [m for m in (plain, with_oracle) if m is not None]
    # (per-row streams, as kame serve's when frontend.seed is set)
    steppers = [Stepper(m, batch, Sampling(), seed=0) for m in models]
    g = torch.Generator().manual_seed(1)
    cfg = plain.cfg
    times: list[list[float]] = [[] for _ in steppers]
    with torch.no_grad():
        for i in range(frames + warmup):
            if i % 25 == 0 and with_oracle is not None:
                for b in range(batch):
                    steppers[1].oracle.reset(b)
                    steppers[1].oracle.append(b, torch.randint(4, cfg.text_card, (20,), generator=g).tolist())
            user = torch.randint(0, cfg.card, (batch, cfg.n_user_q), generator=g) if cfg.n_user_q else None
            for j, st in enumerate(steppers):
                t0 = time.perf_counter()
                st.step(user)
                if i >= warmup:
                    times[j].append(time.perf_counter() - t0)
    r = [dict(p50=pct(t, 0.5), p99=pct(t, 0.99), mean=sum(t) / len(t)) for t in times]
    return r[0], (r[1] if with_oracle is not None else None)


def main(args: argparse.Namespace) -> int:
    from .machine import stopped_by_ctrl_c

    rows: list[dict] = []
    stopped = stopped_by_ctrl_c(lambda: measure(args, rows), rows)  # (the cases measured so far: still a table)
    if stopped and not rows:
        return 130
    print(f"\nfront-end step (temporal + depformer + sampling), batch step times, {args.frames} steps after "
          f"{args.warmup} warm-up, {args.dtype or 'float32'} weights, torch threads {args.threads}\n")
    print(table(rows))
    return 130 if stopped else 0


def measure(args: argparse.Namespace, rows: list[dict]) -> None:
    """main's cases, each appended to ``rows`` as it is measured."""
    import torch

    from ..model.lm import without_oracle
    from ..runtime.frontend import frontend_form
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
        model, note = load_own_oracle(spec, form, args.dtype)
        # (was: every front-end with an oracle table, and a checkpoint's "no oracle" column the
        # same model again, fed pad; a Kyutai STT one or an "oracle": false one was timed with a
        # table it never runs with)
        plain = without_oracle(model) if model.has_oracle else model
        params = plain.num_params()  # the Moshi-architecture part
        for b in batches:
            r_plain, r_orc = bench_pair(plain, model if model.has_oracle else None, b, args.frames, args.warmup)
            rows.append(dict(spec=spec, params=params, oracle_params=model.num_params() - params, batch=b,
                             plain=r_plain, oracle=r_orc, note=note))


def load_own_oracle(spec: str, form, dtype) -> tuple:
    """-> (model, note): the front-end with its own oracle stream or none, as kame run's
    frontend.oracle=auto loads it, and what its table row needs said ("" nothing)."""
    from ..errors import CheckpointError
    from ..model.expected import check_streamable
    from ..model.loaders import load_frontend
    from ..runtime.frontend import oracle_stream, plugin_frontend

    kind = form[0]
    if kind == "plugin":  # (created through the registry, as the runtime creates it; asked for an oracle stream)
        model, info = plugin_frontend(spec, dtype=dtype, oracle=True, fetch_companions=False,
                                      before_weights=lambda info: check_streamable(info.config, spec))
        check_streamable(model.cfg, spec)  # (a factory may not have passed before_weights on)
    else:
        def load(oracle):
            return load_frontend(spec, dtype=dtype, oracle=oracle, fetch_companions=False, spec_form=form,
                                 before_weights=lambda info: check_streamable(info.config, info.source))
        try:
            model, info = load(None)
        except CheckpointError as exc:
            if not exc.needs_oracle:
                raise
            # a KAME file whose config.json says "oracle": false: kame run refuses it with frontend.oracle
            # auto, and runs it with frontend.oracle=on (its oracle stream) or off (none): both are timed
            model, info = load(True)
            return model, ('its config.json says "oracle": false but its weights hold oracle_emb: kame run '
                           'needs frontend.oracle=on ("oracle") or off ("no oracle")')
    if not model.has_oracle:
        why = ("a Kyutai STT model, model_type stt" if info.model_type == "stt" else
               "its factory made none" if kind == "plugin" else
               "random weights built without one" if kind == "random" else 'its config says "oracle": false')
        return model, f"no oracle stream ({why}): timed without one only (oracle n/a)"
    if oracle_stream(model, info, kind) == "text_emb-copy":
        return model, ("no oracle_emb in the checkpoint (a Moshi one): its oracle stream is a copy of "
                       "text_emb, as kame run initialises it")
    return model, ""


def table(rows: list[dict]) -> str:
    lines = ["| frontend | params (M) | oracle table (M) | batch | step p50 / p99 (ms), no oracle "
             "| step p50 / p99 (ms), oracle | oracle overhead (p50 ratio) | per session (ms, p50 / batch) "
             "| RTF (mean step / 80 ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    notes: dict[str, str] = {}
    for r in rows:
        p, o = r["plain"], r["oracle"]
        run = p if o is None else o  # the model as kame run runs it (frontend.oracle=auto)
        orc = "n/a" if o is None else f"{1e3 * o['p50']:.1f} / {1e3 * o['p99']:.1f}"
        overhead = "n/a" if o is None else f"{o['p50'] / p['p50']:.3f}"
        size = "-" if o is None else f"{r['oracle_params'] / 1e6:.2f}"
        lines.append(
            f"| `{r['spec']}` | {r['params'] / 1e6:.1f} | {size} | {r['batch']} "
            f"| {1e3 * p['p50']:.1f} / {1e3 * p['p99']:.1f} | {orc} "
            f"| {overhead} | {1e3 * run['p50'] / r['batch']:.1f} | {run['mean'] / 0.08:.2f} |")
        if r.get("note"):
            notes[r["spec"]] = r["note"]
    below = [f"`{spec}`: {note}" for spec, note in notes.items()]
    if any(r["oracle"] is not None for r in rows):
        below.insert(0, "no oracle: the weights without the oracle stream (as frontend.oracle=off runs them); oracle: "
                        "with it, fed a 20-token prediction every 2 s; per session and RTF: the oracle's when it has one")
    lines += [""] + below if below else []
    return "\n".join(lines)
