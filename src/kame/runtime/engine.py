"""The tandem agent: a free-row pool of sessions, the 80 ms frame ticker, and build_agent().

    agent = build_agent(load_config(None, ["frontend.spec=random:tiny"]))   # or TandemAgent(cfg)
    await agent.start()
    s = await agent.open_session()         # CapacityError past runtime.max_sessions
    await s.push_audio(pcm); async for out in s.outputs(): ...
    await agent.stop()

Frame pacing (on the injectable clock): frame k is scheduled at ``s_k``; the ticker waits
until then, takes 80 ms of input from every live session (silence if a session sent none:
full duplex, the agent keeps listening and talking), runs ONE worker job (codec encode ->
LM step over all rows -> codec decode; a codec with rows_subset codes the rows in use), and delivers the outputs. The frame's deadline is
``s_k + 80 ms``; finishing later is a missed deadline: a Metric("missed_deadline", lateness)
plus a per-session counter (in the "stats" Meta) - never silently absorbed; a session whose
frames keep missing (kame.runtime.metrics.behind_real_time) logs it once, with the numbers and
the likely cause (TandemSession.frame_timing). After a miss the schedule re-anchors at the
finish time (``s_{k+1} = max(s_k + 80 ms, finish)``): the ticker does not burst to catch up;
the sessions' input backlog absorbs it (bounded by runtime.max_input_backlog_s, drops counted).

Session rows: ``max_sessions`` rows; a new session takes a free row (reset at its first
step), a closed session's row goes back to the pool as its close() starts (its STT stream
unwinds in the background; stop() waits for it) and is reset at the next step
(the release and a new owner's first input travel in the same job, resets first). Free rows
are paused in the stepper (no state change) and fed silence in the batch. When no session is live the
ticker sleeps and nothing is stepped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Awaitable, Callable

from ..backend.childproc import load_in_thread
from ..backend.types import FRAME_S
from ..config import KameConfig, validate_config
from ..errors import ConfigError, KameError
from .base import (OWN_PARTS, Agent, CapacityError, Session, close_components, internal_error, own_components,
                   check_session_id, room_to_unwind, session_id_for)
from .clock import STOP_WAIT_S, Clock, MonotonicClock
from .interrupt import end_left_behind
from .loading import config_key, config_keys
from .metrics import Metric, MetricsSink, guard_sink
from .session import TandemSession, _ids as _session_ids
from .worker import FrameModel, StepJob, StepWorker, make_vad_factory

log = logging.getLogger(__name__)


class StartOnce:
    """An agent's start, shared by every caller (both agents use it): the first start() runs it in
    a task, callers meanwhile wait for that one and get its error. A cancelled caller leaves the
    others waiting; only when every caller gave up is the start cancelled (a load in a thread is
    then aborted, as a cancelled start always was), so nothing is loaded twice or half-started."""

    def __init__(self) -> None:
        self._current: list | None = None  # [task, callers waiting for it, how it is being ended]

    async def run(self, start: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        cur = self._current
        if cur is not None and cur[2] == "abandoned" and not cur[0].done() and cur[0].get_loop() is loop:
            await asyncio.wait({cur[0]})  # (its callers gave up: it unwinds; this caller starts anew)
            cur = self._current
        if cur is None or cur[0].done() or cur[0].get_loop() is not loop:
            task = loop.create_task(start(), name="kame-start")
            cur = self._current = [task, 0, None]
            task.add_done_callback(self._ended)
        task = cur[0]
        cur[1] += 1
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if cur[2] == "stopped":  # stop() cancelled the start (not this caller's cancellation)
                me = asyncio.current_task()
                if not (me is not None and me.cancelling()):
                    raise KameError("the agent was stopped while it was starting; start it again") from None
            raise
        finally:
            cur[1] -= 1
            if cur[1] == 0 and not task.done():  # every caller gave up
                cur[2] = cur[2] or "abandoned"
                task.cancel()

    def _ended(self, task: asyncio.Task) -> None:
        if self._current is not None and self._current[0] is task:
            self._current = None
        if not task.cancelled():
            task.exception()  # (its callers got it; no "exception was never retrieved")

    async def cancel(self) -> None:
        """stop(): cancel a start under way in this loop and wait until it has ended."""
        cur = self._current
        task = cur[0] if cur is not None else None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            cur[2] = "stopped"
            task.cancel()
            await asyncio.wait({task})


class StepFailures:
    """The log of failing frame steps: the first of a run of failures in full (a traceback unless
    kame named it), then one line every REPORT_S of clock time counting the repeats, and one when
    the steps work again (was: a traceback every 80 ms, ~45 000 an hour, for a lasting fault). Each
    failed frame still sends its sessions an ErrorEvent."""

    REPORT_S = 10.0

    def __init__(self) -> None:
        self.run = 0  # consecutive failed steps
        self.total = 0  # failed steps since the start (TandemAgent.failed_steps)
        self._since = self._reported = 0.0

    def failed(self, exc: Exception, t: float) -> None:
        self.run += 1
        self.total += 1
        if self.run == 1:
            self._since = self._reported = t
            if isinstance(exc, KameError):  # named by kame (e.g. a codec that broke its interface)
                log.warning("frame step failed: %s", exc)
            else:
                log.exception("frame step failed")
        elif t - self._reported >= self.REPORT_S:
            self._reported = t
            log.warning("frame step still failing: %d steps in a row over %.0f s (latest: %s: %s)", self.run,
                        t - self._since, type(exc).__name__, exc)

    def ok(self) -> None:
        if self.run:
            if self.run > 1:
                log.warning("frame steps work again after %d failed in a row", self.run)
            self.run = 0


def component_state(part) -> str:
    """A shared component's state for an agent's health(): its optional ``state`` attribute
    ("up", "loading", "down", "stopped": kame.backend.llm.embedded.EmbeddedLLM has one); "up"
    for one without it (plugins), "unknown" if reading it fails (a health probe must not)."""
    try:
        state = getattr(part, "state", None)
    except Exception:  # noqa: BLE001 - a plugin's state property that raises
        return "unknown"
    return state if isinstance(state, str) and state else "up"


def shared_states(parts) -> dict:
    """The tandem's shared parts (load_backend's ``factory.shared``) -> {"stt"|"llm"|"tts": state},
    each named by the interface it has (stream / stream_chat / synthesize)."""
    from .. import registry

    states: dict = {}
    for part in parts:
        kind = next((k for k, method in registry.ASYNC_ITERATORS.items()
                     if k not in states and callable(getattr(part, method, None))), None)
        if kind is not None:
            states[kind] = component_state(part)
    return states


def sessions_full(max_sessions: int) -> CapacityError:
    """The refusal of a session past runtime.max_sessions (the tandem's and the cascade's)."""
    used = "the only session is" if max_sessions == 1 else f"all {max_sessions} sessions are"
    return CapacityError(f"{used} in use (runtime.max_sessions)")


def check_clock(clock) -> Clock:
    """The agent's clock (None: MonotonicClock); one without now() and sleep() is a TypeError now,
    not an AttributeError inside the frame ticker later."""
    if clock is None:
        return MonotonicClock()
    if isinstance(clock, type):  # (its now() and sleep() are there, unbound: a TypeError at the first frame)
        raise TypeError(f"clock: {clock.__name__} is a class, not a clock: pass an instance: clock={clock.__name__}()")
    lacks = [m + "()" for m in ("now", "sleep") if not callable(getattr(clock, m, None))]
    if lacks:
        raise TypeError(f"clock: {clock!r} is not a kame Clock (it has no {' or '.join(lacks)}): a clock has "
                        f"now() -> seconds and async sleep(seconds), as kame.runtime.clock.MonotonicClock and "
                        f"FakeClock; leave clock=None for real time")
    return clock


def check_config(config, who: str, components: dict | None = None) -> KameConfig:
    """The agent's config: a KameConfig (else a TypeError saying how to make one; was: an
    AttributeError on its first key) whose values pass load_config's checks (kame.config.validate_config:
    a ConfigError naming the key for a bad value set in code; was: accepted, then e.g. an IndexError in
    push_audio). ``components``: the agent's own parts, which stand in for the config's."""
    return validate_config(_kame_config(config, who), components)


def _kame_config(config, who: str) -> KameConfig:
    if not isinstance(config, KameConfig):
        raise TypeError(f"{who} needs a kame config (kame.config.KameConfig), got {type(config).__name__} {config!r}: "
                        f"make one with kame.load_config() (defaults), load_config('kame.toml', ['mode=tandem', ...]) "
                        f"or KameConfig()")
    return config


class TandemAgent(Agent):
    """Serves up to ``config.runtime.max_sessions`` tandem sessions on one stepping thread.

    ``frame_models``: a factory ``(batch_size) -> FrameModel`` (default: the front-end and codec
    named by the config, kame.runtime.frontend). ``backend``: a factory ``(session) ->
    BackendBridge | None`` (default: the config's STT + LLM, kame.runtime.backend).
    ``components``: names for the info Meta, and the caller's own STT / LLM objects under "stt" /
    "llm" (used instead of backend.stt / backend.llm; stop() closes them as it closes its own),
    checked at once as the cascade's (base.own_components: a TypeError for a string there, or an
    object without its async generator method); with ``backend=`` given, strings there are the
    names of its STT / LLM for the info Meta.

    start() runs once however many callers ask at once (open_session starts the agent); in an
    event loop after the one it ran in has ended, it starts again there (that loop's sessions
    are closed; the loaded models are kept). stop() closes what start loaded: a later start loads
    it again.
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
        self.config = check_config(config, "TandemAgent")
        self.clock = check_clock(clock)
        self.metrics = guard_sink(metrics)  # (every caller gets the guarded one: sessions, STT, producer)
        self.max_sessions = config.runtime.max_sessions
        info, self._own = _split_components(components, backend is not None)
        if self._own and backend is not None:
            raise TypeError("TandemAgent: give either backend= (a bridge factory) or own STT / LLM objects in "
                            "components=, not both")
        self._frame_models = frame_models
        self._backend = backend
        self._backend_given = backend is not None  # (else loaded by start, and reloaded after stop)
        self._token_text = token_text
        self._tokenizer = None  # the front-end's text vocabulary (for the oracle)
        self.feed_agent_text = True  # inner monologue -> back-end (config backend.agent_text)
        self.components: dict = info  # what is running, for info Meta / file mode
        self.oracle_start_id = -2  # set from the front-end (its text_card) at start
        self.worker: StepWorker | None = None
        self.sessions: dict[int, TandemSession] = {}  # row -> live session
        self._free: list[int] = []
        self._released: list[int] = []  # rows to reset at the next step
        self._unwinding: set = set()  # closed sessions' back-ends (BackendBridge) still unwinding: stop() waits
        self._wake = asyncio.Event()  # (a new one in each loop the agent starts in)
        self._ticker: asyncio.Task | None = None
        self._start_once = StartOnce()
        self._failures = StepFailures()
        self._stopping = False
        self._stops = 0  # stop() calls (a session opening across a whole one is refused)
        self.frames = 0
        self.missed = 0

    @property
    def failed_steps(self) -> int:
        """Frame steps that failed since the agent was made (they do not count in ``frames``)."""
        return self._failures.total

    def health(self) -> dict:
        """What a health probe needs, read-only and cheap: ``started`` (a start succeeded and no
        stop since), ``running`` (started and its frame loop, the ticker task, alive), ``frames``,
        ``missed``, ``failed_steps``, ``components`` (the state of each shared STT / LLM / TTS,
        component_state) and ``error`` (why it is not running after a start, else None)."""
        t = self._ticker
        running = t is not None and not t.done() and not t.get_loop().is_closed()
        error = None
        if t is not None and not running:
            exc = t.exception() if t.done() and not t.cancelled() else None
            error = (f"the frame loop has ended: {type(exc).__name__}: {exc}" if exc else
                     "the frame loop was cancelled" if t.done() else "the frame loop's event loop has ended")
        return {"started": t is not None, "running": running, "frames": self.frames, "missed": self.missed,
                "failed_steps": self.failed_steps, "components": shared_states(getattr(self._backend, "shared", ())),
                "error": error}

    # ----------------------------------------------------------------- lifecycle
    def _ticking(self) -> bool:
        t = self._ticker
        return t is not None and not t.done() and t.get_loop() is asyncio.get_running_loop()

    async def start(self) -> None:
        """Load the front-end, codec, STT and LLM (in a thread) and start the frame loop; once
        however many callers ask at once (the others wait and get its error). Again in a new event
        loop if the one it ran in has ended (models kept). KameError while stop() runs, or when
        the agent runs in another thread's loop."""
        if self._stopping:
            raise KameError("the agent is stopping; start it again once stop() has returned")
        if self._ticking():
            return
        self._check_loop()
        await self._start_once.run(self._start)

    def _check_loop(self) -> None:
        """KameError if the agent runs in another event loop that is running (another thread's)."""
        old = self._ticker
        if old is not None and not old.done() and old.get_loop() is not asyncio.get_running_loop() \
                and old.get_loop().is_running():
            raise KameError("this agent runs in another event loop (another thread): use it from that loop, "
                            "or build one agent per loop")

    async def _start(self) -> None:
        old = self._ticker
        if old is not None and old.get_loop() is asyncio.get_running_loop():  # it failed in this loop (logged):
            self._ticker = None  # a new one serves the same sessions (their readers are in this loop)
            log.warning("the frame loop had ended; starting it again for the %d session(s)", len(self.sessions))
        elif old is not None:  # its event loop has ended (e.g. started in another asyncio.run)
            await self._leave_old_loop()
        cfg = self.config
        if self._frame_models is None:
            factory, info = await load_in_thread(_load_frontend, cfg)  # (importing it imports torch)
            self._frame_models = factory
            self.components.update(info)
            self.oracle_start_id = info.pop("oracle_start_id", self.oracle_start_id)
            token_text = info.pop("token_text")
            self._tokenizer = info.pop("text_tokenizer")
            if self._token_text is None:
                self._token_text = token_text
        if self._backend is None:
            self._backend, info = await load_in_thread(_load_backend, cfg, self.clock, self._tokenizer,
                                                       self.metrics, self._own)
            self.components.update(info)
        mode = cfg.backend.agent_text
        self.feed_agent_text = mode == "on" or (mode == "auto" and not self.components.get("frontend_random"))
        self.components["agent_text_to_llm"] = self.feed_agent_text
        if self.worker is None:  # (kept from a loop that has ended: it is a thread, not the loop's)
            models, vad_factory = await load_in_thread(self._build_models)  # (a silero VAD loads onnxruntime)
            self.worker = StepWorker(models, vad_factory=vad_factory, torch_threads=cfg.runtime.torch_threads,
                                     clock=self.clock)
            self._free, self._released = list(range(self.max_sessions))[::-1], []
        self.components.setdefault("mode", "tandem")
        self.components["batched"] = cfg.runtime.batched
        self._wake = asyncio.Event()
        self._ticker = asyncio.get_running_loop().create_task(self._run(), name="kame-ticker")
        self._ticker.add_done_callback(self._ticker_ended)

    def _ticker_ended(self, task: asyncio.Task) -> None:
        """The frame loop failed by itself (stop() clears _ticker before it cancels it): said at
        once, with its traceback (a health probe only sees that it has ended)."""
        if task is self._ticker and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("the frame loop has ended (%s: %s): the sessions get no more frames; stop the agent and "
                      "start it again", type(exc).__name__, exc, exc_info=exc)

    def _build_models(self) -> tuple[list[FrameModel], Callable[[], object] | None]:
        """The frame models and the per-row VAD factory (in the load thread, not on the event loop)."""
        cfg, n = self.config, self.max_sessions
        models = [self._frame_models(n)] if cfg.runtime.batched else [self._frame_models(1) for _ in range(n)]
        if sum(m.batch_size for m in models) < n:
            raise ConfigError(f"the frame model has {sum(m.batch_size for m in models)} rows < max_sessions={n}")
        with config_keys(cfg), config_key("runtime.vad"):  # (a missing VAD package names the key, as the cascade's)
            return models, make_vad_factory(cfg.runtime.vad)

    async def _leave_old_loop(self) -> None:
        """The loop the agent ran in has ended, its ticker and its sessions' tasks with it: the
        sessions are closed (their readers were in that loop); the worker and models are kept."""
        old, self._ticker = self._ticker, None
        _cancel_elsewhere(old)
        if self.sessions:
            log.info("the agent's previous event loop has ended: closing its %d session(s)", len(self.sessions))
        for s in list(self.sessions.values()):
            await self._close_quietly(s)

    async def _close_quietly(self, s: TandemSession) -> None:
        try:
            await s.close()
        except Exception as exc:  # noqa: BLE001 - closing anyway (e.g. a session of a loop that has ended)
            log.warning("closing session %s failed: %s", s.id, exc)
        self._release(s)  # (its row is free even if its close failed)

    async def stop(self) -> None:
        """Close every session, stop the frame loop and the stepping thread, wait for the closed
        sessions' back-ends to unwind and close the shared STT / LLM (own ones given in
        components= too). A start() under way is cancelled (its callers get a KameError). A
        later start() loads the parts again."""
        self._check_loop()
        self._stops += 1
        self._stopping = True
        try:
            await self._start_once.cancel()  # (its callers get a KameError)
            for s in list(self.sessions.values()):
                await self._close_quietly(s)
            # the STT streams and producers of sessions closed before (their close() did not wait for them)
            unwinding, self._unwinding = [b for b in self._unwinding if not b.stopped], set()
            await asyncio.gather(*(b.wait_stopped() for b in unwinding), return_exceptions=True)
            ticker, self._ticker = self._ticker, None
            if ticker is not None and ticker.get_loop() is asyncio.get_running_loop():
                ticker.cancel()
                await asyncio.wait({ticker})
            elif ticker is not None:
                _cancel_elsewhere(ticker)
            worker, self.worker = self.worker, None
            if worker is not None:
                await worker.aclose()  # (bounded: a step stuck in a plugin is left behind, said)
            backend = self._backend
            if not self._backend_given:
                self._backend = None  # closed below: the next start loads (or wraps) them again
            await close_components(getattr(backend, "shared", ()))  # the STT / LLM / TTS all sessions share
            # tasks its parts left running after their cancellation: 5 s more, then named and detached from
            # the loop (a program's plain asyncio.run(main()) ends: kame.runtime.interrupt.end_left_behind)
            await end_left_behind("tandem")
        finally:
            self._stopping = False

    async def open_session(self, session_id: str | None = None) -> Session:
        """A new TandemSession on a free row, starting the agent first if needed. ``session_id``:
        a str (None or "": the agent makes one, "s1", "s2", ...); SessionIdError for the id of an
        open session, TypeError for one that is not a str; CapacityError when
        runtime.max_sessions are open; KameError when stop() runs meanwhile."""
        check_session_id(session_id)  # (before the load and the wait for a place: a caller's wrong argument)
        if self._stopping:  # (stop() would not see it: it would outlive the agent)
            raise KameError("the agent is stopping; no new session (open one once stop() has returned)")
        stops = self._stops  # (a whole stop() may run while this waits below: _stopping is False again)
        await self.start()  # (at once when it runs; else this caller waits for the one start)
        if not self._free:
            raise sessions_full(self.max_sessions)
        # (a bounded number of closed ones still unwinding their STT streams)
        await room_to_unwind(lambda: self._unwinding, self.max_sessions, STOP_WAIT_S)
        if self._stopping or self._stops != stops:  # (stop() would not see it: it would outlive the agent)
            raise KameError("the agent was stopped while a session was opening; open one again (once "
                            "stop() has returned)")
        if not self._free:  # (taken while this waited)
            raise sessions_full(self.max_sessions)
        sid = session_id_for(session_id, {s.id for s in self.sessions.values()}, lambda: f"s{next(_session_ids)}")
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
        """A session's close() started: its row and place are free at once; its back-end may
        still be unwinding (stop() waits for it)."""
        if self.sessions.get(s.row) is s:
            del self.sessions[s.row]
            self._free.append(s.row)  # reusable at once: a new session's first step resets it anyway
            self._released.append(s.row)  # reset (and idle) from the next step on
        self._unwinding = {b for b in self._unwinding if not b.stopped}
        if s.backend is not None and not s.backend.stopped:
            self._unwinding.add(s.backend)

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
                    next_t = clock.now()
                    continue  # (a session that joined during the reset set _wake: not cleared unseen)
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
                self._failures.ok()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a model (or delivery) failure: report it, keep the sessions alive
                self._failures.failed(exc, clock.now())
                for s in list(self.sessions.values()):
                    s._put(internal_error("front-end step failed", exc, clock.now()))
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


def _cancel_elsewhere(task: asyncio.Task) -> None:
    """Cancel a task of an event loop that is not running (it ends if that loop ever runs again)."""
    if not task.done():
        try:
            task.cancel()
        except RuntimeError:  # its loop is closed
            pass


def _split_components(components: dict | None, backend_given: bool = False) -> tuple[dict, dict]:
    """TandemAgent(components=...) -> (names for the info Meta, the caller's own STT / LLM objects),
    checked as the cascade checks its own (base.own_components); a cascade part is a TypeError.
    With backend= given, strings under "stt" / "llm" are names for the info Meta (the only way to
    name them then; file mode's and runreport's STT checks read components["stt"])."""
    for key in (k for k in OWN_PARTS if k not in ("stt", "llm")):  # (in order: the same error each run)
        value = (components or {}).get(key)
        if value is None:
            continue
        where = f"TandemAgent(components={{{key!r}: {type(value).__name__}}})"
        if isinstance(value, str):
            use = ("set cascade.tts = " + repr(value) + " for a tandem's hybrid-routing TTS" if key == "tts" else
                   "runtime.vad in the config names the tandem's VAD" if key == "vad_factory" else
                   "the tandem builds no prompt")
            raise TypeError(f"{where}: {value!r} is a name, and a tandem takes no {key} in components= (only its own "
                            f"'stt' and 'llm' objects); {use} (docs/backend.md, \"Your own components\")")
        raise TypeError(
            f"{where}: a tandem takes its own 'stt' and 'llm' objects there, not a {key}; a {key} object is the "
            f"cascade's (mode = 'cascade'). For a tandem's hybrid-routing TTS, register it (kame.registry.register("
            f"'tts', 'mine', factory)) and set cascade.tts = 'mine' (docs/backend.md, \"Your own components\")")
    return own_components("TandemAgent", components, ("stt", "llm"), ("stt", "llm") if backend_given else ())


def _load_frontend(cfg: KameConfig):
    """kame.runtime.frontend.load_frame_models (in the load thread: importing it imports torch)."""
    from .frontend import load_frame_models

    return load_frame_models(cfg)


def _load_backend(cfg: KameConfig, clock: Clock, tokenizer, metrics, own: dict):
    """kame.runtime.backend.load_backend (in the load thread: its import is heavy)."""
    from .backend import load_backend

    return load_backend(cfg, clock, tokenizer, metrics, own)


def _check_keywords(fn: Callable, what: str, kwargs: dict) -> None:
    """build_agent's extra keywords must be ones the chosen agent takes (a TypeError naming them)."""
    takes = [n for n, p in inspect.signature(fn).parameters.items()
             if p.kind is p.KEYWORD_ONLY and n not in ("clock", "metrics")]
    unknown = [k for k in kwargs if k not in takes]
    if unknown:
        raise TypeError(f"build_agent: {what} takes no {', '.join(k + '=' for k in unknown)} (it takes clock=, "
                        f"metrics={''.join(', ' + n + '=' for n in takes)})")


def build_agent(config: KameConfig, *, clock: Clock | None = None, metrics: MetricsSink | None = None,
                **kwargs) -> Agent:
    """mode "tandem" -> TandemAgent; "cascade" -> kame.cascade.agent.build_cascade_agent. Other
    keywords go to the chosen agent (a TypeError for one it does not take). The config's values are
    checked as load_config checks them, by the agent (check_config)."""
    _kame_config(config, "build_agent")
    if config.mode == "cascade":
        from ..cascade.agent import build_cascade_agent

        _check_keywords(build_cascade_agent, "mode = 'cascade' (kame.cascade.agent.build_cascade_agent)", kwargs)
        return build_cascade_agent(config, clock=clock, metrics=metrics, **kwargs)
    _check_keywords(TandemAgent, "mode = 'tandem' (TandemAgent)", kwargs)
    return TandemAgent(config, clock=clock, metrics=metrics, **kwargs)


__all__ = ["TandemAgent", "build_agent", "FRAME_S"]
