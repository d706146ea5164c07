"""kame run's files from a played conversation, and one agent that plays many conversations.

    run = prepare_run(args)                    # checks -o, reads the input, adds --tail (before any load)
    rec = ...                                  # filemode.run_conversation(cfg, run.user, ...) or FileAgent.play
    rc = write_run(args, cfg, run, rec)        # OUT.wav, OUT.json, OUT.png and the printed summary

``kame run`` (kame.runtime.filemode.main) builds, starts and stops an agent for its one
conversation. ``FileAgent`` builds and starts one agent and plays every conversation into a new
session of it, in one event loop (kame eval mtbench: the models load once, not once per
question; a 7B front-end reads ~15 GB of weights each time). Each session's record and files are
what kame run makes of the same input (filemode.play_session). A run that fails, or after which
the agent is not sound (its frame loop ended, a front-end step failed), costs the agent: it is
stopped, said on stderr, and the next run builds a new one. This module is apart from
filemode.py so that both stay readable (filemode: the conversation; runsummary: its summary).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import clipped_share, write_wav
from ..backend.types import FRAME_S, FRAME_SIZE as FRAME, SAMPLE_RATE as SR
from ..config import KameConfig
from ..errors import ConfigError, KameError
from ..paths import check_output_file, check_replaceable, write_replacing
from .clock import FakeClock
from .filemode import DEFAULT_MAX_TAIL_S, agent_track, check_tail, new_record, play_session, read_input
from .interrupt import exit_status, first_ctrl_c, stopped_by, unless_stopped
from .metrics import MetricsLog
from .runreport import answer_missing, final_missing, frontend_failure, late_final, stt_behind, user_words
from .runsummary import print_summary, reply_cut_off, reply_outcomes, summarize, unanswered, unheard

log = logging.getLogger(__name__)


@dataclass
class FileRun:
    """What kame run checked and read before the conversation."""

    out: Path  # OUT.wav
    user: np.ndarray  # the input, float32 mono 24 kHz, with --tail's silence
    note: str  # how the input was converted ("" if not)
    input_s: float  # the input's length, without the tail
    extend_s: float  # silence a reply under way may get after --tail (--max-tail - --tail)


def prepare_run(args) -> FileRun:
    """Check --tail/--max-tail and -o (OUT.json/OUT.png next to it), read the input: before the
    models load, not after the conversation."""
    max_tail = getattr(args, "max_tail", DEFAULT_MAX_TAIL_S)
    check_tail(args.tail, max_tail)
    max_tail = max(args.tail, max_tail)  # never below --tail
    out = check_output_file(args.output, suffix=".wav", why=" (OUT.json and OUT.png are written next to it)",
                            input=args.input, sidecars=(".json", ".png"))
    sides = [out.with_suffix(".json")] + ([] if args.no_png else [out.with_suffix(".png")])
    for side in sides:
        if side.resolve() == Path(args.input).resolve():  # (was: the input, talk.json, overwritten)
            raise ConfigError(f"-o {args.output}: OUT{side.suffix} would be {side}, the input file; give another -o")
        if side.is_dir():  # found now, not after the conversation
            raise ConfigError(f"-o {args.output}: {side} is a folder, so OUT{side.suffix} cannot be written "
                              f"next to it; remove it or give another -o")
    for path in [out] + sides:  # existing files that cannot be replaced (was: a traceback after the
        check_replaceable(path, f"-o {args.output}")  # conversation, OUT.wav replaced and OUT.json not)
    user, note = read_input(args.input)
    if note:
        print(f"input     {args.input}: {note}")
    input_s = user.shape[0] / SR
    user = np.concatenate([user, np.zeros(int(args.tail * SR), np.float32)])
    return FileRun(out, user, note, input_s, max_tail - args.tail)


def write_run(args, cfg: KameConfig, run: FileRun, rec: dict) -> int:
    """OUT.wav (user left, agent right), OUT.json, OUT.png (unless --no-png) and the printed
    summary of a played conversation ``rec``. 0; 130 when it was interrupted, TERMINATED_STATUS (143)
    when SIGTERM ended it (rec["interrupted_by"]; nothing written either way if no frame was
    played); KameError (the files written) when the front-end failed."""
    out, user = run.out, run.user
    n = rec["frames"] * FRAME  # the input, its tail and any extension for a reply under way (all played)
    by = rec.get("interrupted_by") if rec["interrupted"] else None
    stopped, status = stopped_by(by), exit_status(by)
    if rec["interrupted"] and not n:
        print(f"{stopped} before the conversation started; nothing written", file=sys.stderr)
        from ..backend.childproc import exit_if_loading

        exit_if_loading(status)  # (a front-end still loading in a thread would hold the exit to its end)
        return status
    extended_s = max(0, n - math.ceil(user.shape[0] / FRAME) * FRAME) / SR
    user_clipped = clipped_share(user[:round(run.input_s * SR)])  # (an input louder than full scale: of it, not its tail)
    user = np.pad(user, (0, max(0, n - user.shape[0])))[:n]
    agent = agent_track(rec, n)
    clipped = clipped_share(agent)  # the wav holds [-1, 1]: say so if the agent exceeded it
    agent = np.clip(agent, -1.0, 1.0)
    write_wav(out, np.stack([user, agent], axis=1), SR)
    summary = summarize(rec, fast=args.fast)  # (its "pacing")
    summary["agent_clipped_fraction"] = clipped
    summary["user_clipped_fraction"] = user_clipped
    summary["reply_cut_off"] = reply_cut_off(rec, agent)
    summary["unanswered"] = unanswered(rec)
    summary["replies"] = reply_outcomes(rec)
    summary["tail_extended_s"] = extended_s
    if summary["mode"] != "cascade":  # rows each front-end step codes (a cascade has no front-end)
        summary["step_rows"] = cfg.runtime.max_sessions if cfg.runtime.batched else 1
    summary["answer_missing"] = None if rec["interrupted"] else answer_missing(rec)
    summary["final_missing"] = None if rec["interrupted"] else final_missing(rec)
    summary["late_final"] = late_final(rec) if summary["unanswered"] else None
    summary["max_tail_reached"] = rec["max_tail_reached"]
    summary["unheard"] = None if rec["interrupted"] else unheard(rec)
    # (said in place of "unheard"'s blame; not of --fast, whose virtual time outruns any STT: FAST says so)
    summary["stt_behind"] = None if rec["interrupted"] or args.fast else stt_behind(rec)
    summary["interrupted"] = rec["interrupted"]
    summary["interrupted_by"] = by  # "SIGINT" (Ctrl-C), "SIGTERM", or None
    random_fe = bool(summary["frontend_random"])
    doc = {
        "input": str(args.input), "input_conversion": run.note, "output": str(out), "pacing": summary["pacing"],
        "duration_s": rec["duration_s"], "tail_s": args.tail, "tail_extended_s": extended_s,
        "components": rec["components"],
        "frontend_random": random_fe,
        "note": rec["components"].get("frontend_note", "") if random_fe else "",
        "summary": summary,
        "user_words": user_words(rec),
        "transcripts": rec["transcripts"], "oracle": rec["oracle"], "agent_text": rec["agent_text"],
        "vad": rec["vad"], "metrics": rec["metrics"], "backend": rec["backend"], "errors": rec["errors"],
        "other_meta": rec["other"], "frontend_feed": rec.get("frontend_feed"),
        "stats": rec["stats"][-1] if rec["stats"] else {},
        "config": cfg.to_dict(),
    }
    text = json.dumps(doc, indent=1, default=str)
    write_replacing(out.with_suffix(".json"), lambda tmp: tmp.write_text(text))  # (KameError naming it)
    if not args.no_png:
        fe = f"{summary['frontend']}" + (" (RANDOM WEIGHTS: babble, not an answer)" if random_fe else "")
        parts = ([f"front-end={fe}", f"codec={summary['codec']}"] if summary["frontend"] else []) \
            + [f"stt={summary['stt']}", f"llm={summary['llm']}"] + ([f"tts={summary['tts']}"] if summary.get("tts") else [])
        from .timeline import plot_timeline

        plot_timeline(out.with_suffix(".png"), user, agent, rec,
                      f"kame run {Path(args.input).name}: mode={summary['mode']} " + " ".join(parts)
                      + ("  (INTERRUPTED)" if rec["interrupted"] else ""))
    print_summary(summary, out, args.no_png)
    if rec["interrupted"]:
        print(f"{stopped} after {rec['duration_s']:.2f} s of the input's {run.input_s:.2f} s "
              f"(+{args.tail:g} s tail): the files hold what was played", file=sys.stderr)
        return status
    reason = frontend_failure(summary, rec["errors"], out)
    if reason:  # exit 1 (cli), the files written: they hold what the front-end produced
        raise KameError(reason)
    return 0


class FileAgent:
    """An agent (built from ``cfg`` on its own FakeClock and MetricsLog) that plays conversations
    one after another, each into a new session, all in the event loop of ``runner`` (an
    asyncio.Runner the caller keeps, and closes after ``close()``: interrupt.close_runner). Built and
    started by the first ``play``; built again only after a run that left it unusable."""

    def __init__(self, cfg: KameConfig, runner: asyncio.Runner) -> None:
        self.cfg, self.runner = cfg, runner
        self.agent = self.clock = self.metrics = None
        self.started = False
        self.builds = 0  # agents built so far
        self.dropped: str | None = None  # why the last agent was given up (said when the next is built)

    def play(self, pcm: np.ndarray, *, fast: bool = False, extend_s: float = 0.0) -> dict:
        """filemode.play_session's record of ``pcm`` (tail included). Ctrl-C or SIGTERM ends the
        conversation and returns what was played (rec["interrupted"], rec["interrupted_by"]
        "SIGINT"/"SIGTERM"; frames 0 if it came while loading), as in kame run: write_run then
        returns 130 or TERMINATED_STATUS (143). Raises what the run raises (the agent is then given up)."""
        return self.runner.run(self._play(pcm, fast, extend_s))

    async def _play(self, pcm: np.ndarray, fast: bool, extend_s: float) -> dict:
        from .engine import build_agent

        # (SIGTERM as Ctrl-C, as in kame run: was killed at once, a loading embedded LLM child left to
        # finish its load as an orphan, since the default action runs no exit hook)
        async with first_ctrl_c("ending the conversation here", sigterm=True) as stop:
            load0 = time.perf_counter()
            why = self._not_running() if self.started else None
            if why:  # (e.g. its frame loop ended after the last run)
                await self._drop(why)
            if self.agent is None:
                if self.dropped:  # (kame eval mtbench: in this question's ID.log)
                    print(f"agent     built again: the one before was given up ({self.dropped})")
                self.clock, self.metrics = FakeClock(start=FRAME_S), MetricsLog()
                self.agent = build_agent(self.cfg, clock=self.clock, metrics=self.metrics)
                self.builds += 1
            if not self.started:
                try:
                    if not await unless_stopped(self.agent.start(), stop):  # loads the models
                        return {**new_record(), "interrupted": True, "interrupted_by": stop.signal,
                                "frames": 0}  # Ctrl-C (SIGTERM) while loading
                except Exception as exc:  # (its error says it: the next run builds a new one, said then)
                    await self._drop(f"its start failed: {type(exc).__name__}: {exc}", say=False)
                    raise
                self.started = True
            self.metrics.events.clear()  # (the sessions before are recorded: a long eval does not grow it)
            try:
                rec = await play_session(self.agent, pcm, clock=self.clock, metrics=self.metrics, fast=fast,
                                         extend_s=extend_s, stop=stop, load_started=load0)
            except Exception as exc:
                await self._drop(f"a run failed: {type(exc).__name__}: {exc}")
                raise
            if rec.get("interrupted"):  # (the files' summary.interrupted_by, as kame run's)
                rec["interrupted_by"] = stop.signal
            why = self._unsound(rec)
            if why:
                await self._drop(why)
            return rec

    def _unsound(self, rec: dict) -> str | None:
        """Why the agent should not play the next conversation after ``rec``, or None."""
        if rec.get("failed_steps"):  # (a model that raised mid-step: its state is not to be trusted)
            return f"its front-end's step failed on {rec['failed_steps']} frame(s)"
        return self._not_running()

    def _not_running(self) -> str | None:
        """Why the started agent cannot play (its health() says it is not running), or None."""
        try:
            health = self.agent.health()
        except Exception as exc:  # noqa: BLE001 - a plugin agent's health() that raises
            return f"its health() failed: {type(exc).__name__}: {exc}"
        if isinstance(health, dict) and not health.get("running", True):
            return f"it is not running: {health.get('error') or 'no reason given'}"
        return None

    async def _drop(self, why: str | None, say: bool = True) -> None:
        """Stop the agent (its errors logged, not raised); the next play builds a new one (``say``:
        and says why now, on stderr)."""
        agent, self.agent, self.started, self.dropped = self.agent, None, False, why
        if why and say:
            print(f"the agent is stopped and a new one is built for the next run: {why}", file=sys.stderr, flush=True)
        if agent is not None:
            try:
                await agent.stop()
            except Exception as exc:  # noqa: BLE001 - given up anyway
                log.warning("stopping the agent failed: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        """Stop the agent, if one was built (in the runner's loop)."""
        if self.agent is not None:
            self.runner.run(self._drop(None))
