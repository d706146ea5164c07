"""The per-session back-end of the tandem: STT + oracle producer, supervised, never blocking
the front-end.

    bridge = BackendBridge(session, stt, make_producer, clock, retry_s=1.0)
    # make_producer(session, on_llm_status) -> kame.backend.oracle.OracleProducer (producer_factory)
    await bridge.start()
    bridge.push_user_frame(AudioFrame(pcm, t))     # from the frame ticker, same audio as the front-end
    bridge.push_agent_text(" hello", t)            # the front-end's inner monologue (its own words)
    bridge.stop()                                  # at once (the session's close): the loops cancelled
    await bridge.wait_stopped()                    # ... until they have unwound (aclose(): both)

Data flow: user frames -> STT stream -> Transcript -> session.on_transcript + producer (a final
hybrid routing answers: producer.on_routed, no prediction; the routed reply's heard text comes
back through session.on_routed_reply -> push_agent_text, the agent's line in its conversation,
or, none heard, -> routed_unheard: the question back in its prompts);
producer -> OracleReset/OracleAppend -> session.on_oracle (queued, handed to the worker with
the next frame's job, i.e. onto the stepper's per-row oracle feed). The STT's metrics
(stt_partial_latency, stt_final_latency) of this session's stream are tagged with the session
and go where the producer's go (session.producer_metric: a "metric" Meta + the agent's sink),
for STTs that take a per-stream sink (kame.backend.stt.base.open_stream; kame's own do).

Failure policy: the STT stream and the producer loop are supervised separately. The producer
retries failed LLM streams itself (with back-off) and never raises; the LLM is wrapped
(WatchedLLM) so a failing stream (one that raises, stalls, or yields something that is not
text) reports "llm down" and the next stream that yields text reports "llm up"; a prediction
that ends with no text is an ErrorEvent only (the LLM answered: still "up"). The STT stream
is kame.runtime.sttloop.STTSupervisor's (the cascade's too): restarted with back-off after it
raises, ends, yields something that is not a Transcript, or stalls; each failure gives the
session an ErrorEvent + a {"type": "backend", "status": "down"} Meta, the next transcript a
{"status": "up"}. The front-end never waits for it (the frame ticker only queues frames).
Every failure is reported to the session (an ErrorEvent and one count in stats
backend_failures each); the down/up Meta only on a change. User audio the STT never gets is
counted in ``dropped_frames``; the producer's counts (OracleProducer.stats) in ``oracle_stats``,
over the session (a producer that failed and was replaced included).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections import Counter
from typing import TYPE_CHECKING, Callable

from ..backend.llm.base import bug_at, component_name, text_stream
from ..backend.types import EMPTY_ANSWER, AudioFrame, Transcript
from ..config import KameConfig
from ..errors import ConfigError
from .base import _why
from .clock import Clock
from .loading import config_key, config_keys
from .sttloop import STALL_S, STTSupervisor, restart_note

if TYPE_CHECKING:
    from .session import TandemSession

log = logging.getLogger(__name__)


class BackendBridge:
    def __init__(self, session: "TandemSession", stt, make_producer: Callable | None,
                 clock: Clock, *, retry_s: float = 1.0, stall_s: float = STALL_S, stt_name: str | None = None) -> None:
        self.session, self.stt, self.make_producer = session, stt, make_producer
        self.stt_name = stt_name or component_name(stt)  # (its spec, for log lines)
        self.clock, self.retry_s, self.stall_s = clock, retry_s, stall_s
        self._stt = None if stt is None else STTSupervisor(
            stt, clock, who=session.id, retry_s=retry_s, stall_s=stall_s, metrics=self._stt_metric,
            on_transcript=self._on_transcript, on_failure=self._on_stt_failure)
        self._producer = None  # kame.backend.oracle.OracleProducer
        self._retired: Counter = Counter()  # the stats of the session's producers that ended
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._unwinding: asyncio.Future | None = None  # stop()'s unwinding of the cancelled loops
        self.up = {"stt": True, "llm": True}

    @property
    def dropped_frames(self) -> int:
        """User frames the STT never got (its queue full, stalled, down)."""
        return self._stt.dropped_frames if self._stt is not None else 0

    @property
    def dropped_s(self) -> float:
        """Seconds of user audio the STT never got."""
        return self._stt.dropped_s if self._stt is not None else 0.0

    @property
    def oracle_stats(self) -> Counter:
        """The oracle producer's counts (OracleProducer.stats: wait_llm_loading, wait_backoff, ...)
        over the session: the running producer's plus those of the ones that ended before it."""
        return self._retired + Counter(getattr(self._producer, "stats", None) or {})

    def _retire(self):
        """Take the producer off, its counts kept (oracle_stats); returns it (None: there was none)."""
        old, self._producer = self._producer, None
        self._retired.update(getattr(old, "stats", None) or {})
        return old

    async def start(self) -> None:
        if self._stt is not None:  # (its queue takes audio from the first frame on)
            self._tasks.append(asyncio.create_task(self._stt.run(), name=f"stt-{self.session.id}"))
        if self.make_producer is not None:
            self._tasks.append(asyncio.create_task(self._producer_loop(), name=f"oracle-{self.session.id}"))

    def stop(self) -> None:
        """Stop at once (the session's close): no more audio to the STT, its stream and the
        producer cancelled, the audio still queued for the STT counted as dropped now (so the
        session's final stats are settled). They unwind in the background (an STT stream may take
        a while: the embedded one waits for its decode thread); ``wait_stopped`` waits for that."""
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:  # (no STT end() first: its stream would start decoding a last final for nobody)
            t.cancel()
        if self._stt is not None:  # the audio its stream never read (the last frames before the close)
            self._stt.drop_queued()
        self._unwinding = asyncio.ensure_future(self._unwind())

    @property
    def stopped(self) -> bool:
        """stop() was called and its STT stream and producer have unwound."""
        return self._unwinding is not None and self._unwinding.done()

    async def wait_stopped(self) -> None:
        """Until the STT stream and producer stop() cancelled have unwound (the supervisor leaves
        a stream that ignores its cancellation after STOP_WAIT_S)."""
        if self._unwinding is not None and not self._unwinding.done():
            await asyncio.wait({self._unwinding})  # (not its cancellation: the loop's end may cancel it)

    async def aclose(self) -> None:
        """stop(), then wait until it has unwound."""
        self.stop()
        await self.wait_stopped()

    async def _unwind(self) -> None:
        # (held by self._unwinding; nothing need await it: asyncio.run's end cancels it with the rest)
        me = asyncio.current_task()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                if me is not None and me.cancelling():  # this unwinding itself was cancelled (the loop ends)
                    raise
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self._tasks.clear()
        if self._producer is not None:
            try:
                await self._producer.aclose()
            except Exception:  # noqa: BLE001
                pass
            self._retire()

    # ----------------------------------------------------------------- inputs (ticker)
    def push_user_frame(self, frame: AudioFrame) -> None:
        if not self._closed and self._stt is not None:
            self._stt.push(frame)

    def push_agent_text(self, text: str, t: float) -> None:
        if self._producer is not None:
            try:
                self._producer.on_agent_text(text, t)
            except Exception as exc:  # noqa: BLE001
                log.debug("producer rejected agent text: %s", exc)

    def routed_unheard(self, answer: bool = False) -> None:
        """A routed reply none of which was heard: its question goes back into the producer's
        prompts (OracleProducer.on_routed_unheard; ``answer``: the producer owes it a prediction)."""
        if self._producer is not None:
            try:
                self._producer.on_routed_unheard(answer)
            except Exception as exc:  # noqa: BLE001
                log.debug("producer rejected an unheard routed reply: %s", exc)

    # ----------------------------------------------------------------- supervised loops
    def _status(self, component: str, ok: bool, error: str | None = None, *, goes_on: bool = False) -> None:
        """Every failure goes to the session (an ErrorEvent, counted); "up" only after a failure.
        ``goes_on``: the failing stream went on (kame.runtime.base.BackendHealth.report)."""
        if ok and self.up[component]:
            return
        self.up[component] = ok
        self.session.on_backend_status(component, ok, error, goes_on=goes_on)

    def _stt_metric(self, m) -> None:
        """A metric of this session's STT stream: tagged with the session, then passed on like
        the producer's (a "metric" Meta and the agent's sink)."""
        if m.session is None:
            m = dataclasses.replace(m, session=self.session.id)
        self.session.producer_metric(m)

    async def _on_transcript(self, tr: Transcript) -> None:
        """A transcript of the supervised STT stream: to the session and the producer. A final
        that hybrid routing answers by the cascade path (the session says so) goes only into the
        producer's conversation (OracleProducer.on_routed): was a second request to the one LLM
        at once, and an oracle answer fed to the front-end, which could answer it twice."""
        self._status("stt", True)
        routed = self.session.on_transcript(tr)
        if self._producer is not None:
            if routed:
                self._producer.on_routed(tr)
            else:
                await self._producer.on_transcript(tr)

    def _on_stt_failure(self, exc: BaseException, wait: float | None) -> None:
        at, trace = bug_at(exc, log)  # (the STT's own bug: where it was raised, its traceback at DEBUG)
        log.warning("session %s: stt %s failed: %s (%s)%s", self.session.id, self.stt_name, _why(exc),
                    restart_note(None) if wait is None else f"restart in {wait:g} s", at, exc_info=trace)
        self._status("stt", False, f"{_why(exc)}; {restart_note(wait)}", goes_on=wait is None)

    async def _producer_loop(self) -> None:
        while not self._closed:
            try:
                self._producer = self.make_producer(self.session, self._llm_status)
                await self._producer.run()  # returns after aclose; LLM failures stay inside
                if self._closed:
                    return
                raise RuntimeError("the oracle producer stopped")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a producer bug: report, restart
                log.warning("session %s: oracle producer failed: %s", self.session.id, exc)
                self._status("llm", False, _why(exc))
                old = self._retire()
                if old is not None:
                    try:
                        await old.aclose()
                    except Exception:  # noqa: BLE001
                        pass
            await self.clock.sleep(self.retry_s)

    def _llm_status(self, ok: bool, error: str | None = None) -> None:
        self._status("llm", ok, error)


class WatchedLLM:
    """Wraps an LLM to report its health: a failing stream (it raises, or yields something
    that is not text: kame.backend.llm.base.check_piece) -> status down, a stream that yields
    its first text piece -> status up (the producer itself retries with back-off). Faults the
    producer finds itself (a stall) come in through ``failed``.

    ``spec``: the LLM's spec (backend.llm), which then names it in the producer's log lines and
    errors (kame.backend.llm.base.describe: "LLM openai:gpt-4.1 stalled ...", as the STT's and
    the cascade's lines name theirs; was: its endpoint URL); without one, its URL or name. The
    timeouts its spec set (``stall_timeouts``) are the wrapped LLM's.

    ``on_empty(message)``: a prediction the LLM answered with no text (``answered_nothing``),
    e.g. the session's ErrorEvent; the status is left as it is (the LLM answered: it is up;
    was: "down", and "up" again at the next prediction's first piece). None: only the producer's
    log line and count."""

    def __init__(self, llm, on_status: Callable[[bool, str | None], None], spec: str | None = None,
                 on_empty: Callable[[str], None] | None = None) -> None:
        self.llm, self.on_status, self.spec, self.on_empty = llm, on_status, spec, on_empty
        self.name = spec or component_name(llm)
        self.url = None if spec else getattr(llm, "url", None)  # (describe() names the spec first then)
        self.stall_timeouts = getattr(llm, "stall_timeouts", None)  # (kame.backend.policy.stall_limits)
        # its HTTP 429 wait, shared with the cascade path and other sessions (kame.backend.policy.rate_gate)
        self.rate_gate = getattr(llm, "rate_gate", None)

    @property
    def state(self) -> str | None:
        """The wrapped LLM's state, None if it has none ("loading": it reloads its model, which
        the producer's stall timers wait for: kame.backend.oracle)."""
        return getattr(self.llm, "state", None)

    @property
    def loaded_at(self) -> float | None:
        """When the wrapped LLM's last load of its model (or its last prompt read) ended, None if it
        does not say: such a wait that began and ended within a stall
        timer moves it (kame.runtime.clock.loaded_mark)."""
        return getattr(self.llm, "loaded_at", None)

    @property
    def reading_prompt(self) -> bool:
        """The wrapped LLM's child reads a prompt, which it cannot stop in (kame.backend.llm.embedded:
        this prediction's, or a request's before it): a reload for the producer's stall timers."""
        return getattr(self.llm, "reading_prompt", False) is True

    @property
    def finished_at(self) -> float | None:
        """The wrapped LLM's ``loaded_at`` that the end of its last such read set (kame.runtime.clock)."""
        return getattr(self.llm, "finished_at", None)

    def failed(self, message: str) -> None:
        """The producer ended a stream for a fault the LLM did not raise (e.g. its timers, which
        unless the LLM's spec sets longer ones are shorter than the adapter's, found it stalled):
        that is the LLM failing too."""
        self.on_status(False, message)

    def follow_watchdog(self, first: float, chunk: float) -> None:
        """The producer's stall limits, to the wrapped LLM (kame.backend.policy.stall_limits:
        its own unset timeouts are not shorter)."""
        follow = getattr(self.llm, "follow_watchdog", None)
        if callable(follow):
            follow(first, chunk)

    def answered_nothing(self, message: str) -> None:
        """The producer found a completed prediction with no text (kame.backend.oracle): not a
        failure of the LLM (reachable, answering), so no status change; ``on_empty`` if set."""
        if self.on_empty is not None:
            self.on_empty(message)

    async def stream_chat(self, messages, **kwargs):
        try:
            first = True
            # (checked before "up": a broken LLM is not working; named as we name it)
            async with contextlib.aclosing(text_stream(self.llm.stream_chat(messages, **kwargs), self)) as pieces:
                async for piece in pieces:
                    if first:
                        self.on_status(True, None)
                        first = False
                    yield piece
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            self.on_status(False, _why(exc))
            raise


# How the session's ErrorEvent for an oracle prediction with no text begins (runreport.empty_answers)
EMPTY_ERROR = "back-end llm gave the oracle no answer (front-end continues)"


def producer_factory(cfg: KameConfig, clock: Clock, llm, tokenizer, spec: str | None = None, knowledge=None):
    """(session, on_llm_status) -> kame.backend.oracle.OracleProducer feeding session.on_oracle;
    ``spec``: how the producer's log lines name the LLM (WatchedLLM; None: its URL or name);
    ``knowledge``: backend.knowledge_dir's notes, read by the caller (load_backend: read_notes, before
    any model is made, an error naming the config key; None: no notes; was: None read them here, a
    second path whose error named no config key)."""
    from ..backend.oracle import OracleProducer
    from ..backend.policy import OraclePolicy
    from ..backend.prompt import PromptConfig

    bc = cfg.backend
    policy = OraclePolicy.from_config(bc)
    prompt = PromptConfig(system_prompt=bc.system_prompt, max_words=bc.max_reply_words,
                          history_chars=bc.history_chars)

    def make(session: "TandemSession", on_status) -> object:
        def empty(message: str) -> None:  # an ErrorEvent (kame run blames the LLM by it: runreport.empty_answers)
            session.on_backend_problem(f"{EMPTY_ERROR}: {message}", f"the llm back-end {EMPTY_ANSWER}; see the server log")

        watched = WatchedLLM(llm, on_status, spec, on_empty=empty)
        return OracleProducer(watched, tokenizer, policy, prompt=prompt, knowledge=knowledge,
                              clock=clock, metrics=session.producer_metric, on_event=session.on_oracle,
                              session=session.id)

    return make


def read_notes(cfg: KameConfig):
    """backend.knowledge_dir's notes (kame.backend.knowledge.KnowledgeBase; None when it is unset)."""
    if not cfg.backend.knowledge_dir:
        return None
    from ..backend.knowledge import KnowledgeBase

    return KnowledgeBase.from_folder(cfg.backend.knowledge_dir, name="backend.knowledge_dir")


def create_stt(spec: str, clock: Clock, metrics=None, nice: int = 0, vad: dict | None = None):
    """The STT of ``spec``, stamping transcripts (and metrics) on the agent's clock, its threads
    ``nice`` steps below the step's CPU priority, its utterance VAD set by ``vad`` (VADConfig
    fields; None: its defaults); an STT that does not take some of these keywords (a custom one,
    or one without a VAD) is created without them."""
    from .. import registry

    optional = {"clock": clock, "metrics": metrics, "nice": nice}
    if vad:
        optional["vad"] = vad
    return registry.create_with_optional("stt", spec, **optional)


def create_llm(spec: str, nice: int = 0):
    """The LLM of ``spec``; one that runs its own compute process (the embedded one: its factory
    names a ``nice`` parameter) runs it ``nice`` steps below the step's CPU priority."""
    from .. import registry

    factory, _ = registry.resolve("llm", spec)
    named = "nice" in inspect.signature(factory).parameters
    return registry.create("llm", spec, **({"nice": nice} if named else {}))  # (its errors, named)


def load_backend(cfg: KameConfig, clock: Clock, tokenizer=None, metrics=None, own: dict | None = None):
    """The config's STT + LLM -> (factory(session) -> BackendBridge | None, info); ``factory.shared``
    holds the STT, LLM (and hybrid routing's TTS) all sessions share (TandemAgent.stop closes them).
    ``tokenizer``: the front-end's text vocabulary (oracle ids must be in it). ``own``: the caller's
    own "stt" / "llm" objects (TandemAgent(components=...)), used instead of backend.stt / .llm."""
    from ..backend.llm.base import component_name

    bc, own = cfg.backend, dict(own or {})
    hybrid = getattr(cfg.cascade, "hybrid_routing", False)
    if own and hybrid:
        raise ConfigError("cascade.hybrid_routing does not take own STT / LLM objects (TandemAgent components=): "
                          "register them (kame.registry.register, docs/backend.md) and name them in backend.stt / "
                          "backend.llm")
    has_stt, has_llm = "stt" in own or bc.stt != "none", "llm" in own or bc.llm != "none"
    if "llm" in own and not has_stt:
        raise ConfigError("TandemAgent(components={'llm': ...}) without an STT (backend.stt = 'none' and no "
                          "components['stt']): nothing would ask that LLM; give an STT too, or leave the LLM out")
    if not has_stt and has_llm and not hybrid:
        # the LLM answers what the STT heard: without one it would never be asked (was: loaded anyway)
        log.warning("backend.stt is 'none': nothing would reach backend.llm %r, which is not loaded (the "
                    "front-end runs alone; set backend.llm=none to say so)", bc.llm)
        return (lambda session: None), {"stt": "none", "llm": "none"}
    if not has_stt and not has_llm:
        if hybrid:
            raise ConfigError("cascade.hybrid_routing needs backend.stt and backend.llm (not 'none')")
        return (lambda session: None), {"stt": "none", "llm": "none"}
    with config_keys(cfg):  # a load error names the config key to change, and the file that set it
        # the notes first: a bad one refuses the agent before any model loads (was: read after the LLM was made,
        # which was left open, an embedded LLM's child too, on every session's try)
        with config_key("backend.knowledge_dir"):
            notes = read_notes(cfg) if has_llm else None
        with config_key("backend.stt"):
            stt = own.get("stt") or (create_stt(bc.stt, clock, metrics, bc.nice) if has_stt else None)
        make_producer = llm = None
        if has_llm:
            from ..backend.tokenizer import default_tokenizer

            with config_key("backend.llm"):
                llm = own.get("llm") or create_llm(bc.llm, bc.nice)
            tokenizer = tokenizer or default_tokenizer()
            spec = None if "llm" in own else bc.llm  # (an own one: named by its URL or name)
            make_producer = producer_factory(cfg, clock, llm, tokenizer, spec, notes)

    info = {"stt": component_name(stt) if "stt" in own else bc.stt,
            "llm": component_name(llm) if "llm" in own else bc.llm}
    make_router = tts = None
    if hybrid:  # structured turns answered by the cascade path
        make_router, info["tts"], tts = _router_factory(cfg, clock, metrics, llm, notes)
        info["hybrid_routing"] = True

    def factory(session: "TandemSession") -> BackendBridge:
        if make_router is not None:
            session.router = make_router(session)
        return BackendBridge(session, stt, make_producer, clock, retry_s=bc.retry_s, stall_s=bc.stt_stall_s,
                             stt_name=info["stt"])

    factory.shared = tuple(x for x in (stt, llm, tts) if x is not None)  # every session's; the agent closes them at stop
    return factory, info


def _router_factory(cfg: KameConfig, clock: Clock, metrics, llm, notes=None):
    """cascade.hybrid_routing: per session a kame.cascade.hybrid.HybridRouter (LLM + TTS)
    -> (factory, TTS spec, the TTS all sessions share); ``notes``: backend.knowledge_dir's, read
    already (was: read a second time here)."""
    from ..cascade.agent import default_prompt_fn, load_tts
    from ..cascade.config import resolved_timeouts
    from ..cascade.hybrid import HybridRouter
    from .metrics import null_sink

    if llm is None or cfg.backend.stt == "none":
        raise ConfigError("cascade.hybrid_routing needs backend.stt and backend.llm (not 'none')")
    bc = cfg.backend
    tts, tts_spec = load_tts(cfg.cascade.tts, getattr(cfg.cascade, "tts_fallback", None))
    prompt_fn = default_prompt_fn(bc.system_prompt, bc.max_reply_words, bc.history_chars, knowledge=notes)

    # (its replies' stall timeouts: cascade.first_timeout / chunk_timeout, else the oracle's keys)
    ccfg = dataclasses.replace(cfg.cascade, **resolved_timeouts(cfg.cascade, bc))

    def make(session: "TandemSession") -> HybridRouter:
        return HybridRouter(llm, tts, ccfg, clock, emit=session._put, prompt_fn=prompt_fn,
                            metrics=metrics or null_sink, session_id=session.id, health=session.health,
                            on_heard=session.on_routed_reply)

    return make, tts_spec, tts
