"""The oracle producer: partial transcripts -> streamed LLM predictions -> oracle token events.

One producer per session. It keeps the conversation (user transcripts + the agent's own spoken
words), decides when to re-predict (kame.backend.policy), streams the LLM's reply, turns it into
text-stream token ids with the incremental tokenizer (chunking never changes the ids), and emits

    OracleReset(prediction_id, t)                       # a new prediction starts, with its first tokens
                                                        # (bare=True: none follows, the feed only stops:
                                                        # on_routed; a restart, reset_on_first_token=False)
    OracleAppend(prediction_id, token_ids, text, t)     # more of it (final ids only)

to a callback or its ``events`` queue; the runtime feeds them to the stepper's oracle stream
(start token at the reset frame, then one token per frame; the newest prediction wins).

    producer = OracleProducer(llm, tokenizer, OraclePolicy(), clock=clock, metrics=sink,
                              on_event=feed, prompt=PromptConfig(), knowledge=kb, session="s1")
    runner = asyncio.create_task(producer.run())   # polls (deferred restarts, retries)
    await producer.on_transcript(tr)               # each partial/final from the STT
    producer.on_routed(tr)                         # ... or a final hybrid routing answers (no prediction)
    producer.on_routed_unheard(answer)             # ... whose reply none was heard of: back in the prompts
    producer.on_agent_text(" Paris")               # each inner-monologue text piece spoken
    ...
    await producer.aclose()                        # cancels the stream and the poll loop

Without ``on_event`` events go to ``producer.events`` (an unbounded asyncio.Queue; nothing is
ever dropped). ``on_event`` is a plain function, called on the event loop in order (e.g. the
runtime's ``stepper.oracle`` feed or ``queue.put_nowait``); an exception in it is logged.

Behaviour:
- The prediction is the LLM's reply up to where it goes on writing the conversation (a new
  ``user:`` or ``agent:`` line, with the PromptConfig's labels; kame.backend.prompt.ReplyGuard):
  there the producer stops reading and closes the stream; the prediction counts as completed.
  Its text is cleaned as training's simulated oracle cleans the LLM's replies
  (kame.backend.speech_text.SpokenStream, kame.train.oracle_sim.clean_reply): one spoken line with
  no markdown, emoji or symbols a person would not say ("3 * 4 = 12" -> "3 times 4 is 12"). A
  word with letters goes out once a space and the next word that says something (a letter or
  digit outside a URL) follow it (so "day 😊." stays "day."); a number or symbol waits for the
  next such word (what follows may change how it is said: "3" + " * 4").
- A restart cancels the running LLM stream (closing its HTTP request / stopping generation) and
  starts a new prediction id; events of older predictions are never emitted after that.
- Failures (BackendError, any exception, no first piece within ``first_token_timeout`` or no
  piece for ``chunk_timeout`` on the session clock (an empty piece, a keep-alive, is progress
  but no text: kame.backend.llm.base.stall_timeout; each at least the LLM's own where its spec
  set it: ``openai:MODEL;first_token_timeout=60``, kame.backend.policy.stall_limits; a reload of
  the LLM's model, ``llm.state == "loading"`` (or one that ended within the timer: its
  ``loaded_at`` moved), is waited for instead, up to RELOAD_WAIT_S: the
  embedded LLM's child restarting after it died; kame.runtime.clock.next_within, the cascade's
  timer too), a piece that is not a str: the LLM broke its interface, kame.backend.llm.base.check_piece) are logged and
  counted; the producer waits
  ``policy.backoff(n)`` (at least an HTTP 429's Retry-After) and retries the newest
  conversation, and meanwhile the session simply has no oracle (the log line names the session:
  "session s1: oracle prediction 3 failed ..."; an exception not kame's own, the LLM's bug, also
  names the LLM and where it was raised, "(LLM mine: KeyError: 'x' (at mine.py:12))", its
  traceback with `kame -v`: kame.backend.llm.base.bug_at). The Retry-After wait is the LLM's shared one
  (kame.backend.policy.rate_gate: the openai adapter's ``rate_gate``): a 429 another session,
  or hybrid routing's reply, got from the same LLM holds this producer's next prediction back
  too (counted ``wait_rate_limited``; was: each asked the server again by itself).
  Nothing propagates out of the producer. The faults the producer finds itself
  (a stall, a piece that is not text), which the LLM never raised, are also handed to
  ``llm.failed(message)`` when the LLM has it (a health watcher:
  kame.runtime.backend.WatchedLLM), so they are reported like the LLM's own errors.
- A prediction that completes with no text (the stream ended with none, or with only the
  conversation's next line) is no failure (not retried: the LLM would answer the same), but the
  front-end got nothing: it is logged ("session s1: oracle prediction 3: LLM NAME answered with
  no text; check that LLM's replies"), counted (``empty``) and handed to
  ``llm.answered_nothing(message)`` when the LLM has it (WatchedLLM: an error for the session,
  the LLM's status left as it is: it answered, so it is up; was ``llm.failed``, which marked a
  reachable LLM down and up again with each prediction).
- Metrics (on the injected clock): llm_ttft (request -> first piece), llm_tokens_per_s
  (text-stream tokens after the first piece, per s), oracle_lag (user's last word end -> first
  oracle token emitted), oracle_restart (value 1, labels.reason). ``stats`` counts decisions:
  start_words / start_final / start_retry, wait_interval / wait_first_token / wait_cap /
  wait_backoff (wait_rate_limited: a shared Retry-After set it), wait_llm_loading (a stall timer
  that ran out during or just after a reload of the LLM's model, and waited on; the tandem
  session's "stats" Meta sends it: kame.runtime.backend.BackendBridge.oracle_stats), cancelled
  (cancelled_unheard: before their first piece), completed, failed, empty (completed with no
  text), reply_ended (completed predictions cut at an invented next line), reply_capped
  (completed predictions cut at the prompt's ``max_words``, backend.max_reply_words, as
  training's clean_reply cuts its replies; the LLM's stream is closed there), cut
  (``reset_on_first_token=False``: the bare OracleResets emitted at restarts), routed (finals another
  path answered: ``on_routed``), routed_unheard (those whose answer none was heard of:
  ``on_routed_unheard``), blanked (the bare OracleResets ``on_routed`` emitted to stop the
  front-end's feed of tokens still queued: a new prediction id, no appends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any, Callable

from ..errors import BackendError
from ..runtime.clock import END, Clock, MonotonicClock, NothingWithin, next_within, waits_for_reload
from ..runtime.metrics import Metric, MetricsSink, null_sink
from .llm.base import LLM, bug_at, describe, stall_timeout, text_stream
from .policy import OraclePolicy, RestartGate, rate_gate, stall_limits
from .prompt import Conversation, PromptConfig, ReplyGuard, build_messages
from .speech_text import SpokenStream
from .tokenizer import TextTokenizer
from .types import EMPTY_ANSWER, FRAME_S, OracleAppend, OracleEvent, OracleReset, Transcript

log = logging.getLogger(__name__)


class _LLMFault(BackendError):
    """A fault of the LLM that the producer found (the LLM itself raised nothing)."""


class _Stalled(_LLMFault):
    pass


def text_tokens_per_s(n_ids: int, first: float | None, end: float) -> float | None:
    """The oracle's text-stream rate (llm_tokens_per_s): ``n_ids`` oracle-vocabulary ids of the
    cleaned reply over the time from its first piece (``first``) to its ``end``, the ids after the
    first (the time to the first piece is not counted: the reset goes with the first tokens, so it
    makes no token late). None: not measurable (no text, or one id)."""
    if first is None or end <= first or n_ids < 2:
        return None
    return (n_ids - 1) / (end - first)


class OracleProducer:
    def __init__(
        self,
        llm: LLM,
        tokenizer: TextTokenizer,
        policy: OraclePolicy | None = None,
        *,
        prompt: PromptConfig | None = None,
        knowledge: Any = None,  # kame.backend.knowledge.KnowledgeBase or None
        clock: Clock | None = None,
        metrics: MetricsSink | None = None,
        on_event: Callable[[OracleEvent], Any] | None = None,
        session: str | None = None,
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.policy = policy or OraclePolicy()
        self.prompt = prompt or PromptConfig()
        self.knowledge = knowledge
        self.clock = clock or MonotonicClock()
        self.metrics = metrics or null_sink
        self.on_event = on_event
        self.session = session
        self.events: asyncio.Queue[OracleEvent] = asyncio.Queue()
        self.conversation = Conversation()
        self.stats: Counter[str] = Counter()
        self.prediction_id = 0  # id of the newest prediction started
        self.last_messages: list | None = None  # prompt of the newest prediction (for logs/tests)
        self._gate = RestartGate(self.policy)
        self._rate = rate_gate(llm)  # the LLM's HTTP 429 wait, shared with its other users
        self._basis: list[str] = []  # user words the newest prediction was based on
        self._basis_dropped = 0  # the conversation's dropped_user_words then (its words' front lost since)
        self._final_pending = False  # a final transcript with new text not predicted yet
        self._retry_owed = False  # a failed prediction's words await their retry (not answered otherwise)
        self._reset_t: float | None = None  # the newest OracleReset's time (None: none yet)
        self._appended = 0  # tokens appended since it (the feed: its start token, then one a frame)
        self._task: asyncio.Task | None = None
        self._first_pid = 0  # the newest prediction that has yielded its first piece
        self._unheard = 0  # predictions cancelled before their first piece, in a row
        self._failures = 0
        self._reload_logged = 0  # the newest prediction whose wait for the LLM's reload was logged
        self._closed = False
        self._runner: asyncio.Task | None = None

    # --- inputs -------------------------------------------------------------------------------
    async def on_transcript(self, tr: Transcript) -> None:
        """Feed one STT partial or final transcript."""
        if self._closed:
            return
        self.conversation.on_transcript(tr)
        if tr.final and tr.words and self.conversation.user_words() != self._basis_now():
            self._final_pending = True  # (a final whose words were already predicted is skipped)
        if self.policy.event_driven:
            self._decide()

    def on_routed(self, tr: Transcript) -> None:
        """A final transcript that another path answers (hybrid routing's cascade reply): kept in
        the conversation (later predictions see the user said it), but no prediction is made for
        it, and the one running (started on its partials) is cancelled: the LLM serves the routed
        reply alone, and the front-end is fed no second answer. New words after it predict as usual.

        Only what the routed final itself owed is settled: a retry after a failed prediction of
        its words is no longer owed (the back-off still holds for the next words: the LLM is
        still failing), while an earlier final still waiting for its prediction keeps waiting;
        the routed turn stays out of the prompts until an agent line follows it (Conversation:
        that prediction answers the earlier final, not the routed one). The front-end's feed is
        blanked (a new prediction id, an OracleReset marked ``bare``, no prediction: the tokens
        still queued there are superseded, pad follows) if tokens emitted may not all be fed yet
        (one a frame, FRAME_S); the routed reply's heard text comes in later through
        ``on_agent_text`` like the agent's own, or, none heard, ``on_routed_unheard`` puts the
        routed turn back into the prompts."""
        if self._closed:
            return
        earlier = self._final_pending  # (an earlier final not predicted yet: it stays owed)
        self.conversation.on_transcript(tr, routed=True)
        if self._task is not None and not self._task.done():
            self._task.cancel()  # (its stream closes its request as it unwinds)
            self.stats["cancelled"] += 1
        self.stats["routed"] += 1
        if not earlier:
            self._basis, self._basis_dropped = self.conversation.user_words(), self.conversation.dropped_user_words
            self._retry_owed = False
        now = self.clock.now()
        if now < self._feed_until():  # the front-end may still be fed emitted tokens, one a frame
            self.prediction_id += 1
            self._emit(OracleReset(self.prediction_id, now, bare=True))
            self.stats["blanked"] += 1

    def on_routed_unheard(self, answer: bool = False) -> None:
        """The routed reply to the routed finals no agent line follows was not heard at all (a
        later final or a barge-in cut it before its first word, the LLM/TTS failed first, the LLM
        answered nothing): they go back into the prompts (was: left out of every later one), so
        the next prediction (a later final's) sees the question. ``answer``: the reply ended by
        itself (failed or empty), no later final will come for it: a prediction is owed to them
        (as for a final: the back-off and the restart cap still hold)."""
        if self._closed or not self.conversation.unroute():
            return
        self.stats["routed_unheard"] += 1
        if answer:
            self._final_pending = True
            if self.policy.event_driven:
                self._decide()

    def on_agent_text(self, piece: str, t: float | None = None) -> None:
        """Feed a piece of the agent's own spoken text (front-end inner monologue)."""
        self.conversation.on_agent_text(piece, self.clock.now() if t is None else t)

    async def run(self) -> None:
        """Poll loop: applies deferred restarts and retries; returns after ``aclose``."""
        self._runner = asyncio.current_task()
        try:
            while not self._closed:
                await self.clock.sleep(self.policy.poll_interval)
                if not self._closed:
                    self._decide()
        except asyncio.CancelledError:
            if not self._closed:
                raise  # cancelled from outside; after aclose() it is a normal end

    async def aclose(self) -> None:
        self._closed = True
        if self._runner is not None and self._runner is not asyncio.current_task() and not self._runner.done():
            self._runner.cancel()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def busy(self) -> bool:
        """A prediction is streaming right now."""
        return self._task is not None and not self._task.done()

    # --- decisions ----------------------------------------------------------------------------
    def _basis_now(self) -> list[str]:
        """The newest prediction's basis without the words the conversation has dropped since."""
        return self._basis[self.conversation.dropped_user_words - self._basis_dropped:]

    def _new_words(self, words: list[str]) -> int:
        common = 0
        for a, b in zip(words, self._basis_now()):
            if a != b:
                break
            common += 1
        return len(words) - common

    def _decide(self) -> None:
        now = self.clock.now()
        if not self._retry_owed and self._gate.retry_at is not None and now >= self._gate.retry_at:
            self._gate.retry_at = None  # back-off over, no retry owed (a routed final): the usual rules
        if (left := self._rate.left(now)) > 0 and (self._gate.retry_at or now) < now + left:
            # (the server asked its users to wait: a 429 another session or the cascade path got)
            self._gate.retry_at = now + left
            self.stats["wait_rate_limited"] += 1
        words = self.conversation.user_words()
        d = self._gate.decide(now, new_words=self._new_words(words), final=self._final_pending,
                              has_text=bool(words), awaiting_first=self._awaiting_first())
        if d.action == "wait":
            self.stats[f"wait_{d.reason}"] += 1
        elif d.action == "start":
            self._start(d.reason, words, now)

    def _awaiting_first(self) -> bool:
        """The running prediction has not yielded its first piece, and the one before it was
        cancelled before its own (policy.wait_first_token: a slow LLM is not cancelled every
        time; a fast one, whose predictions speak, is restarted as SakanaAI/kame does)."""
        return self.busy and self._first_pid < self.prediction_id and self._unheard > 0

    def _start(self, reason: str, words: list[str], now: float) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the stale stream closes its request as it unwinds
            self.stats["cancelled"] += 1
            if self._first_pid < self.prediction_id:  # cancelled before it said anything
                self._unheard += 1
                self.stats["cancelled_unheard"] += 1
        self._gate.record(now)
        self._gate.retry_at = None  # a retry is starting; a failure sets it again
        self._retry_owed = False
        self.prediction_id += 1
        self._basis, self._basis_dropped = words, self.conversation.dropped_user_words
        self._final_pending = False
        self.stats[f"start_{reason}"] += 1
        self._metric("oracle_restart", 1.0, reason=reason, prediction_id=self.prediction_id)
        messages = build_messages(self.conversation, self.prompt, self.knowledge)
        self.last_messages = messages
        word_end = self.conversation.last_user_word_end()
        pid = self.prediction_id
        if not self.policy.reset_on_first_token:  # the old prediction is cut now (pad from here); this one's
            self._emit(OracleReset(pid, now, bare=True))  # reset goes with its first tokens, as by default
            self.stats["cut"] += 1
        self._task = asyncio.create_task(self._stream(pid, messages, word_end), name=f"oracle-{pid}")

    # --- one prediction -----------------------------------------------------------------------
    async def _stream(self, pid: int, messages, word_end: float | None) -> None:
        p = self.policy
        t0 = self.clock.now()
        first: float | None = None
        n_ids = 0
        enc = self.tokenizer.incremental()
        guard = ReplyGuard(self.prompt)
        # (the text cleaned as training's simulated oracle cleans it, kame.train.oracle_sim.clean_reply:
        # the front-end gets what it was trained on; was: markdown, and emoji as <unk>)
        # (cut at the prompt's max_words, backend.max_reply_words, as training's clean_reply cuts its replies)
        spoken = SpokenStream(self.prompt.max_words)
        agen = None
        # (at least the timeouts the LLM's spec set: ";first_token_timeout=60" is not cut at 10 s)
        first_limit, chunk_limit = stall_limits(p.first_token_timeout, p.chunk_timeout, self.llm)
        try:
            # (pieces checked and cleaned, split characters joined: a lone surrogate failed
            # SentencePiece on every prediction; None or an int is a broken LLM, not an end)
            agen = text_stream(self.llm.stream_chat(messages, max_tokens=p.max_tokens, temperature=p.temperature),
                               self.llm, _LLMFault)
            try:
                alive = False  # a keep-alive came before the first text
                while True:
                    # (a keep-alive, an empty piece: the LLM generates a word it holds back, no stall)
                    timeout, limit, _ = stall_timeout(first_limit, chunk_limit, self.clock.now() - t0,
                                                      text=first is not None, alive=alive)
                    piece = await self._next(agen, timeout, pid, limit)
                    if piece is END:
                        break
                    if not piece:  # a keep-alive is progress, not the first token
                        alive = True
                        continue
                    if first is None:
                        first = self.clock.now()
                        self._first_pid = max(self._first_pid, pid)
                        self._unheard = 0
                        self._metric("llm_ttft", first - t0, prediction_id=pid)
                        self._gate.ok()  # healthy again (the failure count is reset only when a stream
                        # completes: one that breaks after its first piece, time after time, backs off more)
                    n_ids += self._emit_ids(pid, enc.push(spoken.feed(guard.feed(piece))), word_end, n_ids)
                    if guard.ended:  # the LLM went on with the conversation's next line
                        self.stats["reply_ended"] += 1
                        break
                    if spoken.done:  # max_words said: the rest would not be fed (training's cut)
                        self.stats["reply_capped"] += 1
                        break
                n_ids += self._emit_ids(pid, enc.push(spoken.feed(guard.flush()) + spoken.flush()) + enc.flush(),
                                        word_end, n_ids)
            finally:
                with contextlib.suppress(Exception):
                    await agen.aclose()  # closes the HTTP request / stops generation
            rate = text_tokens_per_s(n_ids, first, self.clock.now())
            if rate is not None:
                self._metric("llm_tokens_per_s", rate, unit="text_tokens", prediction_id=pid)
            self._failures = 0
            self._gate.ok()
            self.stats["completed"] += 1
            if not n_ids and pid == self.prediction_id and not self._closed:
                self._answered_nothing(pid, guard.ended)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the session goes on without an oracle
            self._failures += 1
            self.stats["failed"] += 1
            now = self.clock.now()
            self._rate.note(now, getattr(exc, "retry_after", None))  # (for its other users too)
            self._gate.fail(now, self._failures, self._rate.left(now))
            self._retry_owed = True
            # (named by its session: with several, "prediction 3 failed" alone says not whose)
            # (a fault found here reads by its message alone, "LLM x stalled: ...": its class is private)
            # (the LLM's own bug, not a BackendError: named, where it was raised, traceback at DEBUG)
            at, trace = bug_at(exc, log)
            why = (str(exc) if isinstance(exc, _LLMFault) else
                   f"{f'LLM {describe(self.llm)}: ' if at else ''}{type(exc).__name__}: {exc}{at}")
            log.warning("%soracle prediction %d failed (%s); retry in %.2f s",
                        f"session {self.session}: " if self.session else "", pid, why,
                        self._gate.retry_at - now, exc_info=trace)
            failed = getattr(self.llm, "failed", None)  # (a health watcher: kame.runtime.backend.WatchedLLM)
            if isinstance(exc, _LLMFault) and callable(failed):  # we, not the LLM, ended the stream
                failed(str(exc))

    def _answered_nothing(self, pid: int, next_line: bool) -> None:
        """A prediction that completed with no text (the LLM's stream ended with none, or with
        only the conversation's next line, ``next_line``): the front-end got no answer from it.
        Not retried (the LLM would answer the same), but logged, counted (stats ``empty``) and
        handed to ``llm.answered_nothing`` (was: a completed prediction, seen nowhere, and `kame
        run` blamed --tail). No ``llm.failed``: the LLM is reachable and answering (a small model
        predicting on partials may well go on with the user's line); it is not down."""
        self.stats["empty"] += 1
        why = (f"LLM {describe(self.llm)} {EMPTY_ANSWER}"
               + (" (it went on with the conversation's next line)" if next_line else ""))
        log.warning("%soracle prediction %d: %s; check that LLM's replies",
                    f"session {self.session}: " if self.session else "", pid, why)
        empty = getattr(self.llm, "answered_nothing", None)  # (a health watcher: kame.runtime.backend.WatchedLLM)
        if callable(empty):
            empty(why)

    async def _next(self, agen, timeout: float, pid: int, limit: float) -> Any:
        """The next piece (text_stream's: checked, cleaned), END at the end; _Stalled after ``timeout`` s
        on the session clock, not counting a reload of the LLM's model (next_within's ``loading``:
        after one, ``limit`` s, the whole first-piece or between-pieces limit; at most
        RELOAD_WAIT_S of it)."""
        try:
            return await next_within(agen, self.clock, timeout, loading=self.llm, limit=limit,
                                     on_reload=lambda: self._reload_wait(pid))
        except NothingWithin as exc:
            what = f"LLM {describe(self.llm)}"
            raise _Stalled(exc.why(what, f"{limit:.2f}", f"{what} stalled: nothing for {timeout:.2f} s")) from None

    def _reload_wait(self, pid: int) -> None:
        """Prediction ``pid``'s stall timer ran out while the LLM (re)loads its model and waits
        for it (was: "LLM embedded stalled: nothing for 10.00 s", a failed prediction and "llm
        down" while /api/health said "loading"): counted (stats ``wait_llm_loading``), logged
        once per prediction ("... which is (re)loading its model", or "was" for a reload that
        ended within the timer: waits_for_reload, the cascade reply's words too)."""
        self.stats["wait_llm_loading"] += 1
        if self._reload_logged < pid:
            self._reload_logged = pid
            log.info("%soracle prediction %d %s", f"session {self.session}: " if self.session else "", pid,
                     waits_for_reload(f"LLM {describe(self.llm)}", self.llm))

    # --- outputs ------------------------------------------------------------------------------
    def _emit_ids(self, pid: int, ids: list[int], word_end: float | None, sent: int) -> int:
        if not ids or pid != self.prediction_id or self._closed:
            return 0
        now = self.clock.now()
        if sent == 0:  # (reset_on_first_token=False cut the old prediction at the restart already)
            self._emit(OracleReset(pid, now))
            if word_end is not None:
                self._metric("oracle_lag", now - word_end, prediction_id=pid)
        text = "".join(self.tokenizer.piece_text(i) for i in ids)
        self._emit(OracleAppend(pid, tuple(ids), text, now))
        self._appended += len(ids)
        return len(ids)

    def _feed_until(self) -> float:
        """When the front-end has been fed the tokens appended since the newest reset: as its feed
        (kame.model.stepper._OracleRow) does, token i at the reset's frame + 1 + i (a late one
        is skipped, not queued), + a frame for the hand-off to the worker; the reset's own time
        with none appended (only its start token)."""
        if self._reset_t is None:
            return float("-inf")
        return self._reset_t + (self._appended + 1) * FRAME_S if self._appended else self._reset_t

    def _emit(self, ev: OracleEvent) -> None:
        self.stats["events"] += 1
        if isinstance(ev, OracleReset):
            self._reset_t, self._appended = ev.t, 0  # (the feed's queued tokens are superseded)
        if self.on_event is None:
            self.events.put_nowait(ev)
            return
        try:
            self.on_event(ev)
        except Exception:  # noqa: BLE001 - a consumer bug must not kill the oracle
            log.exception("oracle event consumer failed")

    def _metric(self, name: str, value: float, **labels) -> None:
        try:
            self.metrics(Metric(name, float(value), self.clock.now(), self.session, labels))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001
            log.exception("metrics sink failed")
