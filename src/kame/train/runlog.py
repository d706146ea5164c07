"""`kame train`'s log rows (rank 0's): on stdout and in OUT/log.jsonl (docs/training.md).

A row is the mean over the steps since the row before (--log-every). A resumed run starts its mean
at the step it resumed from, so its first row may average fewer steps than the uninterrupted run's
row of the same number: the row says so ("mean of steps 7-8"). OUT/log.jsonl holds one JSON object
a row (step, loss, text, audio, lr, frames_per_s, time: seconds since the epoch, steps: the first
and last step it averages); a new run starts it afresh, as does a run resumed into another OUT; a
run resumed in its checkpoint's own folder appends to it (a step run again after a resume from an
older checkpoint appears twice: the later row is the one the checkpoints go on from).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from .checkpoint import LOG


class RunLog:
    """The rows of a run that goes on from ``step``, echoed and, with ``out``, written to
    OUT/log.jsonl, started afresh unless ``resumed`` (a run resumed in its checkpoint's own folder:
    appended to; a file that cannot be written or removed is said once, and the run goes on)."""

    def __init__(self, out, echo: Callable[[str], None], step: int, log_every: int, resumed: bool) -> None:
        self.path = Path(out) / LOG if out is not None else None
        self.echo, self.every, self.start = echo, max(1, log_every), step
        if self.path is not None and not resumed:
            try:
                self.path.unlink(missing_ok=True)  # (a run stopped before its first save: check_out let OUT be)
            except OSError as exc:
                self._cannot(exc)

    def _cannot(self, exc: OSError) -> None:
        self.echo(f"warning: cannot write {self.path} ({exc.strerror or exc}): the log rows go to stdout only")
        self.path = None

    def header(self) -> None:
        self.echo(f"{'step':>7} {'loss':>9} {'text':>9} {'audio':>9} {'lr':>10} {'frames/s':>9}")

    def row(self, step: int, means, lr: float, fps: float, n: int) -> None:
        """The row of ``step``: ``means`` (loss, text, audio) over its last ``n`` steps."""
        first = step - n + 1
        straight = step - ((step - 1) // self.every) * self.every  # (steps in the uninterrupted run's row)
        note = f"  mean of steps {first}-{step} only (resumed at {self.start})" if n != straight else ""
        loss, text, audio = (float(v) for v in means)
        self.echo(f"{step:>7} {loss:>9.4f} {text:>9.4f} {audio:>9.4f} {lr:>10.3g} {fps:>9.0f}{note}")
        if self.path is None:
            return
        rec = {"step": step, "loss": loss, "text": text, "audio": audio, "lr": lr, "frames_per_s": round(fps, 1),
               "time": round(time.time(), 3), "steps": [first, step]}
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError as exc:
            self._cannot(exc)
