"""The tandem agent: a free-row pool of sessions, the 80 ms frame ticker, and build_agent().

    agent = build_agent(load_config(None, ["frontend.spec=random:tiny"]))   # or TandemAgent(cfg)
    await agent.start()
    s = await agent.open_session()         # CapacityError past runtime.max_sessions
    await s.push_audio(pcm); async for out in s.outputs(): ...
    await agent.stop()

Frame pacing (on the injectable clock): frame k is scheduled at ``s_k``; the ticker waits
until then, takes 80 ms of input from every live session (silence if a session sent none:
full duplex, the agent keeps listening and talking), runs ONE worker job (codec encode ->
LM step -> codec decode for all rows), and delivers the outputs. The frame's deadline is
``s_k + 80 ms``; finishing later is a missed deadline: a Metric("missed_deadline", lateness)
plus a per-session counter (in the "stats" Meta) - never silently absorbed; a session whose
frames keep missing (kame.runtime.metrics.behind_real_time) logs it once, with the numbers and
the likely cause (TandemSession.frame_timing). After a miss the schedule re-anchors at the
finish time (``s_{k+1} = max(s_k + 80 ms, finish)``): the ticker does not burst to catch up;
the sessions' input backlog absorbs it (bounded by runtime.max_input_backlog_s, drops counted).

Session rows: ``max_sessions`` rows; a new session takes a free row (reset at its first
step), a closed session's row goes back to the pool at once and is reset at the next step
(the release and a new owner's first input travel in the same job, resets first). Free rows
are paused in the stepper (no state change) and fed silence in the batch. When no session is live the
ticker sleeps and nothing is stepped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ..backend.childproc import load_in_thread
from ..backend.types import FRAME_S
from ..config import KameConfig
from ..errors import ConfigError, KameError
from .base import Agent, CapacityError, ErrorEvent, Session, close_components, session_id_for
from .clock import Clock, MonotonicClock
from .metrics import Metric, MetricsSink, null_sink
from .session import TandemSession, _ids as _session_ids
from .worker import FrameModel, StepJob, StepWorker, make_vad_factory

log = logging.getLogger(__name__)


class TandemAgent(Agent):
    """Serves up to ``config.runtime.max_sessions`` tandem sessions on one stepping thread.

    ``frame_models``: a factory ``(batch_size) -> FrameModel`` (default: the front-end and codec
    named by the config, kame.runtime.frontend). ``backend``: a factory ``(session) ->
    BackendBridge | None`` (default: the config's STT + LLM, kame.runtime.backend).
    """

    def __init__(
        self,
        config: KameConfig,
        *,
        clock: Clock | None = None,
        metrics: MetricsSink | None = None,
        frame_models: Callable[[int], FrameModel] | None = None,
        backend: Callable[[TandemSession], object] | None = None,
        token_text: Callable[[int], str] | None = None,
        components: dict | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or MonotonicClock()
        self.metrics = metrics or null_sink
        self.max_sessions = config.runtime.max_sessions
        self._frame_models = frame_models
        self._backend = backend
        self._token_text = token_text
        self._tokenizer = None  # the front-end's text vocabulary (for the oracle)
        self.feed_agent_text = True  # inner monologue -> back-end (config backend.agent_text)
        self.components: dict = dict(components or {})  # what is running, for info Meta / file mode
        self.oracle_start_id = -2  # set from the front-end (its text_card) at start
        self.worker: StepWorker | None = None
        self.sessions: dict[int, TandemSession] = {}  # row -> live session
        self._free: list[int] = []
        self._released: list[int] = []  # rows to reset at the next step
        self._wake = asyncio.Event()
        self._ticker: asyncio.Task | None = None
        self.frames = 0
        self.missed = 0

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._ticker is not None:
            return
        cfg = self.config
        if self._frame_models is None:
            from .frontend import load_frame_models

            factory, info = await load_in_thread(load_frame_models, cfg)
            self._frame_models = factory
            self.components.update(info)
            self.oracle_start_id = info.pop("oracle_start_id", self.oracle_start_id)
            token_text = info.pop("token_text")
            self._tokenizer = info.pop("text_tokenizer")
            if self._token_text is None:
                self._token_text = token_text
        if self._backend is None:
            from .backend import load_backend

            self._backend, info = await load_in_thread(load_backend, cfg, self.clock, self._tokenizer, self.metrics)
            self.components.update(info)
        mode = cfg.backend.agent_text
        self.feed_agent_text = mode == "on" or (mode == "auto" and not self.components.get("frontend_random"))
        self.components["agent_text_to_llm"] = self.feed_agent_text
        n = self.max_sessions
        models = [self._frame_models(n)] if cfg.runtime.batched else [self._frame_models(1) for _ in range(n)]
        if sum(m.batch_size for m in models) < n:
            raise ConfigError(f"the frame model has {sum(m.batch_size for m in models)} rows < max_sessions={n}")
        self.worker = StepWorker(models, vad_factory=make_vad_factory(cfg.runtime.vad),
                                 torch_threads=cfg.runtime.torch_threads, clock=self.clock)
        self.components.setdefault("mode", "tandem")
        self.components["batched"] = cfg.runtime.batched
        self._free = list(range(n))[::-1]
        self._ticker = asyncio.create_task(self._run(), name="kame-ticker")

    async def stop(self) -> None:
        for s in list(self.sessions.values()):
            await s.close()
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        if self.worker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.worker.shutdown)
            self.worker = None
        await close_components(getattr(self._backend, "shared", ()))  # the STT / LLM / TTS all sessions share

    async def open_session(self, session_id: str | None = None) -> Session:
        if self._ticker is None:
            await self.start()
        sid = session_id_for(session_id, {s.id for s in self.sessions.values()}, lambda: f"s{next(_session_ids)}")
        if not self._free:
            raise CapacityError(f"all {self.max_sessions} sessions are in use (runtime.max_sessions)")
        row = self._free.pop()
        s = TandemSession(self, row, sid)
        self.sessions[row] = s
        if self._backend is not None:
            s.backend = self._backend(s)
            if s.backend is not None:
                await s.backend.start()
        s.info(**{k: v for k, v in self.components.items() if _jsonable(v)})
        self._wake.set()
        return s

    def _release(self, s: TandemSession) -> None:
        if self.sessions.get(s.row) is s:
            del self.sessions[s.row]
            self._free.append(s.row)  # reusable at once: a new session's first step resets it anyway
            self._released.append(s.row)  # reset (and idle) from the next step on

    def token_text(self, token: int) -> str:
        if token < 0 or self._token_text is None:
            return ""
        return self._token_text(token)

    # ----------------------------------------------------------------- the frame ticker
    async def _run(self) -> None:
        clock = self.clock
        next_t = clock.now()
        while True:
            if not self.sessions:
                if self._released:  # reset rows of closed sessions even when nobody is left
                    try:
                        await self.worker.submit(StepJob(rows=[], release=self._take_released()))
                    except Exception:  # noqa: BLE001 - the next owner's first step resets it anyway
                        log.exception("row reset failed")
                self._wake.clear()
                await self._wake.wait()
                next_t = clock.now()
                continue
            wait = next_t - clock.now()
            if wait > 0:
                await clock.sleep(wait)
            if not self.sessions:
                continue
            try:
                next_t = await self._frame(next_t)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a model (or delivery) failure: report it, keep the sessions alive
                if isinstance(exc, KameError):  # named by kame (e.g. a codec that broke its interface)
                    log.warning("frame step failed: %s", exc)
                else:
                    log.exception("frame step failed")
                for s in list(self.sessions.values()):
                    s._put(ErrorEvent(f"front-end step failed: {exc}", clock.now()))
                next_t = max(next_t + FRAME_S, clock.now())

    async def _frame(self, next_t: float) -> float:
        """One frame for every live session; returns the next frame's scheduled time."""
        clock = self.clock
        started = clock.now()  # (after next_t when the ticker woke late)
        live = list(self.sessions.values())
        rows = [s.take_input(next_t) for s in live]
        result = await self.worker.submit(StepJob(rows=rows, release=self._take_released()))
        done = clock.now()
        self.frames += 1
        self.metrics(Metric("step_time", result.compute_s, done, labels={"sessions": len(live)}))
        deadline = next_t + FRAME_S
        late = done - deadline
        if late > 1e-9:
            self.missed += 1
            self.metrics(Metric("missed_deadline", late, done, labels={"sessions": len(live)}))
        # the step: from the ticker's start until the worker had it done; the wait: the ticker's late
        # start and the time the event loop took to take the result (a loop held by other work)
        ended = min(done, result.ended) if result.ended is not None else done
        for s, rin in zip(live, rows):  # (timing first: a "stats" sent by deliver counts this frame's miss)
            s.frame_timing(late if late > 1e-9 else 0.0, started - next_t + done - ended, ended - started, done)
            if rin.row in result.rows:
                s.deliver(rin, result.rows[rin.row], done, result.compute_s)
        return max(deadline, done)  # re-anchor after a miss: no catch-up burst

    def _take_released(self) -> list[int]:
        rows, self._released = self._released, []
        return rows


def _jsonable(v) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, dict))


def build_agent(config: KameConfig, *, clock: Clock | None = None, metrics: MetricsSink | None = None,
                **kwargs) -> Agent:
    """mode "tandem" -> TandemAgent; "cascade" -> kame.cascade.agent.build_cascade_agent."""
    if config.mode == "cascade":
        from ..cascade.agent import build_cascade_agent

        return build_cascade_agent(config, clock=clock, metrics=metrics)
    if config.mode != "tandem":
        raise ConfigError(f"mode: {config.mode!r} is not one of ['tandem', 'cascade']")
    return TandemAgent(config, clock=clock, metrics=metrics, **kwargs)


__all__ = ["TandemAgent", "build_agent", "FRAME_S"]
