"""The cascade agent: the classic VAD/STT -> LLM -> TTS pipeline built from the same parts as the
tandem (same STT, LLM, VAD and prompt), behind the same Agent/Session interface.

    from kame.config import load_config
    from kame.cascade.agent import build_cascade_agent
    agent = build_cascade_agent(load_config(None, ["mode=cascade", "cascade.tts=espeak"]))
    await agent.start()                       # loads STT, LLM, TTS (in a worker thread)
    s = await agent.open_session()            # CapacityError past runtime.max_sessions
    await s.push_audio(pcm); async for out in s.outputs(): ...
    await agent.stop()                        # closes every session (at once), the VAD thread, the components

A session id in use is refused (SessionIdError); a closed session's id and place are free again
as soon as its close() starts (its STT stream may still be unwinding: stop() waits for that).
Each session's VAD is built in the VAD thread, not on the event loop (a silero VAD is an
onnxruntime session: ~75-170 ms that would stall every other session). A VAD with a ``reset()``
is reused, reset, by a later session once the session that had it has stopped (as the tandem
keeps one per batch row): building a silero VAD per connection grew the server's memory by
~1 MB per connect/disconnect (each onnxruntime session's allocations, freed, but not given back
by the allocator); now a server builds as many as it has had sessions at once at most (open,
or closed with their STT stream still unwinding: up to runtime.max_sessions + max(4,
runtime.max_sessions)), not one per connection; they are kept until stop(). A VAD whose reset()
raises is dropped (logged once) and, from then on, each session gets a new VAD.

Used by ``kame serve --mode cascade`` and ``kame run --mode cascade`` through
kame.runtime.engine.build_agent. Components come from the config: backend.stt, backend.llm
(shared with the tandem), cascade.tts (falls back to cascade.tts_fallback, logged, if it fails
to load), runtime.vad. Loaded components are shared by all sessions; each session has its own
VAD state and STT stream. Tests pass ready-made components with ``components={...}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from typing import Callable, Sequence

from .. import registry
from ..backend.childproc import load_in_thread
from ..backend.prompt import HISTORY_CHARS
from ..backend.types import ChatMessage, Turn
from ..errors import ConfigError, KameError
from ..runtime.backend import create_llm, create_stt, read_notes
from ..runtime.base import (OWN_PARTS, Agent, Meta, Session, check_session_id, close_components, own_components,
                            room_to_unwind, session_id_for)
from ..runtime.clock import STOP_WAIT_S, Clock
from ..runtime.engine import StartOnce, check_clock, check_config, component_state, sessions_full
from ..runtime.interrupt import end_left_behind
from ..runtime.loading import config_key, config_keys
from ..runtime.metrics import MetricsSink, guard_sink
from ..runtime.worker import StepThread, StepWorker
from .config import resolved_timeouts
from .session import CascadeSession

log = logging.getLogger(__name__)
_ids = itertools.count(1)


def load_tts(spec: str, fallback: str | None):
    """(TTS, its name for the components list): the TTS named by ``spec``; if it fails to load, log
    why and use ``fallback``, named so that a run's summary says so (was: only the log did). A spec
    the config check refuses (an unknown option, a bad value) is that ConfigError, no fallback
    (was: an openai: TTS's option typo was spoken by espeak, said in one start-up warning)."""
    registry.check_spec("tts", spec)
    try:
        return registry.create("tts", spec), spec
    except Exception as exc:  # noqa: BLE001 - any load failure (missing wheel, bad voice file)
        if not fallback or fallback == spec:
            raise
        log.warning("cascade: tts %r failed to load (%s); falling back to %r", spec, exc, fallback)
        why = " ".join(str(exc).split())
        why = why if len(why) <= 100 else why[:100] + "..."
        return registry.create("tts", fallback), f"{fallback} (cascade.tts {spec!r} failed to load: {why})"


def default_prompt_fn(system_prompt: str = "", max_words: int = 30, history_chars: int = HISTORY_CHARS,
                      knowledge=None) -> Callable[[Sequence[Turn]], list[ChatMessage]]:
    """The conversation -> chat messages with the tandem oracle's prompt builder
    (kame.backend.prompt: KAME's system prompt, ``user:``/``agent:`` lines, optional notes), so
    both modes ask the LLM the same question. Its ``prompt_config`` attribute (any prompt_fn may
    have one) gives the reply pipeline the labels that end a reply (ReplyGuard). ``history_chars``:
    the conversation lines' character budget (``backend.history_chars``); ``knowledge``: the notes
    (a KnowledgeBase, read by kame.runtime.backend.read_notes; None: none)."""
    from ..backend.prompt import Conversation, PromptConfig, build_messages

    pcfg = PromptConfig(system_prompt=system_prompt, max_words=max_words, history_chars=int(history_chars))

    def prompt(history: Sequence[Turn]) -> list[ChatMessage]:
        conv = Conversation()
        conv.turns = list(history)
        return build_messages(conv, pcfg, knowledge=knowledge)

    prompt.prompt_config = pcfg  # type: ignore[attr-defined]  # its labels end a reply (ReplyGuard)
    return prompt


class CascadeAgent(Agent):
    """The cascade (mode = "cascade"; made by kame.build_agent): VAD + streaming STT -> LLM ->
    sentence-by-sentence TTS, serving up to runtime.max_sessions sessions (CascadeSession) from
    one set of loaded parts. ``components``: your own parts, used instead of the config's:
    "stt" / "llm" / "tts" objects (with async generator methods stream / stream_chat /
    synthesize), a "vad_factory" (() -> a VAD per session), a "prompt_fn" (turns -> chat
    messages); checked at once as the tandem's (kame.runtime.base.own_components: a TypeError
    for a string or an object without its method); other keys are names for the info Meta.
    ``clock``, ``metrics``: as build_agent's. Lifecycle: kame.runtime.base.Agent, docs/cascade.md."""

    def __init__(
        self,
        config,
        *,
        clock: Clock | None = None,
        metrics: MetricsSink | None = None,
        components: dict | None = None,
    ) -> None:
        # own parts checked at once, as the tandem's (was: any object taken; each turn then failed)
        self._names, self._given = own_components("CascadeAgent", components, OWN_PARTS)
        self.config = check_config(config, "build_cascade_agent", self._given)  # (load_config's checks)
        cfg = config.cascade
        # unset LLM settings follow the tandem's back-end settings (same LLM behaviour in both modes)
        backend = config.backend
        self.cfg = dataclasses.replace(
            cfg,
            max_tokens=cfg.max_tokens if cfg.max_tokens is not None else backend.llm_max_tokens,
            temperature=cfg.temperature if cfg.temperature is not None else backend.llm_temperature,
            **resolved_timeouts(cfg, backend),
        )
        self.clock = check_clock(clock)
        self.metrics = guard_sink(metrics)  # (every caller gets the guarded one: sessions, STT, replies)
        self.max_sessions = config.runtime.max_sessions
        self.components: dict = {}
        self.stt = self.llm = self.tts = None
        self._vad_factory: Callable[[], object] | None = None
        self._prompt_fn = None
        self.sessions: dict[str, CascadeSession] = {}
        self._opening: set[str] = set()  # ids of sessions whose VAD is being built (they count as open)
        self._stopping: set[CascadeSession] = set()  # closed, their STT stream maybe still unwinding
        self._stops = 0  # stop() calls (a session opening across one is refused)
        self._stopping_now = False  # stop() is under way
        self._started = False
        self._start_once = StartOnce()  # (one load however many callers start the agent at once)
        # VAD compute of all sessions on one small thread, not queued behind STT/TTS work (from
        # start() to stop())
        self._vad_pool: StepThread | None = None
        # VADs to reuse (reset first), those of open sessions, and those of closed sessions that
        # come back once the session has stopped (its STT stream may still read its VAD)
        self._idle_vads: list = []
        self._lent_vads: dict[CascadeSession, object] = {}
        self._returning_vads: dict[CascadeSession, object] = {}
        self._reuse_vads = True  # (False once a reset() failed: a new VAD per session until stop())

    def _load(self) -> tuple[dict, dict]:
        """Blocking component loading (run in a worker thread) -> the parts and the info. The agent
        takes them when the load has ended (a load whose start was cancelled changes nothing)."""
        cfg, given = self.config, self._given
        backend = cfg.backend
        info: dict = {**self._names, "mode": "cascade"}
        stt_spec, llm_spec = backend.stt, backend.llm
        check_cascade_backend(cfg, given)
        nice = backend.nice  # the back-end below the frame loop's CPU priority
        # the turn-taking settings: the STT's own VAD decides when an utterance's final comes,
        # which is what ends the turn (an STT without a VAD of its own is created without them)
        from ..backend.vad import vad_options

        turn_vad = vad_options(self.cfg.vad_threshold, self.cfg.end_of_turn_silence)
        parts: dict = {}
        # a load error names the config key to change, and the file that set it (kame.runtime.loading)
        with config_keys(cfg):
            # the notes first: a bad one refuses the agent before any model loads (was: read last, so the STT, LLM
            # and TTS made before were left open, an embedded LLM's child too, on every session's try)
            with config_key("backend.knowledge_dir"):
                parts["_prompt_fn"] = given["prompt_fn"] if "prompt_fn" in given else default_prompt_fn(
                    backend.system_prompt, backend.max_reply_words, history_chars=backend.history_chars,
                    knowledge=read_notes(cfg))
            with config_key("backend.stt"):
                parts["stt"] = given["stt"] if "stt" in given else create_stt(stt_spec, self.clock, self.metrics, nice, vad=turn_vad)
            with config_key("backend.llm"):
                parts["llm"] = given["llm"] if "llm" in given else create_llm(llm_spec, nice)
            if "tts" in given:
                parts["tts"], tts_spec = given["tts"], getattr(given["tts"], "name", "custom")
            else:
                with config_key("cascade.tts"):
                    parts["tts"], tts_spec = load_tts(self.cfg.tts, self.cfg.tts_fallback)
            if "vad_factory" in given:
                parts["_vad_factory"] = given["vad_factory"]
                vad_kind = "custom"
            else:
                from ..runtime.worker import make_vad_factory

                vad_kind = cfg.runtime.vad
                with config_key("runtime.vad"):
                    parts["_vad_factory"] = make_vad_factory(vad_kind, threshold=self.cfg.vad_threshold,
                                                             min_silence=self.cfg.end_of_turn_silence)
        info.update(stt=stt_spec if "stt" not in given else getattr(parts["stt"], "name", "custom"),
                    llm=llm_spec if "llm" not in given else getattr(parts["llm"], "name", "custom"),
                    tts=tts_spec, vad=vad_kind, cascade=self.cfg.to_dict())
        return parts, info

    async def start(self) -> None:
        """Loads the components (once however many callers ask at once: open_session starts the
        agent; the others wait for that load and get its error)."""
        if self._stopping_now:
            raise KameError("cascade: the agent is stopping; start it again once stop() has returned")
        if not self._started:
            await self._start_once.run(self._start)

    async def _start(self) -> None:
        parts, info = await load_in_thread(self._load)
        for name, part in parts.items():
            setattr(self, name, part)
        self.components.update(info)
        if self._vad_pool is None:
            # (a daemon thread: a plugin VAD that never returns holds neither stop() nor the exit)
            self._vad_pool = StepThread("kame-cascade-vad")
        self._started = True

    def health(self) -> dict:
        """What a health probe needs, read-only and cheap: ``started`` and ``running`` (the same
        for the cascade: it has no loop of its own), ``components`` (the state of its shared
        STT / LLM / TTS, kame.runtime.engine.component_state) and ``error`` (None)."""
        parts = {"stt": self.stt, "llm": self.llm, "tts": self.tts} if self._started else {}
        return {"started": self._started, "running": self._started, "error": None,
                "components": {k: component_state(p) for k, p in parts.items() if p is not None}}

    async def stop(self) -> None:
        """Close every session (all at once: one with a reader may wait for its STT's last
        transcript), wait for the STT streams of sessions closed earlier to unwind (their close()
        did not), then close the shared components and the VAD thread."""
        self._stops += 1
        self._stopping_now = True  # (an open_session meanwhile is refused)
        try:
            await self._stop()
        finally:
            self._stopping_now = False

    async def _stop(self) -> None:
        await self._start_once.cancel()  # (its callers get a KameError)
        sessions = list(self.sessions.values())
        results = await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        for s, r in zip(sessions, results):
            if isinstance(r, Exception):
                log.warning("cascade: closing session %s failed: %s", s.id, r)
        # sessions closed before whose STT stream still unwinds (close() did not wait for it)
        stopping, self._stopping = [s for s in self._stopping if not s.stopped], set()
        await asyncio.gather(*(s.wait_stopped() for s in stopping))
        await close_components((self.llm, self.tts, self.stt), "cascade: ")
        # (a start() may load another runtime.vad)
        self._idle_vads, self._lent_vads, self._returning_vads = [], {}, {}
        pool, self._vad_pool = self._vad_pool, None
        if pool is not None and not await pool.aclose(StepWorker.STOP_GRACE_S):
            log.warning("cascade: the VAD thread did not end within %.0f s of the agent's stop: the VAD (%s) is in "
                        "a call that does not return; left behind (a daemon thread: it does not hold the process's "
                        "exit). Fix that VAD or use another", StepWorker.STOP_GRACE_S, self.components.get("vad", "?"))
        # (after the VAD thread has ended: a reset still queued there that fails would turn reuse off again)
        self._reuse_vads = True
        self._started = False
        # tasks its parts left running after their cancellation: 5 s more, then named and detached from the
        # loop (a program's plain asyncio.run(main()) ends: kame.runtime.interrupt.end_left_behind)
        await end_left_behind("cascade")

    async def open_session(self, session_id: str | None = None) -> Session:
        """A new CascadeSession, starting the agent first if needed (its load errors are raised
        here). ``session_id``: a str (None or "": the agent makes one, "c1", "c2", ...);
        SessionIdError for the id of an open session, TypeError for one that is not a str;
        CapacityError when runtime.max_sessions are open (or too many closed ones still unwind);
        KameError when stop() runs meanwhile. Its VAD is made ready in the VAD thread."""
        check_session_id(session_id)  # (before the load and the wait for a place: a caller's wrong argument)
        if self._stopping_now:  # (stop() would not see it: it would outlive the agent)
            raise KameError("cascade: the agent is stopping; no new session")
        stops = self._stops  # (a whole stop() may run while this waits below: _stopping_now is False again)
        if not self._started:
            await self.start()
        if len(self.sessions.keys() | self._opening) >= self.max_sessions:
            raise sessions_full(self.max_sessions)
        # (a bounded number of closed ones still unwinding their STT streams)
        await room_to_unwind(lambda: self._stopping, self.max_sessions, STOP_WAIT_S)
        if self._stopping_now or self._stops != stops:  # (stop() did not see it: it would outlive the agent)
            raise KameError("cascade: the agent was stopped while a session was opening; open one again (once "
                            "stop() has returned)")
        taken = self.sessions.keys() | self._opening
        sid = session_id_for(session_id, taken, lambda: f"c{next(_ids)}")
        if len(taken) >= self.max_sessions:
            raise sessions_full(self.max_sessions)
        # the VAD is built in the VAD thread: a silero VAD (an onnxruntime session) takes ~75-170 ms
        # of compute that would stall every other session on the event loop (was: built on it)
        self._opening.add(sid)  # (its id and place are taken meanwhile)
        self._reclaim_vads()
        reuse = self._idle_vads.pop() if self._idle_vads else None
        try:
            vad = await asyncio.get_running_loop().run_in_executor(self._vad_pool, self._fresh_vad, reuse)
        except BaseException as exc:
            # cancelled meanwhile (its client left): the VAD goes back to the pool (was: lost, and a
            # new one built for the next session); its reset still runs in the VAD thread, before
            # the next one's. (An Exception: the factory failed, after a failed reset if any. A
            # stop() meanwhile emptied the pool.)
            if reuse is not None and not isinstance(exc, Exception) and self._stops == stops:
                self._idle_vads.append(reuse)
            me = asyncio.current_task()
            # a stop() meanwhile closed the VAD thread, which cancelled the call, not this caller: a
            # KameError (was: a bare CancelledError its caller could take for its own cancellation)
            if not (isinstance(exc, asyncio.CancelledError) and self._stops != stops
                    and me is not None and not me.cancelling()):
                raise
            raise KameError(f"cascade: the agent stopped while session {sid} was opening") from None
        finally:
            self._opening.discard(sid)
        if self._stops != stops:  # stop() ran meanwhile (it did not see this session)
            raise KameError(f"cascade: the agent stopped while session {sid} was opening")
        backend, runtime = self.config.backend, self.config.runtime
        s = CascadeSession(
            sid, stt=self.stt, llm=self.llm, tts=self.tts, vad=vad, prompt_fn=self._prompt_fn,
            cfg=self.cfg, clock=self.clock, metrics=self.metrics, on_close=self._closed_session,
            vad_pool=self._vad_pool, retry_s=backend.retry_s,
            stall_s=backend.stt_stall_s,
            names={k: self.components.get(k) for k in ("stt", "llm", "tts")},
            max_backlog_s=runtime.max_input_backlog_s,
            stats_interval_s=runtime.stats_interval_s,
        )
        self.sessions[sid] = s
        # (reusable: back to the pool once s has stopped; not once a reset failed)
        if callable(getattr(vad, "reset", None)) and self._reuse_vads:
            self._lent_vads[s] = vad
        s._emit(Meta({"type": "info", "session": sid, **self.components}))
        return s

    def _fresh_vad(self, reuse):
        """(VAD thread) ``reuse`` reset, or a new VAD from the factory (none to reuse, or its reset
        failed). Its calls are queued in order on this one thread: the last push of the session
        that had it came before this reset. A reset that fails drops that VAD and ends the reuse
        until stop() (was: each new VAD was pooled and its reset failed again, a warning per
        connection)."""
        if reuse is not None and self._reuse_vads:
            try:
                reuse.reset()
                return reuse
            except Exception as exc:  # noqa: BLE001 - a plugin VAD's reset: build a new one instead
                self._reuse_vads = False  # (read on the event loop once this call has returned)
                log.warning("cascade: resetting a VAD for reuse failed (%s: %s); building a new VAD for each "
                            "session from now on", type(exc).__name__, exc)
        return self._vad_factory()

    def _reclaim_vads(self) -> None:
        """The VADs of closed sessions that have stopped (nothing of theirs reads them any more)
        go back to the pool, all of them: a VAD is built only when the pool is empty, so the VADs
        built are as many as were in use at once at most (was: at most max_sessions kept, while
        closed sessions still unwinding hold one each too: reconnect bursts built new ones)."""
        for s in [s for s in self._returning_vads if s.stopped]:
            vad = self._returning_vads.pop(s)
            if self._reuse_vads:
                self._idle_vads.append(vad)
        if not self._reuse_vads:  # (a reset failed: VADs are no longer reused)
            self._idle_vads.clear()

    def _closed_session(self, s: CascadeSession) -> None:
        """A session's close() started: its place and id are free at once."""
        if self.sessions.get(s.id) is s:
            del self.sessions[s.id]
        if s in self._lent_vads:
            self._returning_vads[s] = self._lent_vads.pop(s)
        self._reclaim_vads()  # (those of sessions closed before: they hold no closed session longer)
        self._stopping = {x for x in self._stopping if not x.stopped}
        self._stopping.add(s)  # stop() waits for its STT stream to unwind


def check_cascade_backend(config, given: dict | None = None) -> None:
    """ConfigError if the config's back-end cannot serve a cascade (it needs an STT and an LLM);
    components in ``given`` (tests) stand in for the config's. Cheap: callers check it early."""
    backend = getattr(config, "backend", None)
    for kind, what in (("stt", "an STT"), ("llm", "an LLM")):
        if kind not in (given or {}) and getattr(backend, kind, "embedded") == "none":
            raise ConfigError(f"backend.{kind} = 'none' cannot be used with mode = 'cascade' (it needs {what})")


def build_cascade_agent(config, *, clock: Clock | None = None, metrics: MetricsSink | None = None,
                        components: dict | None = None) -> CascadeAgent:
    """kame.runtime.engine.build_agent calls this for ``mode = "cascade"``."""
    return CascadeAgent(config, clock=clock, metrics=metrics, components=components)
