"""One spoken agent reply of the cascade: streaming LLM -> sentence/clause segments -> streaming
TTS -> a buffer of 24 kHz audio pulled one 80 ms frame at a time.

    parts = ReplyParts(llm, tts, cfg, clock, emit=out_queue.put_nowait)   # one per session
    rp = ReplyPipeline(parts, metric=on_metric)
    rp.start(messages, t_user_end=end_of_speech_time, turn_id=3)
    ...
    pcm = rp.pull_frame()       # every 80 ms: float32 [1920] or None when nothing is ready
    rp.cancel()                 # barge-in: stops the LLM stream and the TTS, drops queued audio

The reply ends where the LLM goes on writing the conversation (a new ``user:``/``agent:``
line, kame.backend.prompt.ReplyGuard): that text is neither shown nor spoken and the LLM
stream is closed. TTS starts on the first complete segment (see kame.cascade.text), so the
first audio leaves while the LLM is still streaming. The LLM and TTS run as two tasks connected by a queue; model
compute is inside the components (worker threads). Used by the cascade session and, for hybrid
routing, by the tandem runtime (which pulls frames instead of the front-end's output).

Failures end the reply, never the session: an LLM or TTS that raises, that stalls (no first
piece / chunk within ``first_timeout`` s, or nothing for ``chunk_timeout`` s after one, on the
session clock; an LLM's keep-alive, an empty piece, is progress but no text:
kame.backend.llm.base.stall_timeout; cascade.first_timeout / chunk_timeout, unset the tandem oracle's timeouts
(backend.llm_first_token_timeout_s / llm_chunk_timeout_s), each raised to the component's own
where its spec sets them: kame.backend.policy.stall_limits; a reload of the LLM's model, its
``state`` "loading", is waited for instead, as by the tandem's oracle: kame.runtime.clock.next_within,
counted in ``ReplyParts.stats`` wait_llm_loading, logged once per reply), an LLM piece that
is not text (kame.backend.llm.base.check_piece, the tandem's WatchedLLM check), TTS audio that is unusable (not a float numpy array, not mono, NaN, int16-scale:
the check of user audio, kame.audio.audio_problem), or a TTS stream that ends without a
sample for a segment with words in it (nothing yielded, or only empty arrays). Each is an ErrorEvent naming the
component, and a {"type": "backend", "status": "down"} Meta (kame.runtime.base.BackendHealth; its
"error" is kame.runtime.base._why(exc), as the tandem's);
``failed`` is set and the reply ends with what was already spoken; after an LLM failure, the
segments it completed before are still spoken, its unfinished last words are not. But an LLM
failure before its first text that says a new request will work (BackendError ``restarting``: the
embedded LLM's child died while idle and restarts) is reported as above, with "; the reply asks it
again (once), waiting for that", and the LLM is asked again, once: that request waits for the
reload as above (within the same limits, from the first request), and its answer is spoken, the
LLM "up" again (was: the turn failed, unanswered: the user had to ask again).
A failure that carries a ``retry_after`` (an HTTP 429's Retry-After: the openai adapters) keeps
that component from being asked again for that long (at most kame.backend.policy.MAX_RETRY_AFTER):
a reply meanwhile fails at once, without a request ("... not asked: it rate-limited kame (HTTP
429) and asked it to wait 3.2 s more (Retry-After)"). The wait is the component's own
(kame.backend.policy.rate_gate: the openai adapters' ``rate_gate``), so every session that
shares the LLM or TTS, hybrid routing and the tandem's oracle on the same LLM hold back
together (was: per session); a component without one has a wait per ReplyParts.

Text: each piece of the reply is an AgentText as it comes (what a client concatenates, TEXT
0x02). The LLM's leading whitespace is dropped, so a reply whose session already sent text (an
earlier reply, or in the tandem the front-end's words: ``ReplyParts.text_sent``) starts with a
space unless that text ended with one: a reply cut by a barge-in and the next one read "the
capital of Paris is ...", not "the capital ofParis is ..."; the very first reply has no leading
space.

Failures are logged naming the session (``ReplyParts.session``): "session c2: llm NAME failed
during the reply to turn 1: ..."; an exception not kame's own (the component's bug) with where it
was raised, "(at mine.py:12)", and its traceback with `kame -v` (kame.backend.llm.base.bug_at).

Metrics (via ``metric(name, value, labels)``): llm_ttft, tts_first_chunk, first_response_latency
(user's end of speech -> first audible agent sample), content_latency (same point: in the cascade
the first audible sample is already the LLM's answer; labelled estimate="tts-onset"), reply_stall
(a reply its LLM or TTS ended by stalling, Stalled: the wall seconds its stall timer ran; labelled
component, clock_s: the seconds it ran on the session's clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..audio import SAMPLE_RATE, audio_problem, resample
from ..backend.llm.base import bug_at, check_stream, component_name, describe, stall_timeout, text_stream
from ..backend.policy import OraclePolicy, rate_gate, stall_limits
from ..backend.prompt import PromptConfig, ReplyGuard
from ..backend.types import FRAME_SIZE, ChatMessage
from ..errors import BackendError
from ..runtime.base import AgentText, BackendHealth, Output, _why
from ..runtime.clock import END, Clock, MonotonicClock, NothingWithin, next_within, waits_for_reload
from .config import CascadeConfig
from .text import SegmentSplitter

log = logging.getLogger(__name__)


class Stalled(BackendError):
    """A component gave nothing within its timeout (our timer ended its stream): ``clock_s`` the
    seconds the timer ran on the session's clock, ``wall_s`` the wall seconds that took (fewer
    under `kame run --fast`, whose clock runs ahead of wall time: the component had less time
    than its limit). _fail records both (the "reply_stall" metric)."""

    def __init__(self, message: str, clock_s: float = 0.0, wall_s: float = 0.0) -> None:
        super().__init__(message)
        self.clock_s, self.wall_s = clock_s, wall_s


async def _aclose(stream) -> None:
    """Close an async generator (stops the LLM / TTS behind it); errors are the stream's end."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


# The shortest time a TTS takes per word (s; 240 words a minute, fast speech): a segment whose
# audio is not all there (the TTS still streams it, or failed in it) lasts at least this per word.
WORD_S = 0.25


@dataclass
class _Segment:
    text: str
    pcm: list[np.ndarray] = field(default_factory=list)  # chunks as they come from the TTS
    done: bool = False  # the TTS ended this segment (finished it, or failed in it)
    complete: bool = False  # the TTS finished it: ``samples`` is all of its audio
    samples: int = 0  # samples the TTS gave
    played: int = 0  # samples playback took
    started: bool = False  # playback has reached it
    # the span of its audible samples (above the silence threshold: ``add``): its words are
    # spoken there, not in the TTS's silent lead-in and tail (None: none yet)
    loud_start: int | None = None
    loud_end: int | None = None

    def add(self, pcm: np.ndarray, threshold: float) -> None:
        """Queue a chunk of its audio (``threshold``: the level above which a sample is audible)."""
        loud = np.flatnonzero(np.abs(pcm) > threshold)
        if loud.size:
            if self.loud_start is None:
                self.loud_start = self.samples + int(loud[0])
            self.loud_end = self.samples + int(loud[-1]) + 1
        self.samples += pcm.size  # (playback may already have taken some of pcm)
        self.pcm.append(pcm)

    def heard(self) -> str:
        """Its words as far as its audio played: all once it played to its end, else the share of
        its words that the played part of its audible span (from its first to its last sample
        above the silence threshold) is of that span, rounded down: the TTS's silent lead-in and
        tail count for no word (was: a sentence cut 10 ms into its trailing silence lost its last
        word). While the TTS still streams it, or failed in it, the span ends at its audio's end,
        at least WORD_S a word from its start. With no audible sample (only silence so far, or
        at all) no word is heard until it played to its end (was: its silence counted as the
        span, so a TTS that failed after a silent lead-in "said" words); none either while the
        playback is still in its lead-in."""
        words = self.text.split()
        if self.complete and self.played >= self.samples:
            return self.text
        if self.loud_start is None or self.played <= self.loud_start:
            return ""
        start = self.loud_start
        end = self.loud_end if self.complete and self.loud_end is not None else self.samples
        if not self.complete:  # (its audio so far, at least WORD_S a word)
            end = max(end, len(words) * WORD_S * SAMPLE_RATE)
        span = end - start
        share = min(1.0, max(0.0, (self.played - start) / span)) if span > 0 else 0.0
        return " ".join(words[: int(len(words) * share)])


@dataclass
class ReplyParts:
    """What every reply of a session is made with (the cascade session and the hybrid router)."""

    llm: object  # kame.backend.llm: stream_chat(messages, max_tokens=..., temperature=...)
    tts: object  # kame.backend.tts: async synthesize(text) -> float32 chunks at tts.sample_rate
    cfg: CascadeConfig
    clock: Clock
    emit: Callable[[Output], None]  # the session's output queue
    prompt: PromptConfig | None = None  # the prompt's labels, for ReplyGuard (None = the defaults)
    health: BackendHealth | None = None  # the session's record of dead back-ends (None: one of its own)
    names: dict = field(default_factory=dict)  # "llm"/"tts" -> the spec, for messages (else the class's name)
    # stall timeouts on the clock (None: cfg.first_timeout / chunk_timeout, else the tandem
    # oracle's, OraclePolicy); each component's are raised to its spec's own (``limits``)
    first_timeout: float | None = None  # request -> first LLM piece / TTS chunk
    chunk_timeout: float | None = None  # between two pieces / chunks
    session: str | None = None  # the session's id, for log lines
    # the last character of the agent text the session sent ("": none yet), so that a reply starts
    # on a new word (``text_sent``; the hybrid router also notes the front-end's text here)
    text_end: str = ""
    # counts of its replies' waits: wait_llm_loading (stall timers that ran out during or just after
    # a reload of the LLM's model, and waited on; the oracle's stats count the same; the cascade
    # session's "stats" Meta sends it, and for hybrid routing the tandem session's)
    stats: Counter = field(default_factory=Counter)
    # wall time, beside ``clock`` (under `kame run --fast` a virtual one, ahead of wall time): what
    # a stall's timer ran in it is Stalled.wall_s (tests set this one attribute)
    wall: Clock = field(default_factory=MonotonicClock)

    def __post_init__(self) -> None:
        if self.health is None:
            self.health = BackendHealth(self.emit)
        if self.first_timeout is None:
            self.first_timeout = getattr(self.cfg, "first_timeout", None) or OraclePolicy.first_token_timeout
        if self.chunk_timeout is None:
            self.chunk_timeout = getattr(self.cfg, "chunk_timeout", None) or OraclePolicy.chunk_timeout
        # component -> its HTTP 429 Retry-After wait (the component's shared one: policy.rate_gate)
        self._rate = {"llm": rate_gate(self.llm), "tts": rate_gate(self.tts)}

    def limits(self, component: str) -> tuple[float, float]:
        """(first, chunk) stall timeouts of ``component``'s streams: ours, raised to the ones
        its spec set itself (``openai:MODEL;first_token_timeout=60``: not cut at 10 s)."""
        part = self.llm if component == "llm" else self.tts
        return stall_limits(self.first_timeout, self.chunk_timeout, part)

    def rate_limited(self, component: str, exc: BaseException) -> None:
        """After ``component`` failed: a Retry-After its error carries (``retry_after``, s, as the
        openai adapters' HTTP 429; policy.honoured) keeps it from being asked again for that long
        (``check_quiet``), by whoever shares it."""
        self._rate[component].note(self.clock.now(), getattr(exc, "retry_after", None))

    def check_quiet(self, component: str) -> None:
        """BackendError (carrying ``retry_after``: the time left) if ``component`` asked to wait
        (rate_limited here, or its other users: another session, the oracle) and that time is not
        over: it is not asked (was: every reply asked a rate-limited server again at once)."""
        self._rate[component].refuse(self.clock.now())

    def text_sent(self, text: str) -> None:
        """The session sent ``text`` (an AgentText piece, a reply's or the front-end's)."""
        if text:
            self.text_end = text[-1]

    def reply_start(self, piece: str) -> str:
        """A reply's first text piece as sent: with a leading space when the session's text so
        far does not end in whitespace (nothing before it: as it is)."""
        if self.text_end and not self.text_end.isspace() and not piece[:1].isspace():
            return " " + piece
        return piece

    def name(self, component: str) -> str:
        part = self.llm if component == "llm" else self.tts
        return str(self.names.get(component) or component_name(part))


class ReplyPipeline:
    def __init__(self, parts: ReplyParts, *, metric: Callable[[str, float, dict], None]) -> None:
        self.parts = parts
        self.llm, self.tts, self.cfg, self.clock = parts.llm, parts.tts, parts.cfg, parts.clock
        self.prompt = parts.prompt
        self._emit, self._metric, self._health = parts.emit, metric, parts.health
        self.text = ""  # LLM reply so far
        self.turn_id = -1
        self.t_user_end: float | None = None
        self.t_started = 0.0
        self._segments: deque[_Segment] = deque()  # queued for playback (head is playing)
        self._spoken: list[_Segment] = []  # segments whose playback started
        self._task: asyncio.Task | None = None
        self._generating = False
        self._first_audible_done = False
        self.cancelled = False
        self.failed = False
        self._reload_logged = False  # its wait for a reload of the LLM's model was logged
        self._answered = False  # the LLM's first text piece came

    # ---- control ------------------------------------------------------------------------
    def start(self, messages: Sequence[ChatMessage], *, t_user_end: float, turn_id: int) -> None:
        self.turn_id, self.t_user_end = turn_id, t_user_end
        self.t_started = self.clock.now()
        self._generating = True
        self._task = asyncio.create_task(self._run(list(messages)), name=f"cascade-reply-{turn_id}")

    def cancel(self) -> None:
        """Stop the LLM stream and the TTS and drop all queued audio (barge-in)."""
        self.cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._segments.clear()
        self._generating = False

    async def wait(self) -> None:
        """Wait until generation (LLM + TTS) has finished or was cancelled."""
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    @property
    def done(self) -> bool:
        """Its generation task (LLM + TTS) has ended, or never started."""
        return self._task is None or self._task.done()

    @property
    def active(self) -> bool:
        """Still generating or still has audio to play."""
        return self._generating or any(s.pcm or not s.done for s in self._segments)

    @property
    def spoken_text(self) -> str:
        """What the user heard of the reply so far: the words of the segments played, of the one
        playing (a barge-in cut it) as far as its audio played (``_Segment.heard``): a long sentence
        cut a moment after it started is not heard, the few words its audio reached are."""
        return " ".join(h for h in (seg.heard() for seg in self._spoken) if h)

    # ---- playback -----------------------------------------------------------------------
    def pull_frame(self) -> np.ndarray | None:
        """The next 80 ms of reply audio (zero-padded on underrun), or None if nothing is ready."""
        out = np.zeros(FRAME_SIZE, np.float32)
        n = 0
        while n < FRAME_SIZE and self._segments:
            seg = self._segments[0]
            if not seg.pcm:
                if seg.done:
                    self._segments.popleft()
                    continue
                break  # waiting for the TTS
            if not seg.started:
                seg.started = True
                self._spoken.append(seg)
            chunk = seg.pcm[0]
            k = min(FRAME_SIZE - n, chunk.shape[0])
            seg.played += k
            out[n : n + k] = chunk[:k]
            n += k
            if k == chunk.shape[0]:
                seg.pcm.pop(0)
            else:
                seg.pcm[0] = chunk[k:]
        if n == 0:
            return None
        if not self._first_audible_done:
            loud = np.flatnonzero(np.abs(out[:n]) > self.cfg.silence_threshold)
            if loud.size:
                self._first_audible_done = True
                t_audible = self.clock.now() + loud[0] / SAMPLE_RATE
                if self.t_user_end is not None:
                    lat = t_audible - self.t_user_end
                    self._metric("first_response_latency", lat, {})
                    self._metric("content_latency", lat, {"estimate": "tts-onset"})
        return out

    # ---- generation ---------------------------------------------------------------------
    async def _run(self, messages: list[ChatMessage]) -> None:
        segq: asyncio.Queue[str | None] = asyncio.Queue()
        tts_task = asyncio.create_task(self._tts_loop(segq), name=f"cascade-tts-{self.turn_id}")
        splitter = SegmentSplitter(self.cfg.first_clause_min_words, self.cfg.max_segment_words)
        guard = ReplyGuard(self.prompt)

        def take(text: str) -> None:  # a piece of the reply that is ours to say
            if text:
                sent = text if self.text else self.parts.reply_start(text)  # (a new reply: a new word)
                self.text += text
                self.parts.text_sent(sent)
                self._emit(AgentText(sent, self.clock.now()))
                for seg in splitter.feed(text):
                    segq.put_nowait(seg)

        try:
            t_req = self.clock.now()
            try:
                try:
                    await self._ask_llm(messages, t_req, take, guard)
                except BackendError as exc:
                    # a failure that says a new request will work (the embedded LLM's child died while
                    # idle and restarts): reported, then asked again once, that request waiting for the
                    # reload within the same limits (was: the turn failed unanswered); not after its text
                    if self._answered or not exc.restarting:
                        raise
                    self._fail("llm", exc, again=True)
                    await self._ask_llm(messages, t_req, take, guard)
            except Exception as exc:  # noqa: BLE001 - a dead back-end must not end the session
                self._fail("llm", exc)
            take(guard.flush())
            # after a failure, a last sentence it finished is spoken (the splitter waits for the
            # next token to cut it there), its unfinished words are not
            for seg in splitter.flush(whole_sentences=self.failed):
                segq.put_nowait(seg)
            segq.put_nowait(None)
            await tts_task
        except asyncio.CancelledError:
            tts_task.cancel()
            raise
        finally:
            self._generating = False
            if not tts_task.done():
                tts_task.cancel()

    async def _ask_llm(self, messages: list[ChatMessage], t_req: float, take, guard: ReplyGuard) -> None:
        """One request to the LLM (``t_req``: the reply's first, its stall timers count from it):
        its text to ``take`` until its end, or the guard's; BackendError (Stalled) if it fails."""
        kwargs = {"max_tokens": self.cfg.max_tokens}
        if self.cfg.temperature is not None:
            kwargs["temperature"] = self.cfg.temperature
        alive = False  # a keep-alive came before its first text (kame.backend.llm.base)
        self.parts.check_quiet("llm")  # (a 429's Retry-After not over: not asked)
        # text, cleaned (a NUL failed the TTS), split characters joined, else BackendError naming the LLM
        stream = text_stream(self.llm.stream_chat(messages, **kwargs), self.llm)
        try:
            while (piece := await self._next(stream, "LLM", t_req, not self._answered, alive)) is not END:
                if not piece:  # a keep-alive: progress for the timer, not the first piece
                    alive = True
                    continue
                if not self._answered:
                    self._answered = True
                    self._metric("llm_ttft", self.clock.now() - t_req, {})
                    self._health.report("llm", True, self.clock.now())
                take(guard.feed(piece))
                if guard.ended:  # the LLM went on with the conversation's next line
                    self.text = self.text.rstrip()
                    break  # closing the stream stops the LLM
        finally:
            await _aclose(stream)

    async def _tts_loop(self, segq: asyncio.Queue) -> None:
        first = True
        while True:
            text = await segq.get()
            if text is None:
                return
            seg = _Segment(text)
            self._segments.append(seg)
            t_req = self.clock.now()
            got = False
            try:
                self.parts.check_quiet("tts")  # (a 429's Retry-After not over: not asked)
                stream = aiter(check_stream("tts", self.tts, self.tts.synthesize(text)))
                try:
                    while (pcm := await self._next(stream, "TTS", t_req, not got)) is not END:
                        got = True
                        problem = audio_problem(pcm)
                        if problem is not None:
                            raise BackendError(f"its audio is unusable ({problem}); the rest of the reply "
                                               "is not spoken")
                        pcm = np.asarray(pcm, np.float32).reshape(-1)
                        rate = int(getattr(self.tts, "sample_rate", SAMPLE_RATE))
                        if rate != SAMPLE_RATE:
                            pcm = resample(pcm, rate, SAMPLE_RATE)
                        if pcm.size:
                            if first:
                                first = False
                                self._metric("tts_first_chunk", self.clock.now() - t_req, {})
                                self._health.report("tts", True, self.clock.now())
                            seg.add(pcm, self.cfg.silence_threshold)
                finally:
                    await _aclose(stream)
                if not seg.samples and any(c.isalpha() for c in text):  # (not digits: piper says nothing for some)
                    # (a stream that ends without a sample: the words were never said, not "spoken")
                    raise BackendError(f"it gave no audio for {text.strip()!r} (its stream ended without a "
                                       "sample); the rest of the reply is not spoken")
            except Exception as exc:  # noqa: BLE001 - a dead back-end must not end the session
                seg.done = True
                self._fail("tts", exc)
                return  # the rest of this reply cannot be spoken; the session goes on
            seg.done = seg.complete = True

    async def _next(self, stream, what: str, t_req: float, first: bool, alive: bool = False):
        """The stream's next piece / chunk within the stall timeouts (Stalled else): the first
        within ``first_timeout`` s of the request ``t_req``, each next within ``chunk_timeout`` s
        (each at least the component's own, ReplyParts.limits); an LLM's keep-alive (an empty
        piece: it generates a word it holds back) restarts the between-pieces timer, and before
        the first text (``alive``) gives at least ``chunk_timeout`` more (base.stall_timeout).
        A reload of the LLM's model (its ``state`` "loading": the embedded LLM's child restarting
        after it died; or one that ended within the timer, its ``loaded_at``) is waited for, as by
        the tandem's oracle (kame.runtime.clock.next_within): then the whole limit again, at most
        RELOAD_WAIT_S of reload (was: "LLM stalled" and a failed turn)."""
        first_limit, chunk_limit = self.parts.limits("llm" if what == "LLM" else "tts")
        timeout, limit, first = stall_timeout(first_limit, chunk_limit, self.clock.now() - t_req,
                                              text=not first, alive=alive)
        started, wall = self.clock.now(), self.parts.wall.now()
        try:
            return await next_within(stream, self.clock, timeout, loading=self.llm if what == "LLM" else None,
                                     limit=limit, on_reload=self._reload_wait)
        except NothingWithin as exc:
            # its server if it has one (as its other errors say), else its name: as the tandem's oracle says it
            what = f"{what} {describe(self.llm if what == 'LLM' else self.tts)}"
            plain = (f"{what} stalled: nothing within {first_limit:g} s of the request" if first else
                     f"{what} stalled: nothing for {chunk_limit:g} s after its last output")
            raise Stalled(exc.why(what, f"{limit:g}", plain), clock_s=self.clock.now() - started,
                          wall_s=self.parts.wall.now() - wall) from None

    def _reload_wait(self) -> None:
        """The LLM's stall timer ran out while it (re)loads its model, and waits for it: counted
        (ReplyParts.stats ``wait_llm_loading``), logged once per reply ("... which is (re)loading
        its model", or "was" for a reload that ended within the timer: waits_for_reload, the
        oracle's words too). The session says nothing meanwhile (silence, as while a slow LLM
        thinks: no ErrorEvent, the LLM not "down")."""
        self.parts.stats["wait_llm_loading"] += 1
        if not self._reload_logged:
            self._reload_logged = True
            log.info("%sthe reply to turn %d %s", f"session {self.parts.session}: " if self.parts.session else "",
                     self.turn_id, waits_for_reload(f"llm {self.parts.name('llm')}", self.llm))

    def _fail(self, component: str, exc: BaseException, *, again: bool = False) -> None:
        """``component`` failed: reported (ErrorEvent, "backend" down) and logged; the reply ends,
        unless it asks ``again`` (the error said a new request works, BackendError.restarting)."""
        self.failed = self.failed or not again
        self.parts.rate_limited(component, exc)
        why = _why(exc)
        msg = f"{component} {self.parts.name(component)} failed during the reply to turn {self.turn_id}: {why}"
        if again:
            msg += "; the reply asks it again (once), waiting for that"
        # (the log names the session: every session has a "turn 1"; the ErrorEvent is the session's own)
        at, trace = bug_at(exc, log)  # (the component's own bug: where it was raised, its traceback at DEBUG)
        log.warning("%s%s%s", f"session {self.parts.session}: " if self.parts.session else "", msg, at, exc_info=trace)
        self._health.report(component, False, self.clock.now(), why, msg)
        if isinstance(exc, Stalled):  # (kame run's summary counts these: was a regex over the message's words)
            self._metric("reply_stall", exc.wall_s, {"component": component, "clock_s": exc.clock_s})
