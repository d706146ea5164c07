"""One cascade conversation: user audio -> VAD + streaming STT -> (final transcript) -> LLM ->
sentence-by-sentence TTS -> agent audio paced at 80 ms on the clock.

Implements kame.runtime.base.Session, so the server and file mode drive it like the tandem:

    session = await agent.open_session()
    await session.push_audio(pcm)                # float32 24 kHz, any length
    async for out in session.outputs(): ...      # AgentAudio every 80 ms, AgentText, Meta, ErrorEvent

Turn taking: the STT's *final* transcript ends the user's turn and starts one reply (a final
with no words is ignored). The VAD (kame.cascade.turns) gives the end-of-speech time for the
latency metrics and detects barge-in: ``barge_in_min_speech`` seconds of user speech while a
reply is being generated or played cancels the LLM stream and the TTS and stops the audio at
the next frame. The agent's turn goes into the history as far as it was heard.

Meta dicts sent (all JSON-able): {"type": "transcript", "speaker": "user", "text", "final",
"t", "words": [{"word", "start", "end"}]}, {"type": "agent_turn", "text" (as heard), "reply"
(all the LLM said), "interrupted", "failed" (the LLM or TTS failed mid-reply), "turn", "t"}, {"type": "metric", <Metric fields>}, {"type": "turn", "turn", "route",
"rules", "t_user_end"}, {"type": "barge_in", "turn", "t", "heard"}, {"type": "vad", "event":
"start"|"end", "t", "detected_at"}, {"type": "backend", "component", "status": "down"|"up", "error", "t"} (as the
tandem: after an ErrorEvent when a back-end fails, "up" at its next success).
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Callable, Sequence

import numpy as np

from ..audio import SAMPLE_RATE, check_pcm
from ..backend.types import FRAME_SIZE, AudioFrame, ChatMessage, Transcript, Turn
from ..errors import AudioFormatError
from ..runtime.base import AgentAudio, ErrorEvent, Meta, Output, Session
from ..runtime.clock import Clock
from ..runtime.metrics import Metric, MetricsSink, null_sink
from .config import CascadeConfig
from .reply import ReplyParts, ReplyPipeline
from .routing import explain_turn
from .turns import TurnTracker

log = logging.getLogger(__name__)
FRAME_S = FRAME_SIZE / SAMPLE_RATE
PromptFn = Callable[[Sequence[Turn]], list[ChatMessage]]


async def _until_none(queue: asyncio.Queue) -> AsyncIterator:
    """The queue's items up to (not including) the first None."""
    while (item := await queue.get()) is not None:
        yield item


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
    ) -> None:
        self.id = session_id
        self.stt, self.llm, self.tts = stt, llm, tts
        self.cfg, self.clock, self._sink = cfg, clock, metrics
        self._parts = ReplyParts(llm, tts, cfg, clock, self._emit, getattr(prompt_fn, "prompt_config", None))
        self._prompt_fn = prompt_fn
        self._on_close = on_close
        self._turns = TurnTracker(vad)
        self._vad_pool = vad_pool  # an Executor for the VAD (None = the loop's default)
        self.history: list[Turn] = []
        self._out: asyncio.Queue[Output | None] = asyncio.Queue()
        self._frames: asyncio.Queue[AudioFrame | None] = asyncio.Queue()
        self._buf = np.zeros(0, np.float32)
        self._push_lock = asyncio.Lock()
        self._last_frame_t: float | None = None
        self._reply: ReplyPipeline | None = None
        self._turn_id = 0
        self._user_start: float | None = None  # first speech of the pending user turn
        self._closed = False
        self._tasks = [
            asyncio.create_task(self._stt_loop(), name=f"cascade-stt-{session_id}"),
            asyncio.create_task(self._playback_loop(), name=f"cascade-play-{session_id}"),
        ]

    # ---- Session interface --------------------------------------------------------------
    async def push_audio(self, pcm: np.ndarray) -> None:
        if self._closed:
            return
        try:  # bad audio is reported and dropped; the session goes on (as the tandem does)
            arr = np.asarray(pcm)
            pcm = check_pcm(arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr)
        except AudioFormatError as exc:
            self._emit(ErrorEvent(f"bad audio dropped: {exc}", self.clock.now()))
            return
        async with self._push_lock:  # concurrent pushes keep frame order and timing
            await self._push(pcm)

    async def _push(self, pcm: np.ndarray) -> None:
        now = self.clock.now()
        self._buf = np.concatenate([self._buf, pcm])
        while self._buf.shape[0] >= FRAME_SIZE:
            frame, self._buf = self._buf[:FRAME_SIZE], self._buf[FRAME_SIZE:]
            # Live audio ends "now": this frame started len(rest + frame) samples earlier. Audio
            # pushed ahead of time (file mode) keeps its own continuity; never stamped in the future.
            t = now - (self._buf.shape[0] + FRAME_SIZE) / SAMPLE_RATE
            if self._last_frame_t is not None:
                t = min(now, max(t, self._last_frame_t + FRAME_S))
            self._last_frame_t = t
            self._frames.put_nowait(AudioFrame(frame, t))
            # VAD compute (~1 ms) off the event loop; frames stay in order (one push at a time).
            events = await asyncio.get_running_loop().run_in_executor(self._vad_pool, self._turns.update, frame, t)
            self._on_vad(events, t + FRAME_S)
        await asyncio.sleep(0)

    def outputs(self) -> AsyncIterator[Output]:
        return _until_none(self._out)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reply is not None:
            self._reply.cancel()
        self._frames.put_nowait(None)  # lets the STT flush and end
        stt_task, play_task = self._tasks
        play_task.cancel()
        try:
            await asyncio.wait_for(stt_task, timeout=5.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            stt_task.cancel()
        except Exception:  # noqa: BLE001 - already reported by the loop
            pass
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._out.put_nowait(None)
        if self._on_close:
            self._on_close(self)

    # ---- input side ---------------------------------------------------------------------
    def _on_vad(self, events: list, t: float) -> None:
        for ev in events:
            if ev.kind == "start" and self._user_start is None:
                self._user_start = ev.t
            self._emit(Meta({"type": "vad", "event": ev.kind, "t": ev.t, "detected_at": ev.detected_at}))
        rp = self._reply
        # only voice heard since the reply started counts (not the tail of the user's turn)
        if rp is not None and rp.active and self._turns.heard_since(rp.t_started) >= self.cfg.barge_in_min_speech:
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

    async def _stt_loop(self) -> None:
        restarts = 0
        while not self._closed:
            try:
                async for tr in self.stt.stream(_until_none(self._frames)):
                    self._on_transcript(tr)
                return  # the frame source ended (close)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - report and restart the stream
                restarts += 1
                msg = f"stt failed: {exc}" + ("; restarting the stream" if restarts <= 3 else "; giving up")
                log.warning("session %s: %s", self.id, msg)
                self._parts.health.report("stt", False, self.clock.now(), str(exc), msg)
                if restarts > 3:
                    return
                await self.clock.sleep(0.5)

    def _on_transcript(self, tr: Transcript) -> None:
        self._parts.health.report("stt", True, self.clock.now())  # working (again)
        text = tr.text.strip()
        self._emit(Meta({"type": "transcript", "speaker": "user", "text": text, "final": tr.final, "t": tr.t,
                         "words": [{"word": w.text, "start": w.start, "end": w.end} for w in tr.words]}))
        if not tr.final or not text or self._closed:
            return
        # End of the user's turn: exactly one reply per non-empty final transcript.
        t_end = self._turns.current_speech_end()  # the VAD's, on the frames' clock
        if t_end is None:
            t_end = tr.words[-1].end if tr.words else tr.t
        start = self._user_start if self._user_start is not None else (tr.words[0].start if tr.words else t_end)
        self._user_start = None
        if self._reply is not None:  # the user spoke again before the reply was over
            self._reply.cancel()
            self._commit_agent(self._reply, interrupted=True)
            self._reply = None
        self.history.append(Turn("user", text, start, t_end))
        self._turn_id += 1
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
            self._emit(ErrorEvent(f"prompt building failed: {exc}", self.clock.now()))
            self._reply = None
            # the turn is over, without a reply (every "turn" event gets its "agent_turn")
            self._emit(Meta({"type": "agent_turn", "text": "", "t": self.clock.now(), "turn": tid,
                             "interrupted": False, "reply": ""}))
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
            if rp is not None and not rp.active and rp is self._reply:
                self._commit_agent(rp, interrupted=False)
                self._reply = None
            k += 1

    def _commit_agent(self, rp: ReplyPipeline, *, interrupted: bool) -> None:
        # what the user heard: all of the reply, unless it was cut by a barge-in or a failed
        # LLM/TTS (then the segments that started playing)
        text = (rp.spoken_text if interrupted or rp.failed else rp.text).strip()
        self._emit(Meta({"type": "agent_turn", "text": text,
                         "t": self.clock.now(), "turn": rp.turn_id, "interrupted": interrupted,
                         "failed": rp.failed, "reply": rp.text}))
        if text:
            now = self.clock.now()
            self.history.append(Turn("agent", text, rp.t_user_end or now, now, {"interrupted": interrupted}))

    def _metric(self, name: str, value: float, labels: dict) -> None:
        m = Metric(name, float(value), self.clock.now(), self.id, {"mode": "cascade", **labels})
        self._sink(m)
        self._emit(Meta({"type": "metric", **m.to_json()}))

    def _emit(self, item: Output) -> None:
        if not self._closed or isinstance(item, Meta):
            self._out.put_nowait(item)
