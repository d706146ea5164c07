"""FeedLog: what a tandem session's front-end steps were fed, kept once the session's
``record_feed()`` asks (`kame run` does: OUT.json's ``frontend_feed``, kame.runtime.filemode), so
kame.train.recorded can rebuild the training layout from it; LAYOUT_KEYS: the front-end layout
it records (TandemSession.frontend_layout, kame.runtime.session).
"""

from __future__ import annotations

from dataclasses import dataclass, field

LAYOUT_KEYS = ("max_delay", "delays", "oracle", "start_id", "pad_id", "text_card")  # TandemSession.frontend_layout


@dataclass
class FeedLog:
    """What a session's front-end steps were fed (kept once ``record_feed()`` asks: `kame run`
    does, and kame.train.recorded rebuilds the training layout from it). Steps count from the
    session's first (its row's reset); file mode feeds input frame k at step k."""

    frontend: dict | None = None  # TandemSession.frontend_layout() (None: a frame model that does not say)
    steps: int = 0  # the next step's index (steps taken so far, as far as this log knows)
    received: int = 0  # oracle events received (one "oracle" Meta each, in the same order)
    events: dict[int, int] = field(default_factory=dict)  # event n (arrival order) -> the step it went before
    tokens: list[tuple[int, int]] = field(default_factory=list)  # (step, oracle token fed), pad left out
    lost: list[int] = field(default_factory=list)  # steps the model took whose output never came (failed)
    unstepped: list[int] = field(default_factory=list)  # input frames a failed step took without the model stepping
    inputs: int = 0  # input frames handed to steps
    _handed: int = 0  # events handed to steps
    _jobs: list[list[int]] = field(default_factory=list)  # per step handed and not delivered yet: its events

    def handed(self, n: int) -> None:
        """An input frame (and ``n`` oracle events, applied before its step) handed to a step."""
        self._jobs.append(list(range(self._handed, self._handed + n)))
        self._handed += n
        self.inputs += 1

    def stepped(self, oracle_token: int, step: int | None = None) -> None:
        """The latest step handed was delivered: ``step`` is its index as the frame model counted
        it (RowOutput.step; None: counted here). The steps handed before it failed: the model's
        count says whether they ran (outputs lost: ``lost``) or not (their input frames never
        heard: ``unstepped``); exact for one failure between two delivered steps."""
        *failed, mine = self._jobs or [[]]
        self._jobs.clear()
        known, step = step is not None, self.steps if step is None else int(step)  # (unknown: they did not run)
        ran = max(0, min(len(failed), step - self.steps))  # failed steps that advanced the model
        for i, job in enumerate(failed):  # their events went before the step the model was at then
            for n in job:
                self.events[n] = min(self.steps + i, step)
        for n in mine:
            self.events[n] = step
        if known:
            self.lost.extend(range(self.steps, self.steps + ran))
            heard = self.inputs - 1  # this step's input frame (file mode: input frame k at step k)
            self.unstepped.extend(range(heard - len(failed) + ran, heard))
        if oracle_token >= 0:
            self.tokens.append((step, int(oracle_token)))
        self.steps = step + 1

    def to_json(self) -> dict:
        return {**dict.fromkeys(LAYOUT_KEYS), **(self.frontend or {}), "steps": self.steps,
                "oracle_tokens": [[f, t] for f, t in self.tokens], "lost_steps": list(self.lost),
                "unstepped_inputs": list(self.unstepped)}
