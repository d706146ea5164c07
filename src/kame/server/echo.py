"""A diagnostic agent that echoes the user's audio back, paced in real time.

It implements the Agent/Session interface (kame.runtime.base) with no model at all, so the
server, the browser page and network setups can be checked without weights:

    kame serve --agent echo            # speak into the page, hear yourself 0.4 s later

Each session emits one 80 ms AgentAudio frame per 80 ms (the user's audio delayed by
``delay_frames``, silence when none), an AgentText piece and "transcript"/"oracle"/"metric"/"stats"
Meta once a second, like a real agent would, and its outputs end with a final "stats" Meta
(``"final": true``, the session's totals), as the tandem's and the cascade's do. It is NOT a
conversational agent.

Audio sent faster than real time piles up; the session keeps the newest ``MAX_BACKLOG_S`` of it
and drops older audio as the tandem does: one warning in the server's log, the seconds dropped
in every "stats" Meta (``dropped_input_s``, which `kame client` warns about), and a "stats" Meta
at once when dropping starts. Audio not played yet when the session closes is counted there
too, and said apart in the final one (``unstepped_at_close_s``; ``input_backlog_s``: after
END_INPUT, kame serve lets the session play it first, bounded, its last part-frame filled with
silence: ``pad_input``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging

import numpy as np

from ..backend.types import FRAME_S, FRAME_SIZE as FRAME
from ..runtime.base import Agent, AgentAudio, AgentText, CapacityError, Meta, OutputReader, Session, SingleReader
from ..runtime.clock import Clock, MonotonicClock

MAX_BACKLOG_S = 10.0  # user audio kept beyond what was played (the rest is dropped, counted)
_ids = itertools.count()
_CLOSED = object()  # the end marker of a session's outputs
log = logging.getLogger(__name__)


class EchoSession(Session):
    def __init__(self, agent: "EchoAgent", session_id: str) -> None:
        self.id = session_id
        self.agent = agent
        self._in = np.zeros(0, dtype=np.float32)
        self._pending: list[np.ndarray] = []  # user audio frames not played yet
        self._out: asyncio.Queue = asyncio.Queue()
        self._reader = SingleReader(self._out, _CLOSED, session_id)  # outputs(): one reader, as the tandem's
        self._closed = asyncio.Event()
        self._heard = 0  # samples received
        self._frames = 0  # frames played
        self._missed = 0  # frames played more than a frame late
        self.dropped_input_s = 0.0  # user audio dropped: it came faster than real time
        self._pad: tuple[np.ndarray | None, int] = (None, 0)  # pad_input's frame, and the samples of silence in it
        self._task = asyncio.create_task(self._run(), name=f"echo-session-{session_id}")

    async def push_audio(self, pcm: np.ndarray) -> None:
        if self._closed.is_set():
            return
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        self._heard += len(pcm)
        self._in = np.concatenate([self._in, pcm])
        while len(self._in) >= FRAME:
            self._pending.append(self._in[:FRAME])
            self._in = self._in[FRAME:]
        over = len(self._pending) - round(MAX_BACKLOG_S / FRAME_S)
        if over > 0:  # a client sending faster than real time: keep the newest audio, count the rest
            first = not self.dropped_input_s
            self.dropped_input_s += over * FRAME_S
            del self._pending[:over]
            if first:  # warn once; the client learns of it at once, not only with the next second's stats
                log.warning("echo session %s: user audio comes faster than real time; keeping the newest %g s "
                            "and dropping older audio (counted in stats dropped_input_s)", self.id, MAX_BACKLOG_S)
                await self._out.put(self._stats(self.agent.clock.now()))

    async def pad_input(self) -> None:
        """A last part-frame filled with silence and queued to be played (kame serve after
        END_INPUT), past MAX_BACKLOG_S: the silence is the server's (was: pushed as the client's
        audio, so for a client at the cap its oldest frame was dropped and counted as its own)."""
        if self._closed.is_set() or not len(self._in):
            return
        n = FRAME - len(self._in)
        frame = np.concatenate([self._in, np.zeros(n, np.float32)])
        self._pending.append(frame)
        self._in = self._in[:0]
        self._pad = (frame, n)

    def _pad_s(self, frames: list[np.ndarray]) -> float:
        """The seconds of pad_input's silence among ``frames`` (not the client's audio)."""
        frame, n = self._pad
        return n / 24000 if frame is not None and any(f is frame for f in frames) else 0.0

    @property
    def input_backlog_s(self) -> float:
        """User audio received and not played yet, in seconds."""
        return len(self._pending) * FRAME_S + len(self._in) / 24000

    def _stats(self, t: float, final: bool = False, **more) -> Meta:
        return Meta({"type": "stats", "session": self.id, "final": final, "t": t, "frames": self._frames,
                     "missed_deadlines": self._missed, "dropped_input_s": round(self.dropped_input_s, 3), **more})

    async def _run(self) -> None:
        clock, step = self.agent.clock, FRAME_S
        t_next = clock.now()
        await self._out.put(Meta({"type": "info", "agent": "echo", "session": self.id}))
        for n in itertools.count(1):
            t_next += step
            await clock.sleep(t_next - clock.now())
            t0 = clock.now()
            self._frames += 1
            self._missed += int(t0 - t_next > step)
            delaying = n <= self.agent.delay_frames  # the first frames are the delay: silence
            frame = self._pending.pop(0) if self._pending and not delaying else np.zeros(FRAME, np.float32)
            await self._out.put(AgentAudio(frame, t0))
            if n % 12 == 0:  # about once a second
                secs = self._heard / 24000
                await self._out.put(AgentText(" echo", t0))
                await self._out.put(Meta({"type": "transcript", "final": False, "text": f"heard {secs:.1f} s"}))
                await self._out.put(Meta({"type": "oracle", "event": "reset", "prediction_id": n, "t": t0}))
                await self._out.put(Meta({"type": "oracle", "event": "append", "prediction_id": n,
                                          "text": f"echo after {secs:.1f} s", "t": t0}))
                await self._out.put(Meta({
                    "type": "metric", "name": "step_time", "value": clock.now() - t0,
                    "t": clock.now(), "session": self.id, "labels": {},
                }))
                await self._out.put(self._stats(t0))

    def outputs(self) -> OutputReader:
        """The outputs, in order, until the session is closed. One reader at a time: ReaderError
        while another is open (kame.runtime.base.SingleReader; was: a second reader silently took
        part of the outputs)."""
        return self._reader.open()

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        left = self.input_backlog_s - self._pad_s(self._pending)  # (the client's audio, not a pad)
        self.dropped_input_s += left  # never played (was: counted nowhere)
        self._pending, self._in = [], self._in[:0]
        # the totals last (was: none, and `kame client` after a short input had no totals at all); what
        # close left unplayed said apart (kame client: what a server's shutdown left unheard)
        self._out.put_nowait(self._stats(self.agent.clock.now(), final=True, unstepped_at_close_s=round(left, 3)))
        self._out.put_nowait(_CLOSED)  # (after the task: nothing is queued after the end marker)
        self.agent._sessions.pop(self.id, None)


class EchoAgent(Agent):
    def __init__(self, max_sessions: int = 16, delay_frames: int = 5, clock: Clock | None = None) -> None:
        self.max_sessions = max_sessions
        self.delay_frames = delay_frames
        self.clock = clock or MonotonicClock()
        self._sessions: dict[str, EchoSession] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for s in list(self._sessions.values()):
            await s.close()

    async def open_session(self, session_id: str | None = None) -> Session:
        if len(self._sessions) >= self.max_sessions:
            raise CapacityError(f"echo agent is serving its maximum of {self.max_sessions} sessions")
        sid = session_id or f"echo{next(_ids)}"
        s = EchoSession(self, sid)
        self._sessions[sid] = s
        return s

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)
