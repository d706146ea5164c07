"""One cascade conversation: user audio -> VAD + streaming STT -> (final transcript) -> LLM ->
sentence-by-sentence TTS -> agent audio paced at 80 ms on the clock.

Implements kame.runtime.base.Session, so the server and file mode drive it like the tandem:

    session = await agent.open_session()
    await session.push_audio(pcm)                # float32 24 kHz, any length (each whole 80 ms frame
                                                 # to the STT and VAD at once; a part-frame waits:
                                                 # input_backlog_s; kame serve pads it at END_INPUT)
    async for out in session.outputs(): ...      # AgentAudio every 80 ms, AgentText, Meta, ErrorEvent
                                                 # (one reader at a time: ReaderError, as the tandem)

Turn taking: the STT's *final* transcript ends the user's turn and starts one reply (a final
with no words is ignored). The VAD (kame.cascade.turns) gives the end-of-speech time for the
latency metrics (the end of the speech region the final's words are in, even when the final
comes while the user speaks again: turns.SpeechRegions) and detects barge-in:
``barge_in_min_speech`` seconds of user speech while a reply is being generated or played
cancels the LLM stream and the TTS and stops the audio at the next frame. The agent's turn goes
into the history as far as it was heard (the words its played audio reached).

Meta dicts sent (all JSON-able): {"type": "transcript", "speaker": "user", "text", "final",
"t", "words": [{"word", "start", "end"}]}, {"type": "agent_turn", "text" (as heard), "reply"
(all the LLM said), "interrupted", "failed" (the LLM or TTS failed mid-reply), "turn", "t"}, {"type": "metric", <Metric fields>} (the STT's latencies too), {"type": "turn", "turn", "route",
"rules", "t_user_end"}, {"type": "barge_in", "turn", "t", "heard"}, {"type": "vad", "event":
"start"|"end", "t", "detected_at"}, {"type": "backend", "component", "status": "down"|"up", "error", "t"} (as the
tandem: after an ErrorEvent when a back-end fails, "up" at its next success), at close
{"type": "stats", "session", "final": true, "t", <CascadeStats fields>}, and the same with
"final": false while it runs, when a count changed, at most every runtime.stats_interval_s
(every 80 ms while input sent faster than real time is being dropped).

Failures: the STT stream is kame.runtime.sttloop.STTSupervisor's, as the tandem's (reported
with an ErrorEvent + "down" and restarted with back-off after it raises, ends by itself, yields
something that is not a Transcript or stalls; "up" at its next transcript; the audio it never
got, while down, stalled or at least 20 s behind, counted in dropped_frames and stt_dropped_s; its
latency metrics, stt_partial_latency and stt_final_latency, are the session's). close() frees
the session's place in its agent at once (``on_close``); while someone reads its outputs (file mode's reader) a running stream may
flush its last transcript first (CLOSE_GRACE_S), else (a server whose client left: nobody would
get it; a server shutting down: ``skip_flush``) the stream is cancelled at once and unwinds in
the background (``wait_stopped``), as a down one is. LLM and TTS failures and stalls end the reply
(kame.cascade.reply), never the session. Unread outputs are
kept up to MAX_PENDING_OUTPUTS (the tandem's), then the oldest are dropped (``dropped_outputs``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from ..audio import SAMPLE_RATE, audio_problem
from ..backend.llm.base import bug_at, component_name
from ..backend.prompt import KEEP_TURNS, remember
from ..backend.types import FRAME_S, FRAME_SIZE, AudioFrame, ChatMessage, Transcript, Turn
from ..runtime.base import (AgentAudio, BackendHealth, ErrorEvent, Meta, Output, OutputReader, Session, SingleReader,
                            _why, internal_error)
from ..runtime.clock import STOP_WAIT_S, Clock, leave
from ..runtime.metrics import Metric, MetricsSink, null_sink
from ..runtime.session import MAX_PENDING_OUTPUTS
from ..runtime.sttloop import STALL_S, STTSupervisor, restart_note
from .config import CascadeConfig
from .reply import ReplyParts, ReplyPipeline
from .routing import explain_turn
from .turns import TurnTracker, barges_in

log = logging.getLogger(__name__)
PromptFn = Callable[[Sequence[Turn]], list[ChatMessage]]
CLOSE_GRACE_S = 5.0  # close(): real seconds the STT may take to flush its last transcript


@dataclass
class CascadeStats:
    """Counts of one session, sent in "stats" Metas: the final one at close, and while it runs when
    they changed (``CascadeSession._live_stats``); names as the tandem's SessionStats."""

    transcripts: int = 0
    turns: int = 0
    bad_audio: int = 0  # push_audio chunks refused (not a float numpy array, not mono, NaN, int16-scale)
    backend_failures: int = 0  # STT / LLM / TTS failures reported (ErrorEvent)
    dropped_frames: int = 0  # 80 ms user frames the STT never got (down, stalled, or at least 20 s behind)
    stt_dropped_s: float = 0.0  # the same in seconds of audio (the tandem's stats name)
    # user audio dropped on arrival: sent faster than real time (max_backlog_s); and a last part-frame
    # still waiting at close (never stepped; after END_INPUT kame serve fills it with silence first)
    dropped_input_s: float = 0.0
    dropped_outputs: int = 0  # outputs nobody read (beyond MAX_PENDING_OUTPUTS)
    # replies' stall timers that ran out during or just after a reload of the LLM's model and waited
    # on (ReplyParts.stats; the oracle's producer.stats name it so)
    wait_llm_loading: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


class _CountedHealth(BackendHealth):
    """The session's BackendHealth, counting failures in its stats."""

    def __init__(self, emit, stats: CascadeStats) -> None:
        super().__init__(emit)
        self.stats = stats

    def report(self, component: str, ok: bool, t: float, error: str | None = None, message: str | None = None,
               *, goes_on: bool = False) -> None:
        if not ok:
            self.stats.backend_failures += 1
        super().report(component, ok, t, error, message, goes_on=goes_on)


class CascadeSession(Session):
    def __init__(
        self,
        session_id: str,
        *,
        stt,
        llm,
        tts,
        vad,
        prompt_fn: PromptFn,
        cfg: CascadeConfig,
        clock: Clock,
        metrics: MetricsSink = null_sink,
        on_close: Callable[["CascadeSession"], None] | None = None,
        vad_pool=None,
        retry_s: float = 1.0,
        stall_s: float = STALL_S,
        names: dict | None = None,
        max_backlog_s: float = 1.0,
        stats_interval_s: float = 1.0,
    ) -> None:
        self.id = session_id
        self.stt, self.llm, self.tts = stt, llm, tts
        self.cfg, self.clock, self._sink = cfg, clock, metrics
        self.stats = CascadeStats()
        self._names = dict(names or {})  # "stt"/"llm"/"tts" -> spec, for messages
        self._ended = False  # the end marker is queued: nothing after it
        self._parts = ReplyParts(llm, tts, cfg, clock, self._emit, getattr(prompt_fn, "prompt_config", None),
                                 _CountedHealth(self._emit, self.stats), self._names, session=session_id)
        # the STT stream, supervised as the tandem's (restarts with back-off, stall detection)
        self._stt = STTSupervisor(stt, clock, who=session_id, retry_s=retry_s, stall_s=stall_s,
                                  on_transcript=self._stt_transcript,
                                  on_failure=self._stt_failure, metrics=self._stt_metric)
        self._prompt_fn = prompt_fn
        self._on_close = on_close
        self._turns = TurnTracker(vad)
        self._vad_pool = vad_pool  # an Executor for the VAD (None = the loop's default)
        self.history: list[Turn] = []
        self._out: asyncio.Queue[Output | None] = asyncio.Queue()
        self._buf = np.zeros(0, np.float32)
        # the audio may run at most max_backlog_s ahead of the clock since it began (as the tandem's
        # input backlog, runtime.max_input_backlog_s): a client flooding faster than real time cannot
        # make the STT and VAD work through minutes of audio while other sessions wait
        self._max_ahead = int(max_backlog_s * SAMPLE_RATE)
        # clock time at which the audio taken so far ends, played in real time: from the session's
        # opening, less a frame (a client's first frame was recorded before it was sent; file mode
        # pushes frame 0 at its start time), so the first chunk is bounded too (was: -inf, the first
        # push_audio took any amount: 30 s at once kept whole; the tandem's kept 1 s)
        self._end = clock.now() - FRAME_S
        self._dropped = 0  # samples dropped
        # a "stats" Meta while the session runs: when a count changed, at most every stats_interval_s
        # (runtime.stats_interval_s; 0 = only the final one), checked on each playback tick and drop
        self._stats_every = stats_interval_s
        self._stats_sent: tuple[float | None, dict] = (None, self.stats.to_json())  # (when, what)
        self._push_lock = asyncio.Lock()
        self._last_frame_t: float | None = None
        self._reply: ReplyPipeline | None = None
        self._closing_reply: ReplyPipeline | None = None  # the reply close() cancelled
        self._turn_id = 0
        self._user_start: float | None = None  # first speech of the pending user turn
        self._closed = False
        self._skip_flush = asyncio.Event()  # close() waits for no last transcript (kame serve's shutdown)
        self._reader = SingleReader(self._out, None, session_id)  # outputs(): one reader at a time
        self._tasks = [
            asyncio.create_task(self._stt.run(), name=f"cascade-stt-{session_id}"),
            asyncio.create_task(self._playback_loop(), name=f"cascade-play-{session_id}"),
        ]

    # ---- Session interface --------------------------------------------------------------
    async def push_audio(self, pcm: np.ndarray) -> None:
        if self._closed:
            return
        err = audio_problem(pcm)
        if err is not None:  # bad audio is reported and dropped; the session goes on (as the tandem does)
            self.stats.bad_audio += 1
            self._emit(ErrorEvent(f"bad audio dropped: {err}", self.clock.now()))
            return
        # kame's own copy (np.array): a caller reusing its buffer must not change audio checked and waiting
        pcm = self._within_real_time(np.array(pcm, np.float32).reshape(-1))
        async with self._push_lock:  # concurrent pushes keep frame order and timing
            await self._push(pcm)

    def _within_real_time(self, pcm: np.ndarray) -> np.ndarray:
        """The newest part of ``pcm`` that keeps the audio taken at most max_backlog_s ahead of
        the clock; the rest is dropped and counted (dropped_input_s), logged the first time and
        said in the live "stats" Meta (``_live_stats``). Each chunk is taken as
        ending when it arrives, unless the audio before it ends later (``_end``): so a client
        sending in real time, or file mode (its clock moves with the audio), loses nothing, and a
        pause earns no credit for a burst after it."""
        now, n = self.clock.now(), len(pcm)
        if not n:  # (it would move _end up to now: the next chunk's credit)
            return pcm
        start = max(self._end, now - n / SAMPLE_RATE)  # where this chunk's audio begins
        keep = min(n, max(0, int(round((now - start) * SAMPLE_RATE)) + self._max_ahead))
        if keep < n:
            if not self._dropped:
                log.warning("session %s: the client sends audio faster than real time; keeping it at most %.2f s "
                            "ahead (runtime.max_input_backlog_s) and dropping the rest (counted in stats "
                            "dropped_input_s)", self.id, self._max_ahead / SAMPLE_RATE)
            self._dropped += n - keep
            self.stats.dropped_input_s = round(self._dropped / SAMPLE_RATE, 3)
            self._live_stats(now)
            pcm = pcm[n - keep:]
        self._end = start + keep / SAMPLE_RATE
        return pcm

    @property
    def input_backlog_s(self) -> float:
        """User audio pushed and not handed to the STT and VAD yet, in seconds: a last part-frame
        (each whole 80 ms frame goes to them within push_audio). After a client's END_INPUT kame
        serve fills it with silence so it is stepped (as the tandem's backlog; was: 0 always, the
        part-frame dropped at close and counted nowhere); at close what is left is counted in
        dropped_input_s."""
        return self._buf.shape[0] / SAMPLE_RATE

    async def pad_input(self) -> None:
        """The last part-frame filled with silence and handed on (kame serve after END_INPUT), past
        the real-time cap: the silence is the server's, not the client's audio (was: through
        push_audio, so a client at the cap had it dropped, counted as its own, and its part-frame too)."""
        async with self._push_lock:
            if len(self._buf) and not self._closed:
                await self._push(np.zeros(FRAME_SIZE - len(self._buf), np.float32))

    def _live_stats(self, now: float) -> None:
        """A non-final "stats" Meta if a count changed since the last one and stats_interval_s has
        passed since it (the first at once), or one frame if input was dropped (a client sending a
        file at once ends its session soon after: it learns how much was lost). The final one
        comes at close, which a server no longer forwards once the client has left."""
        when, sent = self._stats_sent
        if not self._stats_every:
            return
        counts = self._counts()
        if counts == sent:
            return
        gap = FRAME_S if counts["dropped_input_s"] != sent["dropped_input_s"] else self._stats_every
        if when is None or now - when >= gap - 1e-9:
            self._stats_sent = (now, counts)
            self._emit(Meta({"type": "stats", "session": self.id, "final": False, "t": now, **counts}))

    def _counts(self) -> dict:
        """The "stats" Meta's counts, with those kept elsewhere brought up to date: the frames the
        STT never got, the replies' waits for a reload of the LLM's model."""
        self.stats.dropped_frames = self._stt.dropped_frames
        self.stats.stt_dropped_s = self._stt.dropped_s
        self.stats.wait_llm_loading = self._parts.stats["wait_llm_loading"]
        return self.stats.to_json()

    async def _push(self, pcm: np.ndarray) -> None:
        now = self.clock.now()
        self._buf = np.concatenate([self._buf, pcm])
        while self._buf.shape[0] >= FRAME_SIZE and not self._closed:
            frame, self._buf = self._buf[:FRAME_SIZE], self._buf[FRAME_SIZE:]
            # Live audio ends "now": this frame started len(rest + frame) samples earlier. Audio
            # pushed ahead of time (file mode) keeps its own continuity; never stamped in the future.
            t = now - (self._buf.shape[0] + FRAME_SIZE) / SAMPLE_RATE
            if self._last_frame_t is not None:
                t = min(now, max(t, self._last_frame_t + FRAME_S))
            self._last_frame_t = t
            self._stt.push(AudioFrame(frame, t))
            # VAD compute (~1 ms) off the event loop; frames stay in order (one push at a time).
            events = await asyncio.get_running_loop().run_in_executor(self._vad_pool, self._turns.update, frame, t)
            self._on_vad(events, t + FRAME_S)
        await asyncio.sleep(0)

    def outputs(self) -> OutputReader:
        """The outputs, in order, until the end (None, which stays queued: outputs() called again
        ends at once too). One reader at a time: ReaderError while another is open, as the tandem's
        (base.SingleReader)."""
        return self._reader.open()

    @property
    def _readers(self) -> int:
        """1 while a reader is open (from outputs() until it ends, is closed, or is dropped): close()
        lets the STT flush its last transcript for it."""
        return int(self._reader.reading)

    async def close(self) -> None:
        """End the session. Its place in the agent (runtime.max_sessions) and its id are free at
        once. While a reader iterates the outputs (file mode's), a running STT stream may flush
        its last transcript (up to CLOSE_GRACE_S) and close() returns once the session is over.
        With no reader (a server closes its reader when its client leaves) nobody would get that
        transcript: the stream is cancelled, close() returns at once and the stream unwinds in the
        background (``wait_stopped``; the agent's stop() waits for it); so too after ``skip_flush``
        (a server's shutdown), which also ends a flush under way. The outputs end with a
        final "stats" Meta either way."""
        if self._closed:
            return
        self._closed = True
        if self._on_close:  # (was: after the STT's flush and stop, up to 7 s: a reconnect got "capacity")
            self._on_close(self)
        rp, self._reply = self._reply, None
        if rp is not None:
            if not rp.active:  # over (all it had played): its "agent_turn" (was: none when close() came
                self._commit_agent(rp, interrupted=False)  # before the playback tick that gives it)
            # (cut short: no "agent_turn"; a turn without one is how `kame run`, `kame client` and the
            # timeline tell a reply that was under way when the session ended: runreport.open_turns)
            rp.cancel()
            self._closing_reply = rp  # (its task unwinds: wait_stopped waits for it)
        stt_task, play_task = self._tasks
        play_task.cancel()
        flush, cancelled = self._stt.running and self._readers > 0 and not self._skip_flush.is_set(), False
        if not flush:  # the STT is down (waiting to restart), nobody would read what it flushes, or a shutdown:
            stt_task.cancel()  # (no end() first: its stream would start decoding a last final)
        else:
            self._stt.end()  # no more audio: the running stream flushes and ends
            skip = asyncio.ensure_future(self._skip_flush.wait())  # (a shutdown meanwhile: skip_flush)
            try:
                await asyncio.wait([stt_task, skip], timeout=CLOSE_GRACE_S, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                me = asyncio.current_task()
                # our caller cancelled close(): finish closing, then let the cancellation go on
                cancelled = me is not None and bool(getattr(me, "cancelling", lambda: 1)())
            finally:
                skip.cancel()
        for task in self._tasks:
            if not task.done():
                task.cancel()
        if flush and not self._skip_flush.is_set():  # (else they end in the background: wait_stopped)
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._make_room()  # (first: the final count includes what this Meta pushes out)
        self._stt.drop_queued()  # the audio its stopped stream never read: counted (was: lost uncounted)
        left = self._buf.shape[0]  # a last part-frame never stepped (was: counted nowhere); said apart too
        self._dropped += left
        self._buf = self._buf[:0]
        self.stats.dropped_input_s = round(self._dropped / SAMPLE_RATE, 3)
        self._emit(Meta({"type": "stats", "session": self.id, "final": True, "t": self.clock.now(),
                         **self._counts(), "unstepped_at_close_s": round(left / SAMPLE_RATE, 3)}))
        self._out.put_nowait(None)
        self._ended = True
        if cancelled:
            raise asyncio.CancelledError

    def skip_flush(self) -> None:
        """close() does not wait for the STT's last transcript, or waits no longer if it does: kame
        serve's shutdown (its Connection.shut_down), whose clients get the session's final "stats"
        within its SHUTDOWN_FLUSH_S (2 s). Was: its close waited up to CLOSE_GRACE_S for the STT to
        decode the speech the client was cut off in, and the server closed the socket (1001) first:
        no final "stats". The STT stream is cancelled and unwinds in the background
        (``wait_stopped``), as at a close nobody reads."""
        self._skip_flush.set()

    @property
    def stopped(self) -> bool:
        """All its tasks have ended (after close(): its STT stream has unwound, the reply it
        cancelled too)."""
        rp = self._closing_reply
        return all(t.done() for t in self._tasks) and (rp is None or rp.done)

    async def wait_stopped(self) -> None:
        """Until all its tasks have ended: after close(), its STT stream's unwinding (the
        supervisor gives a stream that ignores its cancellation STOP_WAIT_S, then leaves it) and
        the cancelled reply's (its LLM stream closed before the agent closes the LLM)."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending)
        rp = self._closing_reply
        if rp is not None:  # (at most STOP_WAIT_S: a stream that swallows its cancellation is left)
            waiter = asyncio.ensure_future(rp.wait())
            if not (await asyncio.wait([waiter], timeout=STOP_WAIT_S))[0]:
                waiter.cancel()
                leave([rp._task])  # (the agent's stop() ends it or names it: kame.runtime.interrupt.end_left_behind)

    # ---- input side ---------------------------------------------------------------------
    def _on_vad(self, events: list, t: float) -> None:
        self._turns.note(events)
        for ev in events:
            if ev.kind == "start" and self._user_start is None:
                self._user_start = ev.t
            self._emit(Meta({"type": "vad", "event": ev.kind, "t": ev.t, "detected_at": ev.detected_at}))
        rp = self._reply
        # only voice heard since the reply started counts (not the tail of the user's turn)
        if rp is not None and rp.active and barges_in(self._turns.heard_since(rp.t_started),
                                                      self.cfg.barge_in_min_speech):
            self._barge_in(t)

    def _barge_in(self, t: float) -> None:
        rp = self._reply
        assert rp is not None
        heard = rp.spoken_text
        rp.cancel()
        self._commit_agent(rp, interrupted=True)
        self._reply = None
        log.debug("session %s: barge-in at %.2f s (turn %d)", self.id, t, rp.turn_id)
        self._emit(Meta({"type": "barge_in", "turn": rp.turn_id, "t": t, "heard": heard}))

    async def _stt_transcript(self, tr: Transcript) -> None:
        self._on_transcript(tr)

    def _stt_failure(self, exc: BaseException, wait: float | None) -> None:
        msg = f"stt {self._names.get('stt') or component_name(self.stt)} failed: {_why(exc)}; {restart_note(wait)}"
        at, trace = bug_at(exc, log)  # (the STT's own bug: where it was raised, its traceback at DEBUG)
        log.warning("session %s: %s%s", self.id, msg, at, exc_info=trace)
        self._parts.health.report("stt", False, self.clock.now(), _why(exc), msg, goes_on=wait is None)

    def _on_transcript(self, tr: Transcript) -> None:
        self._parts.health.report("stt", True, self.clock.now())  # working (again)
        self.stats.transcripts += 1
        text = tr.text.strip()
        self._emit(Meta({"type": "transcript", "speaker": "user", "text": text, "final": tr.final, "t": tr.t,
                         "words": [{"word": w.text, "start": w.start, "end": w.end} for w in tr.words]}))
        if not tr.final or not text or self._closed:
            return
        # End of the user's turn: exactly one reply per non-empty final transcript. Its end of
        # speech is the VAD's end of the speech the final's words were in (on the frames' clock),
        # not the user's latest voice: a late final may come while the user speaks again.
        t_end = self._turns.end_of(tr)
        start = self._user_start if self._user_start is not None else (tr.words[0].start if tr.words else t_end)
        self._user_start = None
        if self._reply is not None:  # the user spoke again before the reply was over
            self._reply.cancel()
            self._commit_agent(self._reply, interrupted=True)
            self._reply = None
        self._remember(Turn("user", text, start, t_end))
        self._turn_id += 1
        self.stats.turns += 1
        route, rules = explain_turn(text)
        self._emit(Meta({"type": "turn", "turn": self._turn_id, "route": route, "rules": rules,
                         "t_user_end": t_end, "t": self.clock.now()}))
        self._start_reply(t_end)

    def _start_reply(self, t_end: float) -> None:
        tid = self._turn_id
        rp = ReplyPipeline(self._parts, metric=lambda name, v, extra: self._metric(name, v, {"turn": tid, **extra}))
        self._reply = rp
        try:
            messages = self._prompt_fn(self.history)
        except Exception as exc:  # noqa: BLE001
            self._emit(internal_error("prompt building failed", exc, self.clock.now()))
            self._reply = None
            # the turn is over, without a reply (every "turn" event gets its "agent_turn")
            self._emit(Meta({"type": "agent_turn", "text": "", "t": self.clock.now(), "turn": tid,
                             "interrupted": False, "failed": True, "reply": ""}))
            return
        rp.start(messages, t_user_end=t_end, turn_id=self._turn_id)

    # ---- output side --------------------------------------------------------------------
    async def _playback_loop(self) -> None:
        """Emit one 80 ms AgentAudio per tick, in real time on the clock."""
        start, k = self.clock.now(), 0  # tick k at start + k * 80 ms (no float drift)
        while True:
            next_t = start + k * FRAME_S
            now = self.clock.now()
            if next_t < now - 1.0:  # fell far behind (e.g. a stalled loop): resynchronise
                start, k, next_t = now, 0, now
            if next_t - now > 1e-6:  # tolerance: a clock set to exactly the tick time wakes us
                await self.clock.sleep(next_t - now - 1e-6)
            rp = self._reply
            pcm = rp.pull_frame() if rp is not None else None
            if pcm is not None:
                self._emit(AgentAudio(pcm, next_t))
            elif self.cfg.emit_silence:
                self._emit(AgentAudio(np.zeros(FRAME_SIZE, np.float32), next_t))
            self._live_stats(next_t)
            if rp is not None and not rp.active and rp is self._reply:
                self._commit_agent(rp, interrupted=False)
                self._reply = None
            k += 1

    def _commit_agent(self, rp: ReplyPipeline, *, interrupted: bool) -> None:
        # what the user heard: all of the reply, unless it was cut by a barge-in or a failed
        # LLM/TTS (then the words its played audio reached: ReplyPipeline.spoken_text)
        text = (rp.spoken_text if interrupted or rp.failed else rp.text).strip()
        self._emit(Meta({"type": "agent_turn", "text": text,
                         "t": self.clock.now(), "turn": rp.turn_id, "interrupted": interrupted,
                         "failed": rp.failed, "reply": rp.text}))
        if text:
            now = self.clock.now()
            self._remember(Turn("agent", text, rp.t_user_end or now, now, {"interrupted": interrupted}))

    def _remember(self, turn: Turn) -> None:
        # the newest KEEP_TURNS to 2 x KEEP_TURNS turns (more than a prompt shows; were all of them)
        remember(self.history, turn, KEEP_TURNS)

    def _metric(self, name: str, value: float, labels: dict) -> None:
        self._send_metric(Metric(name, float(value), self.clock.now(), self.id, {"mode": "cascade", **labels}))

    def _stt_metric(self, m: Metric) -> None:
        """A metric of this session's STT stream (stt_partial_latency, stt_final_latency), sent as
        the session's own, as the tandem's (was: to the agent's sink only: OUT.json and the
        session's clients had no STT latency, so an STT falling behind showed nowhere)."""
        self._send_metric(replace(m, session=self.id, labels={"mode": "cascade", **m.labels}))

    def _send_metric(self, m: Metric) -> None:
        self._sink(m)
        self._emit(Meta({"type": "metric", **m.to_json()}))

    def _emit(self, item: Output) -> None:
        if self._ended or (self._closed and not isinstance(item, Meta)):
            return
        self._make_room()
        self._out.put_nowait(item)

    def _make_room(self) -> None:
        """Room for one output: nobody reads MAX_PENDING_OUTPUTS of them: drop the oldest, counted
        (as the tandem)."""
        while self._out.qsize() >= MAX_PENDING_OUTPUTS:
            self._out.get_nowait()
            self.stats.dropped_outputs += 1
