"""``kame bench train``: what `kame train` holds per process and how fast it steps, per layout.

For each layout (one process; torchrun with DistributedDataParallel; sharded with FSDP2; each
optionally bf16 and with recomputed activations: kame.train.parallel), it runs `kame train` for a
few steps on a small synthetic set under torchrun and reports, per process: the bytes of the
training state it holds (its weights, gradients and optimizer state: the local shards when
sharded), its resident memory after the steps and its peak during them (read as the last step
takes its batch: the steps before it, not the last one nor the final checkpoint's gather and
save), its peak during the loading before the steps (sharded: rank 0 alone loads the whole
model), its peak during the last step and the final checkpoint's save (sharded: the weights
gathered to rank 0, each process writing its optimizer shard), and the median step time (the
first two steps and the last are not timed). The RSS and step columns are the largest over the
processes; loading and saving show rank 0 / the largest of the others.

    kame bench train                                     # random:100m, 2 processes, four layouts
    kame bench train --frontend random:small --layout ddp --layout shard+bf16 --steps 8
    python bench/train.py ...

The set is made once with `kame data synth --llm none` (espeak voices, the embedded codec) in a
temporary folder, or given with --data (a manifest or a synth folder). Ctrl-C or SIGTERM stops the
layout's torchrun (which stops its processes) and removes the temporary folder: exit 130 (143).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..cliargs import at_least
from ..errors import CheckpointError, ConfigError, KameError
from ..train.parallel import PEER_FAILED
from .machine import rss_mb as _rss_mb  # (resident now, peak), nan off Linux where not measured

log = logging.getLogger(__name__)

LAYOUTS = ("single", "ddp", "ddp+bf16", "shard", "shard+bf16", "shard+bf16+ckpt")
DEFAULT_LAYOUTS = ["ddp", "shard", "shard+bf16", "shard+bf16+ckpt"]
QA = [("What is the capital of France?", "Paris is the capital of France, on the river Seine."),
      ("How many legs does a spider have?", "A spider has eight legs, and most have eight eyes too."),
      ("Why is the sky blue?", "Air scatters blue sunlight more than red, so the sky looks blue by day."),
      ("What is twelve times twelve?", "Twelve times twelve is one hundred and forty four.")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontend", default="random:100m", help="the front-end to train (default random:100m)")
    p.add_argument("--layout", action="append", choices=LAYOUTS,
                   help=f"repeatable (default: {' '.join(DEFAULT_LAYOUTS)}); single = one process")
    p.add_argument("--nproc", type=at_least(2), default=2, help="torchrun processes (default 2)")
    p.add_argument("--steps", type=at_least(4), default=6,
                   help="steps per layout (the first two and the last are not timed; default 6)")
    p.add_argument("--window", type=at_least(2), default=64, help="frames (80 ms each) per window (default 64: 5.1 s)")
    p.add_argument("--batch-size", type=at_least(1), default=1, help="windows per process per step (default 1)")
    p.add_argument("--data", default=None, help="a manifest or `kame data synth` folder (default: made here)")


def make_data(folder: Path) -> Path:
    """A few spoken QA dialogues (kame data synth, no simulator, espeak voices) in ``folder``."""
    from ..cli import main as kame

    qa = folder / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA))
    with contextlib.redirect_stdout(sys.stderr):  # (stdout is the bench's table)
        rc = kame(["data", "synth", str(qa), "-o", str(folder / "data"), "--llm", "none",
                   "--user-voice", "espeak:en-us+f2", "--agent-voice", "espeak:en-us+m3"])
    if rc != 0:
        raise SystemExit(f"kame bench train: making the data failed (exit {rc})")
    return folder / "data"


def _tensor_mb(tensors) -> float:
    """The bytes of the tensors this process holds (a sharded tensor's local shard), in MB."""
    from torch.distributed.tensor import DTensor

    total = 0
    for t in tensors:
        if t is None:
            continue
        t = t.to_local() if isinstance(t, DTensor) else t
        total += t.numel() * t.element_size()
    return total / 2**20


def _reset_peak() -> None:
    """Start this process's peak resident memory (VmHWM) afresh (Linux: /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # (then the peak includes the loading)
        pass


def worker(out: str, argv: list[str]) -> None:
    """One process of a layout: `kame train ARGV`, then its measures to OUT.rankR.json."""
    import torch

    from ..cli import _build_parser
    from ..train import finetune, launch

    kept, stamps = {}, []
    make, feed = finetune.make_optimizer, finetune.batches

    def keep_optimizer(model, tcfg):
        kept["model"], kept["opt"] = model, make(model, tcfg)
        return kept["opt"]

    def timed(*a, **k):  # a stamp as each step takes its batch, and the memory the steps before it left
        # (one batch a step: the bench never passes --grad-accum, whose steps take several)
        for b in feed(*a, **k):
            stamps.append(time.perf_counter())
            if len(stamps) == 1:
                kept["load_peak"] = _rss_mb()[1]
                _reset_peak()  # (from here the peak is the steps')
            kept["rss"], kept["peak"] = _rss_mb()
            if len(stamps) == int(args.steps):
                _reset_peak()  # (from here the peak is the last step's and the final checkpoint's)
            yield b

    finetune.make_optimizer, finetune.batches = keep_optimizer, timed
    args = _build_parser(argv)[0].parse_args(argv)
    if args.plugin:  # (kame bench train's own --plugin, passed on: a plugin front-end is created here)
        from .. import registry

        registry.load_plugins(args.plugin)
    launch.run(args)
    save_peak = _rss_mb()[1]
    model, opt = kept["model"], kept["opt"]
    # (the last step is not timed: its end is the final checkpoint's save; nor are the first two, the warm-up)
    steps = [b - a for a, b in zip(stamps[2:], stamps[3:])]
    state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor) and t.dim() > 0]
    rank = os.environ.get("RANK", "0")
    Path(f"{out}.rank{rank}.json").write_text(json.dumps({
        "params_mb": _tensor_mb(model.parameters()), "grads_mb": _tensor_mb(p.grad for p in model.parameters()),
        "optim_mb": _tensor_mb(state), "rss_mb": kept["rss"], "peak_rss_mb": kept["peak"],
        "load_peak_mb": kept["load_peak"], "save_peak_mb": save_peak, "step_s": statistics.median(steps) if steps else float("nan")}))


def _split(ranks: list[dict], key: str) -> str:
    """Rank 0's figure / the largest of the others' ("rank 0's" alone for one process)."""
    from .machine import figure

    rest = [r[key] for r in ranks[1:]]  # (nan: not measured on this system, "n/a")
    return figure(ranks[0][key], ".0f", "n/a") + (f" / {figure(max(rest), '.0f', 'n/a')}" if rest else "")


def run_layout(layout: str, manifest: Path, args, tmp: Path) -> list[dict]:
    """Each process's measures for one layout."""
    nproc = 1 if layout == "single" else args.nproc
    out = tmp / layout
    from .machine import plugin_words

    train = [*plugin_words(args), "train", str(manifest), "--frontend", args.frontend, "-o", str(tmp / f"run-{layout}"), "--overwrite",
             "--steps", str(args.steps), "--window", str(args.window), "--batch-size", str(args.batch_size),
             "--warmup", "1", "--save-every", "0", "--log-every", str(args.steps), "--device", "cpu",
             "--precision", "bf16" if "bf16" in layout else "fp32"]
    train += ["--shard"] if layout.startswith("shard") else []
    train += ["--checkpoint-activations"] if "ckpt" in layout else []
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "kame.bench.train", "--worker", str(out), *train]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = _run(cmd, env=env)
    if p.returncode != 0:
        log.debug("kame bench train: layout %s: its processes' stderr:\n%s", layout, p.stderr)
        raise KameError(f"bench train: layout {layout} failed: {child_error(p.stderr, p.returncode)}")
    return [json.loads((tmp / f"{layout}.rank{r}.json").read_text()) for r in range(nproc)]


STOP_S = 60.0  # torchrun's time to stop its processes (it gives them 30 s, then kills them) before it is killed


def _run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True), except that when Ctrl-C or SIGTERM (main's
    KeyboardInterrupt) cuts it short, torchrun gets SIGTERM, which it passes to its processes, and up to
    STOP_S to end (was: subprocess.run's SIGKILL, which left the processes running, ppid 1)."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            out, err = proc.communicate()
        except BaseException:
            proc.terminate()
            try:
                proc.communicate(timeout=STOP_S)
            finally:  # (a second Ctrl-C, or torchrun still running: killed)
                if proc.poll() is None:
                    proc.kill()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


_EXCEPTION = re.compile(r"(\w+\.)*\w+(Error|Exception|Interrupt|Exit)(:|$)")
_RANK = re.compile(r"^\[rank(\d+)\]:")


def _root_cause(stderr: str) -> tuple[int, int, str] | None:
    """(rank, exit code, signal name or "") of torchrun's "Root Cause (first observed failure):"
    block ("rank      : 0 (local_rank: 0)", "exitcode  : -9 (pid: 29940)  (SIGKILL)"), or None."""
    _, sep, block = stderr.partition("Root Cause (first observed failure):")
    rank = re.search(r"^\s*rank\s*:\s*(\d+)", block, re.M)
    code = re.search(r"^\s*exitcode\s*:\s*(-?\d+)(.*)$", block, re.M)
    if not (sep and rank and code):
        return None
    signal = re.search(r"\((SIG\w+)\)", code.group(2)) or re.search(r"Signal \d+ \((SIG\w+)\)", block)
    return int(rank.group(1)), int(code.group(1)), signal.group(1) if signal else ""


_KAME_ERROR = re.compile(r"kame(\.\w+)*\.\w+(Error|Exception): ")
# the others' line when one process fails a check they all make (kame.train.parallel.agree: the command's checks,
# the encode share): "kame.errors.ConfigError: train: rank 1 (on HOST) failed: <its error>" (parallel.peer_failed,
# matched by its PEER_FAILED); the failing one's own line says the same first (was: "another process failed ...",
# kame's wording before parallel.agree)
_ECHO = re.compile(_KAME_ERROR.pattern + PEER_FAILED.pattern)


def child_error(stderr: str, code: int) -> str:
    """What a layout's failed processes said, in one line. For the rank torchrun's "Root Cause"
    names (the first to fail: the others fail after it, with gloo's "Connection closed by peer" or
    kame's echo of its error, "train: rank R failed: ...", _ECHO): its kame error
    ("kame.train.data.DataError: train: no manifest at ..."), else its last exception line, else
    that it was killed by a signal ("rank 0 was killed by SIGKILL (out of memory?)") or its exit
    code; when that rank only echoes another's error, the others' own lines. Without that block:
    the kame errors (each once, in order; the echoes left out when a process said more), else each
    process's last exception line; else torchrun's exit code (the whole stderr is logged at debug
    level: kame -v)."""
    tagged = []  # (the rank of torch's "[rankN]:" prefix or None, the line without it)
    for ln in stderr.splitlines():
        m = _RANK.match(ln)
        tagged.append((int(m.group(1)) if m else None, (ln[m.end():] if m else ln).strip()))
    more = " (kame -v shows their whole output)"
    last = {}  # each rank's last exception line (None: lines without a prefix, one process's)
    errors = {}  # each rank's kame errors, each once, in order
    for rank, ln in tagged:
        if _EXCEPTION.match(ln) and "ChildFailedError" not in ln:  # (torchrun's own, after theirs)
            last[rank] = ln
        if _KAME_ERROR.match(ln):
            errors.setdefault(rank, {})[ln] = None
    said = {r for r, ln in last.items() if not _ECHO.match(ln)}  # the ranks that said more than another's error

    def tag(rank, line: str) -> str:
        return line if rank is None else f"rank {rank}: {line}"

    def own(rank) -> str | None:  # its kame errors (they say what to do), else its last exception line
        if rank in errors:
            return tag(rank, " | ".join(errors[rank]))
        return tag(rank, last[rank]) + more if rank in last else None

    root = _root_cause(stderr)
    if root:
        rank, exit_code, signal = root
        key = rank if any(r is not None for r, _ in tagged) else None  # (one process: torch adds no prefix)
        if key in last and key not in said and said:  # (it only saw another fail: theirs)
            return " | ".join(own(r) for r in last if r in said)
        if key in last or key in errors:
            return own(key)
        if exit_code < 0:  # (killed: no exception of its own)
            name = signal or f"signal {-exit_code}"
            return f"rank {rank} was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "") + more
        return f"rank {rank} exited with code {exit_code}" + more
    found = list(dict.fromkeys(ln for _, ln in tagged if _KAME_ERROR.match(ln)))
    if said:
        found = [ln for ln in found if not _ECHO.match(ln)]
    if found:
        return " | ".join(found)
    if last:
        return " | ".join(tag(r, ln) for r, ln in last.items() if r in said or not said) + more
    return f"its processes exited with {code}" + more


def check_arguments(args) -> Path | None:
    """The manifest --data names (None: made here) and --frontend's form, checked before any data is
    made or process started (a DataError, ConfigError or CheckpointError naming the option, as
    kame train's and kame bench step's own checks; was: a worker's traceback and torchrun's)."""
    from ..runtime.frontend import frontend_form
    from ..train.batching import manifest_entries

    try:
        frontend_form(args.frontend)
    except (ConfigError, CheckpointError) as exc:
        raise type(exc)(f"bench train --frontend {args.frontend}: {exc}") from None
    return manifest_entries(args.data, command="bench train --data")[0] if args.data else None


def main(args) -> int:
    from ..cli import say
    from ..runtime.interrupt import exit_status, sigterm_as_ctrl_c, stopped_by

    stopped: list[str] = []
    try:  # (SIGTERM: as Ctrl-C; was: the default, torchrun's processes left running)
        with sigterm_as_ctrl_c() as stopped:
            return _bench(args)
    except KeyboardInterrupt:
        name = stopped[0] if stopped else "SIGINT"
        say(f"\nkame bench train: {stopped_by(name)}")  # (one write: was print's two)
        # (said: was raised again for exit 130, and kame's main said "kame bench train: interrupted" too)
        return exit_status(name)


def _bench(args) -> int:
    from .machine import figure, header

    layouts = args.layout or DEFAULT_LAYOUTS
    data = check_arguments(args)
    with tempfile.TemporaryDirectory(prefix="kame-bench-train-") as d:
        tmp = Path(d)
        manifest = data or make_data(tmp)
        for i, layout in enumerate(layouts):
            ranks = run_layout(layout, manifest, args, tmp)
            if i == 0:  # (the table begins with the first layout's results: a failure leaves no bare header)
                print(f"# kame bench train: {args.frontend}, window {args.window} x batch {args.batch_size} "
                      f"per process, {args.steps} steps (s/step: the median of steps 3..{args.steps - 1}), "
                      "1 thread per process")
                print(header(args, add_arguments, "train"))
                print("| layout | processes | weights MB | grads MB | optimizer MB | state MB | RSS MB "
                      "| peak RSS MB, steps | peak RSS MB, loading (rank 0 / others) "
                      "| peak RSS MB, last step + save (rank 0 / others) | s/step | frames/s |")
                print("|---|---|---|---|---|---|---|---|---|---|---|---|")
            r0 = ranks[0]  # (the ranks hold the same amounts but for uneven shards; rank 0's shown)
            state = r0["params_mb"] + r0["grads_mb"] + r0["optim_mb"]
            step = max(r["step_s"] for r in ranks)
            frames = args.window * args.batch_size * len(ranks) / step
            print(f"| {layout} | {len(ranks)} | {r0['params_mb']:.0f} | {r0['grads_mb']:.0f} | {r0['optim_mb']:.0f} "
                  f"| {state:.0f} | {figure(max(r['rss_mb'] for r in ranks), '.0f', 'n/a')} | "
                  f"{figure(max(r['peak_rss_mb'] for r in ranks), '.0f', 'n/a')} | {_split(ranks, 'load_peak_mb')} | "
                  f"{_split(ranks, 'save_peak_mb')} | {figure(step, '.2f')} | {figure(frames, '.0f')} |",
                  flush=True)
    return 0


if __name__ == "__main__":  # a torchrun process of run_layout
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    known, rest = parser.parse_known_args()
    worker(known.worker, rest)
