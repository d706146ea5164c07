"""File mode: one conversation from a wav file -> OUT.wav (user left, agent right) + OUT.json + OUT.png.

    kame run question.wav -o answer.wav                        # simulated real time (default)
    kame run question.wav -o answer.wav --fast                 # as fast as possible
    kame run q.wav -o a.wav --config kame.toml --set backend.llm=openai:gpt-4.1 --mode cascade

Time semantics (simulated real time, the default). Everything runs on a FakeClock (virtual
time = the position in the output wav). Frame k of the input (samples [k*1920, (k+1)*1920))
is handed to the session at virtual time (k+1)*80 ms - when it would have fully arrived live -
and its audio is stamped k*80 ms. The clock then waits until (a) the agent produced that
frame's output (so the front-end never "misses" a deadline in virtual time: the step's cost is
reported as step_time instead), and (b) the wall clock since the start has reached the
virtual time: virtual time never runs ahead of wall time, so the back-end (STT, LLM, which
run on real threads/sockets) gets at least as much real time as it would live. If the
front-end is slower than real time, virtual time runs slower than wall time (slow motion)
and back-end latencies look shorter than live by that factor (reported as "slowdown").
``--fast`` drops (b): no wall-clock pacing, so back-end results arrive late in virtual time (use it
to check the front-end path, not back-end latencies); its STT is not cut off while it runs (sttloop.unpaced).

The agent's output of the step at virtual time t is placed at t in the right channel (it
cannot start earlier than the frame that caused it). Trailing silence (--tail, 3 s) lets the
agent answer after the user stops; a cascade still answering when it ends gets more silence, one
frame at a time, until its reply is over (--max-tail, 30 s, bounds the silence in all).

Outputs: OUT.wav (stereo 24 kHz), OUT.json (components, words with times, partial/final
transcripts, oracle events with the step each went into, agent text with times, the front-end's
delays and the oracle tokens it was fed, metrics, summary) and OUT.png (timeline).
A random-weight front-end is labelled as such everywhere: its speech is babble, not an answer.
(kame.runtime.filerun writes the files; kame.runtime.runsummary sums the record up; play_session
plays into a session of an agent already started: kame eval mtbench plays every question into one agent.)
Exit 0; 130 after Ctrl-C; 143 after SIGTERM, which ends the run as Ctrl-C does (the files hold what
was played: kame.runtime.interrupt.TERMINATED_STATUS; one while the files are written lets them be
finished first); 1 (after writing the files) when the front-end's step failed on more than half of
the frames (kame.runtime.runreport, which also words the summary's warnings).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time

import numpy as np

from ..audio import READ_FORMATS, mix_to_mono, read_wav, resample
from ..backend.types import FRAME_S, FRAME_SIZE as FRAME, SAMPLE_RATE as SR
from ..cliargs import MAX_TAIL_S, tail_seconds
from ..config import add_config_arguments, config_from_args, KameConfig
from ..errors import ConfigError, KameError
from .base import AgentAudio, AgentText, ErrorEvent, Meta
from .clock import FakeClock
from .interrupt import TERMINATED_STATUS, first_ctrl_c, run_to_end, sigterm_held, unless_stopped
from .metrics import MetricsLog
from .runreport import STEP_FAILED, open_turns
# what a played record says, its summary printed too (kame.runtime.runsummary): importable from here as before
# (by the tests; kame's own modules import them from runsummary)
from .runsummary import (AUDIBLE, fed_oracle_lags, print_summary, reply_cut_off, reply_outcomes, summarize,
                         unanswered, unheard)
from .sttloop import unpaced

__all__ = ["SR", "FRAME", "FRAME_S", "DEFAULT_MAX_TAIL_S", "FINAL_WAIT_S", "add_arguments", "run_conversation",
           "new_record", "play_session", "feed_record", "reply_pending", "agent_track", "read_input", "check_tail",
           "main", "AUDIBLE", "fed_oracle_lags", "print_summary", "reply_cut_off", "reply_outcomes", "summarize",
           "unanswered", "unheard"]

DEFAULT_MAX_TAIL_S = 30.0
FINAL_WAIT_S = 6.0  # a cascade's final transcript comes this soon after the speech ends, or never
# (unless the STT sent words of that speech already: then it is working, slowly, and a final comes)


def add_arguments(p) -> None:
    p.add_argument("input",
                   help=f"input audio: {READ_FORMATS} (any rate/channels; mixed to mono 24 kHz)")
    p.add_argument("-o", "--output", required=True, help="output wav (stereo: user left, agent right)")
    add_config_arguments(p)
    p.add_argument("--mode", choices=("tandem", "cascade"), default=None, help="override config mode")
    p.add_argument("--fast", action="store_true", help="no wall-clock pacing (as fast as possible)")
    p.add_argument("--tail", type=tail_seconds, default=3.0, help="seconds of silence appended (default 3)")
    p.add_argument("--max-tail", type=tail_seconds, default=DEFAULT_MAX_TAIL_S,
                   help=f"a cascade still answering after --tail gets more silence until its reply is over, up to "
                        f"this many seconds of silence in all (default {DEFAULT_MAX_TAIL_S:g}; never less than --tail)")
    p.add_argument("--no-png", action="store_true", help="skip the timeline plot")


async def run_conversation(cfg: KameConfig, pcm: np.ndarray, *, fast: bool = False, agent=None,
                           clock: FakeClock | None = None, metrics: MetricsLog | None = None,
                           frame_timeout_s: float = 5.0, extend_s: float = 0.0,
                           stop: asyncio.Event | None = None) -> dict:
    """Build an agent (or take ``agent``), start it, play ``pcm`` into one session of it
    (play_session: the record) and stop it. Once ``stop`` is set (kame run: Ctrl-C) no more
    frames are played: rec["interrupted"] (and rec["frames"] 0 when it came while loading)."""
    from .engine import build_agent

    clock = clock or FakeClock(start=FRAME_S)
    metrics = metrics or MetricsLog()
    agent = agent or build_agent(cfg, clock=clock, metrics=metrics)
    load0 = time.perf_counter()
    if not await unless_stopped(agent.start(), stop):  # loads the models (not counted in the pacing)
        return {**new_record(), "interrupted": True, "frames": 0}  # Ctrl-C while loading: nothing played
    try:
        return await play_session(agent, pcm, clock=clock, metrics=metrics, fast=fast, frame_timeout_s=frame_timeout_s,
                                  extend_s=extend_s, stop=stop, load_started=load0)
    finally:
        await agent.stop()


def new_record() -> dict:
    """A record's lists, empty (play_session fills them)."""
    return {"agent_audio": [], "agent_text": [], "transcripts": [], "oracle": [], "vad": [],
            "metrics": [], "errors": [], "backend": [], "stats": [], "info": {}, "other": []}


async def play_session(agent, pcm: np.ndarray, *, clock: FakeClock, metrics: MetricsLog | None = None,
                       fast: bool = False, frame_timeout_s: float = 5.0, extend_s: float = 0.0,
                       stop: asyncio.Event | None = None, load_started: float | None = None) -> dict:
    """Play ``pcm`` (float32 mono 24 kHz, tail included) into a new session of ``agent``, started
    (on ``clock``, a FakeClock, its ``metrics`` a MetricsLog), close the session, and return a
    record. The agent may have played others before (kame eval mtbench: one agent, a session per
    question): times in the record count from this session's input sample 0, and its
    ``step_times`` are this session's steps alone. While a cascade reply is under way when
    ``pcm`` ends (``reply_pending``), up to ``extend_s`` seconds of silence more are played, a
    frame at a time; rec["frames"] counts them all, and rec["max_tail_reached"] says whether the
    run ended with one still under way. Once ``stop`` is set no more frames are played:
    rec["interrupted"]. rec["load_s"]: from ``load_started`` (perf_counter when the caller began
    the agent's start; default now) until the session was open. Each frame waits (up to
    ``frame_timeout_s``) for the agent's audio of it, unless the session sends none for silence
    (its ``cfg.emit_silence`` false: a cascade's option)."""
    load0 = time.perf_counter() if load_started is None else load_started
    n = math.ceil(pcm.shape[0] / FRAME)
    pcm = np.pad(pcm, (0, n * FRAME - pcm.shape[0]))
    # virtual time of input sample 0 (not 0 once the agent has played other sessions: the clock goes on)
    t0 = clock.now() - FRAME_S
    events = getattr(metrics, "events", None)
    m0 = len(events) if events is not None else 0  # (the metrics of earlier sessions are not this one's)
    rec = new_record()
    got_audio = asyncio.Event()
    failed = [0]

    def frames_out() -> int:
        return len(rec["agent_audio"]) + failed[0]

    async def collect(session) -> None:
        async for out in session.outputs():
            if isinstance(out, AgentAudio):
                rec["agent_audio"].append((out.t - t0, np.asarray(out.pcm, np.float32)))
                got_audio.set()
            elif isinstance(out, AgentText):
                rec["agent_text"].append({"t": out.t - t0, "text": out.text})
            elif isinstance(out, ErrorEvent):
                rec["errors"].append({"t": out.t - t0, "message": out.message})
                if out.message.startswith(STEP_FAILED):
                    failed[0] += 1  # a frame that will have no audio
                    got_audio.set()
            elif isinstance(out, Meta):
                d = dict(out.data)
                kind = d.get("type")
                for key in ("t", "detected_at", "t_user_end"):  # (all on the session's clock)
                    if isinstance(d.get(key), (int, float)):
                        d[key] = d[key] - t0
                for w in d.get("words", ()):
                    w["start"], w["end"] = w["start"] - t0, w["end"] - t0
                key = {"transcript": "transcripts", "oracle": "oracle", "vad": "vad", "metric": "metrics",
                       "backend": "backend", "stats": "stats"}.get(kind)
                if key:
                    rec[key].append(d)
                elif kind == "info":
                    rec["info"].update(d)
                else:  # other kinds (e.g. the cascade's turn events): kept as they are
                    rec["other"].append(d)

    with unpaced(fast):  # (--fast: virtual time outruns the STT, not cut off while it runs: no queue cap, no stall)
        session = await agent.open_session("file")
    # a cascade with cascade.emit_silence off sends no audio for a silent frame: not waited for (was: each
    # waited frame_timeout_s, then 0.1 s, so the run went ~1.8x slower than real time); paced by the clock
    per_frame = getattr(getattr(session, "cfg", None), "emit_silence", True) is not False
    # (before any step: open_session returns without yielding to the ticker)
    feed = session.record_feed() if hasattr(session, "record_feed") else None
    task = asyncio.create_task(collect(session))
    load_s = time.perf_counter() - load0
    wall0 = time.perf_counter()
    late_frames = 0
    n_max = n + int(extend_s / FRAME_S + 1e-9)
    silence = np.zeros(FRAME, np.float32)
    k = 0

    def metas() -> list[dict]:  # what reply_pending reads (their "t" already on the file's time, as k's)
        return [rec["info"], *rec["other"], *rec["vad"], *rec["transcripts"], *rec["backend"]]

    was_pending = False
    try:
        while True:
            pending = k >= n - 1 and reply_pending(metas(), k * FRAME_S, at="detected_at")
            # a reply that ended in the last frame played still has that frame's audio to come,
            # placed one frame later: one more frame, or the reply's last 80 ms is not in OUT.wav
            if not (k < n or (k < n_max and (pending or was_pending))):
                rec["max_tail_reached"] = pending  # (what to advise: a longer --max-tail, or --tail)
                break
            if stop is not None and stop.is_set():  # (a Ctrl-C after the last frame is no interruption)
                rec["interrupted"] = True
                break
            was_pending = pending
            await session.push_audio(pcm[k * FRAME:(k + 1) * FRAME] if k < n else silence)
            if k > 0:  # (+1 ns: the ticker's schedule is a float sum of 0.08 steps)
                clock.set(max(clock.now(), t0 + (k + 1) * FRAME_S + 1e-9))
            # wait (wall time) until the agent produced the output of this frame
            deadline = time.perf_counter() + frame_timeout_s
            while per_frame and frames_out() < k + 1 and time.perf_counter() < deadline and not task.done():
                got_audio.clear()
                try:
                    await asyncio.wait_for(got_audio.wait(), timeout=0.05)
                except asyncio.TimeoutError:
                    pass
            if not per_frame:
                await asyncio.sleep(0)  # (its tick of this frame runs)
            elif frames_out() < k + 1:
                late_frames += 1
                frame_timeout_s = min(frame_timeout_s, 0.1)  # an agent that skips frames: don't stall
            if not fast:  # virtual time never runs ahead of wall time
                ahead = (k + 1) * FRAME_S - (time.perf_counter() - wall0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            k += 1
    finally:
        clock.advance(FRAME_S)
        await session.close()
        await asyncio.wait_for(task, timeout=30)
    n = k  # frames played (the input's, then any extension)
    wall = time.perf_counter() - wall0
    if not rec["agent_audio"] and rec["errors"]:
        raise KameError(f"the agent produced no audio: {rec['errors'][0]['message']}")
    rec["components"] = {k: v for k, v in getattr(agent, "components", {}).items()
                         if isinstance(v, (str, int, float, bool, type(None)))}
    rec["components"].update({k: v for k, v in rec["info"].items()
                              if k not in ("type", "session") and isinstance(v, (str, int, float, bool, type(None)))})
    rec["frames"], rec["wall_s"], rec["late_frames"], rec["load_s"] = n, wall, late_frames, load_s
    rec["failed_steps"] = failed[0]  # frames whose front-end step failed (their ErrorEvents)
    rec.setdefault("interrupted", False)
    rec.setdefault("max_tail_reached", False)
    rec["duration_s"] = n * FRAME_S
    rec["slowdown"] = wall / rec["duration_s"] if rec["duration_s"] else 0.0
    rec["step_times"] = [m.value for m in (events or ())[m0:] if m.name == "step_time"]
    rec["frontend_feed"] = feed_record(feed, rec["oracle"])
    return rec


def feed_record(feed, oracle: list[dict]) -> dict | None:
    """OUT.json's ``frontend_feed`` from the session's FeedLog (None: no front-end, a cascade),
    and each ``oracle`` event's "frame": the step it was applied before (None: after the last
    step). The frames are set only when the session's events and ``oracle`` match one to one."""
    if feed is None:
        return None
    out = feed.to_json()
    out["oracle_frames"] = len(oracle) == feed.received
    if out["oracle_frames"]:
        for n, o in enumerate(oracle):
            o["frame"] = feed.events.get(n)
    return out


def reply_pending(metas, now: float, *, at: str = "t") -> bool:
    """A cascade reply is under way or still to come, judged from a session's metadata dicts
    (``metas``, each type in the order the session sent it; `kame run` and `kame client` both
    decide with this): a turn started (``open_turns``: a cascade's, or hybrid routing's in a
    tandem) that has not ended, or, the session's "info" saying mode "cascade", the user's
    speech ended (the last "vad" event) and the STT's final transcript, which starts the turn,
    has not come since: for FINAL_WAIT_S (an STT that hears nothing in it sends none), or for as
    long as the caller goes on (its --max-tail) when a partial transcript with words came since
    the speech began and since the last final (the STT heard words it has not finalised and is
    still working: on a loaded machine a final may take longer; `kame client` passes them too; a
    final the STT's own endpointing sent before the VAD's end leaves FINAL_WAIT_S, for words
    after it it may not have sent yet). While the user's speech has not ended (the last "vad"
    event a "start"), such a partial since it began says its turn is still to come: for as long
    as the caller goes on (the VAD ends it after cascade.end_of_turn_silence, which may be longer
    than --tail; runreport.speech_open says so if it never did). An STT that failed ("backend" Meta,
    "stt" "down", not "goes_on": its stream ended) gives no final for what it heard before: partials before it do not count, and one
    after the speech ended means no final is coming (was: --max-tail of silence waited for it).
    "Since" compares the events' "t" (the session's clock); the wait counts from the field ``at`` of
    the "vad" event, on the clock of ``now`` (file mode: "detected_at", when the VAD reported the
    end, end_of_turn_silence after it; else "t"). The tandem's front-end speaks all the time, so
    nothing says when its reply is over: it gets --tail only."""
    mode, vad, start, finals, partials, stt_down = None, None, None, [], [], None
    for d in metas:
        kind = d.get("type")
        if kind == "info" and "mode" in d:
            mode = d["mode"]
        elif kind == "vad":
            vad = d
            start = d.get("t") if d.get("event") == "start" else start
        elif kind == "transcript" and d.get("final"):
            finals.append(d.get("t"))
        elif kind == "transcript" and str(d.get("text") or "").strip():
            partials.append(d.get("t"))
        elif kind == "backend" and d.get("component") == "stt" and d.get("status") == "down" and not d.get("goes_on"):
            stt_down = d.get("t")  # (its stream, and what it heard, ended there)
    if open_turns(metas):  # (also a tandem's: hybrid routing answers some turns the cascade's way)
        return True
    if mode != "cascade" or not vad:
        return False
    since = max([t for t in [*finals, stt_down] if t is not None], default=None)  # (words before: no final)
    working = any(t is not None and (start is None or t >= start) and (since is None or t > since) for t in partials)
    if vad.get("event") == "start":  # the user's speech goes on: a turn is to come if words were heard in it
        return working  # (was: not pending, so a longer end_of_turn_silence than --tail gave no answer)
    if vad.get("event") != "end" or any(t is None or t >= vad["t"] for t in finals) \
            or (stt_down is not None and stt_down >= vad["t"]):
        return False
    return working or now - vad.get(at, vad["t"]) < FINAL_WAIT_S


def agent_track(rec: dict, n_samples: int) -> np.ndarray:
    """Place each agent chunk at its virtual time (chunk of time t starts at sample t*SR)."""
    out = np.zeros(n_samples, np.float32)
    for t, chunk in rec["agent_audio"]:
        i = int(round(t * SR))
        if i >= n_samples:
            continue
        m = min(chunk.shape[0], n_samples - i)
        out[i:i + m] = chunk[:m]
    return out


def read_input(path: str) -> tuple[np.ndarray, str]:
    """The input as float32 mono 24 kHz, and a note saying how it was converted (or ""). Read
    once, so a pipe (``<(sox ...)``, /dev/stdin) works as a file does."""
    data, rate = read_wav(path, None, mono=False)  # AudioFormatError (exit 1): missing, corrupt, NaN
    channels = data.shape[1]
    user = resample(mix_to_mono(data, path), rate, SR).astype(np.float32)
    changes = ([f"resampled {rate} Hz -> 24 kHz"] if rate != SR else []) + \
        ([f"mixed {channels} channels to mono"] if channels != 1 else [])
    note = "; ".join(changes)
    if rate < 16000:
        note += f" (recorded at {rate} Hz: no audio above {rate // 2} Hz, STT may suffer)"
    return user, note


def check_tail(tail: float, max_tail: float | None = None) -> None:
    """``--tail``: seconds of silence after the input, in [0, 3600) (NaN too is refused);
    ``--max-tail`` too (main takes a --max-tail below --tail as --tail). The commands' own options
    are checked as they are parsed (kame.cliargs.tail_seconds: exit status 2); this is for the runs
    a command builds itself (kame demo's, kame eval mtbench's)."""
    if not 0 <= tail < MAX_TAIL_S:
        raise ConfigError(f"--tail must be seconds in [0, {MAX_TAIL_S}), got {tail}")
    if max_tail is not None and not 0 <= max_tail < MAX_TAIL_S:
        raise ConfigError(f"--max-tail must be seconds in [0, {MAX_TAIL_S}), got {max_tail}")


def main(args) -> int:
    from .filerun import prepare_run, write_run

    cfg = config_from_args(args)  # (with --mode)
    run = prepare_run(args)  # (-o and the input checked before the models load)

    async def converse() -> dict:
        # (what the files get is said after: nothing, if the models were still loading)
        # (SIGTERM as Ctrl-C: was killed at once, nothing written; its exit status is the files')
        async with first_ctrl_c("ending the conversation here", sigterm=True) as stop:
            rec = await run_conversation(cfg, run.user, fast=args.fast, extend_s=run.extend_s, stop=stop)
            if rec.get("interrupted"):
                rec["interrupted_by"] = stop.signal
            return rec

    # (a SIGTERM after the conversation, while the files are written: noted, the files finished, then 143;
    # was: killed mid-write, partial files)
    with sigterm_held() as held:
        rec = run_to_end(converse())
        # (a SIGTERM that ended the conversation set held.again at once: its hint said "SIGTERM again ... to
        # quit at once", also while run_to_end ended the leftover tasks)
        held.again = held.again or rec.get("interrupted_by") == "SIGTERM"
        rc = write_run(args, cfg, run, rec)
    if held.signal and rc != TERMINATED_STATUS:
        print(f"terminated ({held.signal}) after the conversation: the files were written whole first",
              file=sys.stderr)
        return TERMINATED_STATUS
    return rc
