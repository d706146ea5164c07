"""One tandem conversation: input buffering, outputs, back-end bridge, per-session metrics.

The session lives on the asyncio event loop and never touches a model. The agent's frame
ticker (kame.runtime.engine) calls, once per 80 ms frame:

    rin = session.take_input(t)     # next 80 ms of user audio (silence if none) + pending oracle events
    ... one batched step on the worker thread ...
    session.deliver(rin, rout, t)   # agent audio/text out, metrics, agent text -> back-end

Metrics (all on the agent's one clock):
  first_response_latency  user's end of speech (VAD) -> first agent frame above runtime.silence_db
                          (0 if the agent was already speaking then: the tandem can answer early)
  oracle_lag              end of the user's last word the prediction was based on (as the
                          producer reports it; else the newest transcribed word) -> the first
                          token of that prediction FED to the front-end
  missed_deadline         per-session count in every "stats" Meta (the engine reports lateness); a
                          session that falls behind real time logs it once, with the likely cause
                          (frame_timing); so does the first drop of user audio (push_audio)
  input_delay_s           (stats) how much longer than one frame the user audio fed last waited in
                          the input backlog (0 while the agent keeps up and audio comes 80 ms at a time; up to a
                          chunk's length for longer chunks); input_delay_max_s its worst

User audio time: a frame fed at tick s is stamped s - 80 ms, or, if its last sample arrived
(push_audio) earlier than that (a backlog: the agent slower than real time, a burst), that
arrival time (take_input), so every time derived from user audio counts from when it came.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..audio import audio_problem
from ..backend.types import FRAME_S, FRAME_SIZE, AudioFrame, OracleAppend, OracleEvent, OracleReset, Transcript
from ..errors import KameError
from .base import (AgentAudio, AgentText, BackendHealth, ErrorEvent, Meta, Output, OutputReader, Session, SingleReader,
                   internal_error)
from .feedlog import FeedLog
from .metrics import RECENT_FRAMES, Metric, behind_real_time
from .worker import RowInput, RowOutput

if TYPE_CHECKING:
    from .engine import TandemAgent

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_CLOSED = object()
MAX_PENDING_OUTPUTS = 4000  # unread outputs kept per session (~2-3 min of audio frames + text)
STAMP_EPS_S = 1e-6  # a frame's audio counts as waiting in the backlog when it arrived this much before its stamp
HEAVY_STEP = 0.75  # a step taking this share of the 80 ms is heavy (typically: the front-end; only when late: a busy CPU)


@dataclass
class SessionStats:
    frames: int = 0  # frames stepped
    input_frames: int = 0  # frames that carried user audio (the rest was fed silence)
    missed_deadlines: int = 0
    max_lateness: float = 0.0  # of one frame past its deadline (the schedule re-anchors after a miss)
    input_delay_s: float = 0.0  # the user audio fed last waited this much longer than a frame (backlog)
    input_delay_max_s: float = 0.0  # the most it did
    dropped_input_s: float = 0.0  # user audio dropped: the backlog exceeded the limit, or was left at close
    bad_audio: int = 0  # push_audio chunks rejected (NaN, wrong dtype/shape)
    oracle_tokens_sent: int = 0  # oracle tokens the back-end sent (its predictions' text, start ids not counted)
    oracle_tokens_fed: int = 0  # ... of them fed to the front-end (one a frame, time-locked to their reset)
    # ... that came after their frame had passed: never fed (a back-end slower than one token a frame; the
    # rest not fed were cut by a newer prediction, or came at the end). Both the stepper's own counts
    # (RowOutput.oracle_counts); a frame model that does not count them: fed as seen in its outputs, late None
    # (not known: was 0, and kame run said none came late)
    oracle_tokens_late: int | None = None
    predictions: int = 0  # oracle resets received that start a prediction
    blanked: int = 0  # bare oracle resets received: no prediction; the feed gives its start id, then pad (hybrid
    # routing; a restart with backend.reset_on_first_token=false)
    transcripts: int = 0
    backend_failures: int = 0
    dropped_outputs: int = 0  # outputs nobody read (beyond MAX_PENDING_OUTPUTS)
    # stall timers that ran out during or just after a reload of the LLM's model and waited on: the
    # oracle's (its producer.stats) and hybrid routing's replies' (ReplyParts.stats; the cascade's name)
    wait_llm_loading: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Latency:
    """State for first-response latency and oracle lag."""

    user_end: float | None = None  # end of the user's last utterance, awaiting the agent's answer
    user_speaking: bool = False
    agent_voiced: deque = field(default_factory=lambda: deque(maxlen=100))  # (t, voiced) recent agent frames
    last_word_end: float | None = None  # end of the newest transcribed user word
    pending_lag: tuple[int, float] | None = None  # (prediction id, last word end) awaiting its first fed token
    basis: dict = field(default_factory=dict)  # prediction id -> end of the last user word it was based on


class TandemSession(Session):
    def __init__(self, agent: "TandemAgent", row: int, session_id: str | None = None) -> None:
        self.agent, self.row = agent, row
        self.id = session_id or f"s{next(_ids)}"  # (the agent gives one: session_id_for)
        self.clock, cfg = agent.clock, agent.config
        self.stats = SessionStats()
        self.closed = False
        self._ended = False
        self.joined = False  # set once the first step reset its row
        self._queue: asyncio.Queue = asyncio.Queue()
        self._reader = SingleReader(self._queue, _CLOSED, self.id)  # outputs(): one reader at a time
        self._buf: deque[np.ndarray] = deque()  # pushed user audio chunks (not yet framed)
        self._buf_len = 0
        self._arrivals: deque[tuple[int, float, float]] = deque()  # per chunk: (end index, arrival, previous's)
        self._arrived = self.clock.now()  # when the newest chunk of user audio arrived (none yet: the opening)
        self._last_t: float | None = None  # the audio time of the frame fed last
        self._fed_at = 0.0  # the tick of the frame fed last (its oracle token's time)
        self._max_backlog = int(cfg.runtime.max_input_backlog_s * 24000)
        self._oracle_inbox: list[OracleEvent] = []
        self._received = 0  # samples of user audio pushed (kept or dropped), and pad_input's silence
        self._padded = 0  # samples of pad_input's silence (at the backlog's tail: no audio comes after END_INPUT)
        self._taken = 0  # frames of input taken by the ticker (take_input)
        self._first_audio: tuple[float, int] | None = None  # (clock time, frames taken) at the first audio
        self._pace: deque[tuple[float, float, float]] = deque(maxlen=RECENT_FRAMES)  # frame_timing's, recent
        self._behind_warned = False
        self._lat = _Latency()
        self._step_times: deque[float] = deque(maxlen=int(max(cfg.runtime.stats_interval_s, 1.0) / FRAME_S))
        self._silence = 10 ** (cfg.runtime.silence_db / 20)
        self._stats_every = cfg.runtime.stats_interval_s
        self._next_stats = self.clock.now() + self._stats_every
        self.backend = None  # kame.runtime.backend.BackendBridge (None = front-end only)
        self.router = None  # kame.cascade.hybrid.HybridRouter (cascade.hybrid_routing), else None
        self.health = BackendHealth(self._put)  # dead back-ends (shared with the router's replies)
        self.feed_log: FeedLog | None = None  # (record_feed)

    # ----------------------------------------------------------------- client-facing API
    async def push_audio(self, pcm: np.ndarray) -> None:
        if self.closed:
            return
        err = audio_problem(pcm)
        if err is not None:
            self.stats.bad_audio += 1
            self._put(ErrorEvent(f"bad audio dropped: {err}", self.clock.now()))
            return
        # kame's own copy: a caller that reuses its buffer (a sound card callback's) would change audio
        # already checked and queued (NaN in it failed the frame's batched step for every session)
        pcm = np.array(pcm, np.float32).reshape(-1)
        if pcm.size == 0:
            return
        now = self.clock.now()
        self._buf.append(pcm)
        self._buf_len += pcm.size
        if self._first_audio is None:
            self._first_audio = (now, self._taken)
        self._received += pcm.size
        self._arrivals.append((self._received, now, self._arrived))  # (frame_time)
        self._arrived = now
        if self._buf_len > self._max_backlog and not self.stats.dropped_input_s:
            self._warn_dropping()
        while self._buf_len > self._max_backlog:  # bound latency: drop the oldest audio, counted
            over = self._buf_len - self._max_backlog
            head = self._buf[0]
            if head.size <= over:
                self._buf.popleft()
                self._buf_len -= head.size
                self.stats.dropped_input_s += head.size / 24000
            else:
                self._buf[0] = head[over:]
                self._buf_len -= over
                self.stats.dropped_input_s += over / 24000
        # chunks dropped whole are forgotten (or a client pushing faster than frames are taken grows this without bound)
        while len(self._arrivals) > 1 and self._arrivals[0][0] <= self._received - self._buf_len:
            self._arrivals.popleft()

    async def pad_input(self) -> None:
        """A last part-frame of the backlog filled with silence (kame serve after END_INPUT), past
        the real-time cap: the silence is the server's, so none of the client's audio is dropped
        for it and it is not counted as the client's (was: base Session.pad_input's push_audio: for
        a client at the cap 40 ms of its oldest audio was dropped, counted in its dropped_input_s,
        and the part-frame stayed a part-frame)."""
        part = self._buf_len % FRAME_SIZE
        if self.closed or not part:
            return
        n = FRAME_SIZE - part
        self._buf.append(np.zeros(n, np.float32))
        self._buf_len += n
        self._received += n
        self._padded = n
        # (its frame's audio time: when the client's last audio arrived, as its own part's; frame_time)
        self._arrivals.append((self._received, self._arrived, self._arrived))

    @property
    def input_backlog_s(self) -> float:
        """User audio pushed and not stepped yet, in seconds (kame serve lets it be stepped after END_INPUT)."""
        return self._buf_len / 24000

    def outputs(self) -> OutputReader:
        """The outputs, in order, until the end marker (which stays queued: a later outputs() ends
        at once too). One reader at a time: ReaderError while another is open (base.SingleReader)."""
        return self._reader.open()

    async def close(self) -> None:
        """End the session. Its row and place (runtime.max_sessions) are free at once; its STT
        stream and oracle producer are cancelled and unwind in the background (the agent's stop()
        waits for them). The outputs end with a final "stats" Meta; user audio still buffered is
        counted in its dropped_input_s, and said apart as its unstepped_at_close_s."""
        if self.closed:
            return
        self.closed = True
        if self.backend is not None:  # (was: awaited here, 0.5-0.8 s for the embedded STT's stream,
            self.backend.stop()  # the row still taken: a client reconnecting at once got "capacity")
        self.agent._release(self)
        if self.router is not None:
            await self.router.aclose()
        left = (self._buf_len - min(self._padded, self._buf_len)) / 24000  # (the client's: the pad is at the tail)
        self.stats.dropped_input_s += left  # never stepped (was: counted nowhere)
        self._buf.clear()
        self._buf_len = 0
        # what close left unstepped, said apart (kame client: what a server's shutdown left unheard)
        self._put(Meta({"type": "stats", "session": self.id, "final": True, "t": self.clock.now(),
                        **self._stats_fields(), "unstepped_at_close_s": round(left, 3)}))
        self._queue.put_nowait(_CLOSED)
        self._ended = True  # nothing is queued after the end marker

    def record_feed(self) -> FeedLog:
        """Keep a FeedLog of this session (not by default: it grows with the session). Call it
        before the first step, as `kame run` does when the session opens."""
        if self.feed_log is None:
            if self._taken:
                raise KameError(f"session {self.id}: record_feed() after its first step: the steps already "
                                f"taken were not recorded; call it as the session opens")
            self.feed_log = FeedLog(frontend=self.frontend_layout())
        return self.feed_log

    def frontend_layout(self) -> dict | None:
        """The front-end stepping this session's row (feedlog.LAYOUT_KEYS, from what its load said:
        kame.runtime.frontend.load_frame_models' info): its acoustic delays (its output frame f
        comes out of step f + max_delay), whether it has an oracle stream, its oracle ids; None
        for a frame model that does not say (a test's fake)."""
        c = getattr(self.agent, "components", None) or {}
        if "max_delay" not in c:
            return None
        return {"max_delay": c["max_delay"], "delays": list(c["delays"]), "oracle": bool(c.get("oracle")),
                "start_id": c.get("oracle_start_id"), "pad_id": c.get("text_pad_id"), "text_card": c.get("text_vocab")}

    # ----------------------------------------------------------------- engine-facing API
    def take_input(self, tick: float) -> RowInput:
        """The next 80 ms of user audio (silence if less than a frame is buffered) and the
        oracle events that arrived since the last frame. The frame fed at ``tick`` counts as
        captured during the 80 ms before it: its audio time (RowInput.t, AudioFrame.t) is
        tick - 80 ms; unless its last sample arrived before that (it waited in the backlog
        longer than a frame): then that arrival time (frame_time), its wait in stats input_delay_s."""
        t = tick - FRAME_S
        self._fed_at = t + FRAME_S  # (the tick, as rin.t + FRAME_S always gave it)
        self._taken += 1
        delay = 0.0
        if self._buf_len >= FRAME_SIZE:
            t = self.frame_time(t)
            delay = tick - FRAME_S - t
            parts, need = [], FRAME_SIZE
            while need:
                head = self._buf[0]
                if head.size <= need:
                    parts.append(self._buf.popleft())
                    need -= head.size
                else:
                    parts.append(head[:need])
                    self._buf[0] = head[need:]
                    need = 0
            self._buf_len -= FRAME_SIZE
            pcm = np.concatenate(parts)
            self.stats.input_frames += 1
        else:
            pcm = np.zeros(FRAME_SIZE, np.float32)
        self._last_t = t
        self.stats.input_delay_s = delay
        self.stats.input_delay_max_s = max(self.stats.input_delay_max_s, delay)
        events, self._oracle_inbox = self._oracle_inbox, []
        if self.feed_log is not None:
            self.feed_log.handed(len(events))
        for ev in events:
            if isinstance(ev, OracleReset):  # lag from the last word the prediction was based on
                word_end = self._lat.basis.pop(ev.prediction_id, self._lat.last_word_end)
                if word_end is not None:
                    self._lat.pending_lag = (ev.prediction_id, word_end)
        reset = not self.joined
        self.joined = True
        if self.backend is not None:
            self.backend.push_user_frame(AudioFrame(pcm, t))
        return RowInput(row=self.row, pcm=pcm, t=t, reset=reset, oracle=events)

    def frame_time(self, t: float) -> float:
        """The audio time of the buffered frame about to be fed, ``t`` that of one without a
        backlog (its tick - 80 ms): when its last sample arrived, if that is earlier by more than
        STAMP_EPS_S, but never less than a frame after the previous frame's time (times never
        overlap). In a chunk of several frames the last sample of each counts as arriving the
        chunk's audio after it earlier (spoken in real time before the chunk came), yet not before
        the previous chunk came (or the session opened). Called before the frame leaves the buffer."""
        end = self._received - self._buf_len + FRAME_SIZE  # (the stream index past the frame's last sample)
        arrivals = self._arrivals
        while arrivals[0][0] < end:  # (chunks all before the frame's last sample: consumed or dropped)
            arrivals.popleft()
        chunk_end, came, floor = arrivals[0]
        arrived = max(came - (chunk_end - end) / 24000, floor)
        if self._last_t is not None:
            arrived = max(arrived, self._last_t + FRAME_S)  # (after the frames fed before it, silence too)
        return t if arrived >= t - STAMP_EPS_S else arrived  # (no backlog: as ever, float sums aside)

    def deliver(self, rin: RowInput, rout: RowOutput, t: float, step_s: float = 0.0) -> None:
        """Outputs of one step for this session (t = when the step finished; step_s = the
        worker's compute time for the whole frame)."""
        if self.closed:
            return
        self.stats.frames += 1
        for message, brief in rout.problems:  # this session's own faults in the frame (the others' went on)
            self._put(ErrorEvent(message, t, brief))
        if self.feed_log is not None:
            self.feed_log.stepped(rout.oracle_token, rout.step)
        if rout.oracle_counts is not None:  # the feed's own counts (a step that failed is in them too)
            self.stats.oracle_tokens_fed, self.stats.oracle_tokens_late = rout.oracle_counts
        self._step_times.append(step_s)
        lat = self._lat
        for ev in rout.vad:  # user voice activity (from the worker)
            self._put(Meta({"type": "vad", "event": ev.kind, "t": ev.t, "detected_at": ev.detected_at}))
            if ev.kind == "start":
                lat.user_speaking, lat.user_end = True, None
            else:
                lat.user_speaking, lat.user_end = False, ev.t
        pcm = rout.pcm
        text = self.agent.token_text(rout.text_token)
        if self.router is not None:  # hybrid routing: a routed reply replaces the front-end's audio
            try:
                self.router.on_vad(rout.vad, t, lat.user_speaking, rout.last_voice)
                if self.router.active:  # the front-end is muted: its words are not said (the routed
                    text = ""  # reply's are sent instead; they ran together in the text stream)
                if text:
                    self.router.on_agent_text(text, t)
                pcm = self.router.frame(pcm)
            except Exception as exc:  # noqa: BLE001 - the router must not stop the session
                log.exception("hybrid router failed")
                self._put(internal_error("hybrid routing failed", exc, t))
        self._put(AgentAudio(pcm, t))
        if text:
            self._put(AgentText(text, t))
            if self.backend is not None and self.agent.feed_agent_text:
                self.backend.push_agent_text(text, t)
        voiced = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) >= self._silence
        lat.agent_voiced.append((t, voiced))
        if lat.user_end is not None:
            # the first voiced agent frame at/after the end of speech (the detection comes late,
            # so look back over recent frames); 0 if the agent was already talking
            before = [v for ft, v in lat.agent_voiced if ft <= lat.user_end]
            if before and before[-1]:  # talking when the user stopped (or over them): 0
                self.metric("first_response_latency", 0.0, t, labels={"overlap": True})
                lat.user_end = None
            else:
                hit = next((ft for ft, v in lat.agent_voiced if v and ft >= lat.user_end), None)
                if hit is not None:
                    self.metric("first_response_latency", hit - lat.user_end, t)
                    lat.user_end = None
        if rout.oracle_token >= 0 and rout.oracle_token != self.agent.oracle_start_id:
            if rout.oracle_counts is None:  # (a frame model that does not count: its tokens seen; late not known)
                self.stats.oracle_tokens_fed += 1
            if lat.pending_lag is not None:
                pid, word_end = lat.pending_lag
                lat.pending_lag = None
                fed = self._fed_at  # the tick at which the token went into the step (this frame's)
                self.metric("oracle_lag", max(0.0, fed - word_end), fed, labels={"prediction_id": pid, "stage": "fed"})
        if self._stats_every and t >= self._next_stats:
            self._next_stats = t + self._stats_every
            self._put(Meta({"type": "stats", "session": self.id, "t": t, **self._stats_fields()}))

    def _stats_fields(self) -> dict:
        """A "stats" Meta's counters: the session's (with the waits for a reload of the LLM's model
        its oracle and its hybrid routing counted), the recent step times, and the seconds of
        user audio its STT never got (stalled, down, or its queue full)."""
        dropped = round(self.backend.dropped_s, 3) if self.backend is not None else 0.0
        oracle = self.backend.oracle_stats["wait_llm_loading"] if self.backend is not None else 0
        routed = (getattr(self.router, "stats", None) or {}).get("wait_llm_loading", 0)  # (a router may count none)
        self.stats.wait_llm_loading = oracle + routed
        return {**self.stats.to_json(), **self._step_summary(), "stt_dropped_s": dropped}

    def _step_summary(self) -> dict:
        """Step time (worker compute per frame) over the recent frames of this session."""
        xs = sorted(self._step_times)
        if not xs:
            return {"step_time_p50_s": None, "step_time_max_s": None}
        return {"step_time_p50_s": xs[len(xs) // 2], "step_time_max_s": xs[-1]}

    def frame_timing(self, lateness: float, wait_s: float, step_s: float, t: float) -> None:
        """The ticker's timing of a frame this session was in, on the agent's clock: ``lateness``
        past its 80 ms deadline (0: it made it), ``wait_s`` how long it waited for the event loop
        (the ticker woke late, the step's result was taken late), ``step_s`` how long the step took
        from the ticker's start until the worker had done it (t = when the frame finished). A late frame is
        counted (stats missed_deadlines, max_lateness; a "missed_deadline" metric Meta); when the
        recent frames say the agent falls behind real time (metrics.behind_real_time), the log
        says so, once (_warn_behind)."""
        if self.closed:  # closed during the step: it was not due this frame (deliver drops it too)
            return
        self._pace.append((lateness, wait_s, step_s))
        if lateness <= 0:
            return
        self.stats.missed_deadlines += 1
        self.stats.max_lateness = max(self.stats.max_lateness, lateness)
        # the agent already sent the frame's metric to its sink: only the session's Meta here
        self.metric("missed_deadline", lateness, t, labels={"count": self.stats.missed_deadlines}, sink=False)
        if not self._behind_warned and behind_real_time(sum(p[0] > 0 for p in self._pace), len(self._pace)):
            self._warn_behind()

    def _warn_behind(self) -> None:
        """Log, once, that this session's frames miss their deadlines: how many, the typical step
        (the median of all its recent frames', against the 80 ms) and whether the front-end and
        codec are too slow for this CPU and batch (the typical step is heavy), the machine was busy
        (the typical step fits, but the late frames' steps were long: other programs or the
        back-end took the CPU from it; the step is wall-clock time), or the step waited for the
        event loop (something else holds the loop or the CPU), and what to do."""
        late = [p for p in self._pace if p[0] > 0]
        if self._behind_warned or not late:
            return
        self._behind_warned = True
        agent, rt = self.agent, self.agent.config.runtime
        typical = _median([p[2] for p in self._pace])
        step, delay = _median([p[2] for p in late]), _median([p[1] for p in late])
        live = max(1, len(agent.sessions))
        fe, codec = agent.components.get("frontend"), agent.components.get("codec")
        model = f"the front-end {fe}" + (f" with codec {codec}" if codec else "") if fe else "the front-end"
        typ = f"{typical * 1000:.0f} ms (median of its last {len(self._pace)} frames) per 80 ms of audio"
        long_steps = step >= HEAVY_STEP * FRAME_S and step >= delay  # (a loop held longer than the step: its cause)
        if long_steps and typical >= HEAVY_STEP * FRAME_S:
            rows = (f"the batch's {rt.max_sessions} rows (runtime.max_sessions; {live} in use)"
                    if rt.batched and rt.max_sessions > 1 else f"{live} session(s), one after the other"
                    if live > 1 else "one session")
            cause = (f"its steps, codec and front-end for {rows}, take {typ}: {model} is too slow for this CPU"
                     + (" at this batch size" if rt.batched and rt.max_sessions > 1 else ""))
            fix = ((f"runtime.max_sessions = {live} (each step runs all its rows through the front-end, used or not), "
                    if rt.batched and rt.max_sessions > live else "fewer sessions, " if live > 1 else "")
                   + "a smaller front-end or codec, a GPU (frontend.device), or a faster machine")
        elif long_steps:  # (the step is wall-clock time: a preempted one is long too)
            cause = (f"its steps take {typ}, within the 80 ms, but the late frames' took {step * 1000:.0f} ms "
                     f"(median): the machine was busy (CPU contention: other programs, or the back-end's STT and "
                     f"LLM, took the CPU from the step), not {model} too slow")
            fix = ("less other load on this machine (other programs; the back-end's models on another machine: "
                   "backend.stt / backend.llm = openai:...), or more CPU cores")
        else:
            cause = (f"its steps take {typ}, but the late frames waited {delay * 1000:.0f} ms (median) for the "
                     f"event loop to start them or take their results: something else holds the CPU or this "
                     f"process's event loop (the back-end's STT and LLM, the network traffic of many sessions, "
                     f"other programs)")
            fix = ("fewer sessions (runtime.max_sessions), the back-end's models on another machine "
                   "(backend.stt / backend.llm = openai:...), or more CPU cores")
        log.warning("session %s falls behind real time: %d of its last %d frames missed their 80 ms deadline "
                    "(up to %.2f s late); %s. Its audio stutters and comes late, and its input piles up "
                    "(dropped beyond runtime.max_input_backlog_s). Try %s. (Logged once per session; "
                    "stats missed_deadlines keeps counting.)",
                    self.id, len(late), len(self._pace), max(p[0] for p in late), cause, fix)

    def _warn_dropping(self) -> None:
        """The input backlog overflowed for the first time: say why, once. Since the session's
        first audio, either the client sent more audio than clock time passed (faster than real
        time), or the agent stepped fewer frames than clock time passed (slower than real time:
        its deadlines are missed; _warn_behind follows), or neither on average: the audio came
        in a burst (held back by the network or the client, then sent at once)."""
        now = self.clock.now()
        t0, taken0 = self._first_audio or (now, self._taken)
        elapsed, sent = now - t0, self._received / 24000
        stepped = (self._taken - taken0) * FRAME_S
        ahead, behind = sent - elapsed, elapsed - stepped  # the client's excess, the agent's shortfall
        keep = self._max_backlog / 24000
        slow_agent = behind >= ahead and behind > keep / 2
        if slow_agent:
            why = (f"the agent runs slower than real time: it stepped {self._taken - taken0} frames ({stepped:.2f} s) "
                   f"in the {elapsed:.2f} s since the user's audio began, so the audio piles up "
                   + (f"(and the client sends faster than real time too: {sent:.2f} s of it)" if ahead > keep / 2
                      else "although the client sends it in real time"))
        elif ahead > keep / 2:
            why = f"the client sends audio faster than real time ({sent:.2f} s of it in {elapsed:.2f} s)"
        else:
            why = (f"the user's audio came in a burst ({sent:.2f} s of it in {elapsed:.2f} s is about real time "
                   f"on average: the network or the client held it back, then sent it at once)")
        log.warning("session %s: %s; keeping the newest %.2f s (runtime.max_input_backlog_s) and dropping older "
                    "audio (counted in stats dropped_input_s)", self.id, why, keep)
        if slow_agent:
            self._warn_behind()

    # ----------------------------------------------------------------- back-end callbacks
    def on_transcript(self, tr: Transcript) -> bool:
        """One transcript of the STT: sent as Meta, and to the hybrid router (if any). Whether the
        router answers it by the cascade path (it started a routed reply for a "structured" final):
        a turn the oracle should not answer as well (the one LLM would serve two requests at
        once, and the front-end be fed a second answer)."""
        self.stats.transcripts += 1
        if tr.words:
            # (max: a late final of the utterance before, kame.backend.stt.streaming, is older)
            self._lat.last_word_end = max(self._lat.last_word_end or 0.0, *(w.end for w in tr.words))
        self._put(Meta({"type": "transcript", "speaker": "user", "final": tr.final, "text": tr.text, "t": tr.t,
                        "words": [{"word": w.text, "start": w.start, "end": w.end} for w in tr.words]}))
        if self.router is not None:
            try:
                n = self.router.routed_turns
                self.router.on_transcript(tr)
                return self.router.routed_turns > n  # (it started a routed reply)
            except Exception as exc:  # noqa: BLE001
                log.exception("hybrid router failed")
                self._put(internal_error("hybrid routing failed", exc, self.clock.now()))
        return False

    def on_routed_reply(self, text: str, t: float, interrupted: bool = False) -> None:
        """The heard text of a reply hybrid routing gave (its router's ``on_heard``, at the reply's
        agent_turn): into the oracle producer's conversation as the agent's words, whatever
        ``backend.agent_text`` says (that gates the front-end's words; these are the LLM's, said),
        so its next prediction sees the answer (was: the routed question, then the next one, with
        no agent line between: a prediction could answer both). Nothing heard ("": cut before its
        first word, the LLM/TTS failed first, an empty answer): the routed question goes back into
        the oracle's prompts (was: left out of every later one), and, when the reply ended by
        itself (not ``interrupted`` by a later final or a barge-in), it is the oracle's to answer."""
        if self.backend is None or self.closed:
            return
        if text:
            self.backend.push_agent_text(" " + text, t)  # (a new word after the front-end's text)
        else:
            self.backend.routed_unheard(answer=not interrupted)

    def on_oracle(self, ev: OracleEvent) -> None:
        if self.closed:
            return
        self._oracle_inbox.append(ev)  # handed to the worker with the next frame's job
        if self.feed_log is not None:
            self.feed_log.received += 1
        if isinstance(ev, OracleReset):
            if ev.bare:  # (no prediction: it cuts the queued tokens, the start id then pad is fed; hybrid
                # routing's OracleProducer.on_routed, a restart with backend.reset_on_first_token=false)
                self.stats.blanked += 1
            else:
                self.stats.predictions += 1
            self._put(Meta({"type": "oracle", "event": "reset", "prediction_id": ev.prediction_id, "t": ev.t,
                            **({"bare": True} if ev.bare else {})}))
        elif isinstance(ev, OracleAppend):
            self.stats.oracle_tokens_sent += len(ev.token_ids)
            self._put(Meta({"type": "oracle", "event": "append", "prediction_id": ev.prediction_id,
                            "text": ev.text, "token_ids": list(ev.token_ids), "t": ev.t}))

    def on_backend_status(self, component: str, ok: bool, error: str | None = None, *, goes_on: bool = False) -> None:
        t = self.clock.now()
        if not ok:
            self.stats.backend_failures += 1
        self.health.report(component, ok, t, error, f"back-end {component} failed (front-end continues): {error}",
                           goes_on=goes_on)

    def on_backend_problem(self, message: str, public: str) -> None:
        """An ErrorEvent for a back-end problem that leaves its component's status as it is (an
        oracle prediction with no text: kame.runtime.backend.producer_factory); ``public``: what a
        client is told."""
        self._put(ErrorEvent(message, self.clock.now(), public))

    # ----------------------------------------------------------------- helpers
    def metric(self, name: str, value: float, t: float, labels: dict | None = None, sink: bool = True) -> None:
        m = Metric(name, float(value), t, session=self.id, labels=labels or {})
        if sink:
            self.agent.metrics(m)
        self._put(Meta({"type": "metric", **m.to_json()}))

    def producer_metric(self, m: Metric) -> None:
        """Metrics of the oracle producer. Its oracle_lag stops at the token being *emitted*;
        the session's own oracle_lag (stage "fed") measures up to the stepper, so the
        producer's is kept in the session's Meta only, labelled stage "emitted"."""
        if m.name == "oracle_lag":
            pid = m.labels.get("prediction_id")
            if pid is not None:  # the producer knows which word the prediction was based on
                self._lat.basis[pid] = m.t - m.value
                while len(self._lat.basis) > 16:
                    self._lat.basis.pop(next(iter(self._lat.basis)))
            d = m.to_json()
            d["labels"] = {**d.get("labels", {}), "stage": "emitted"}
            self._put(Meta({"type": "metric", **d}))
            return
        self.agent.metrics(m)
        self._put(Meta({"type": "metric", **m.to_json()}))

    def info(self, **data) -> None:
        self._put(Meta({"type": "info", "session": self.id, **data}))

    def _put(self, item: Output) -> None:
        if not self._ended and (not self.closed or isinstance(item, Meta)):
            if self._queue.qsize() >= MAX_PENDING_OUTPUTS:  # nobody reads: drop the oldest, counted
                self._queue.get_nowait()
                self.stats.dropped_outputs += 1
            self._queue.put_nowait(item)


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]
