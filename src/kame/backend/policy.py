"""When the oracle re-predicts: the re-prediction policy (a config dataclass) and its decision.

SakanaAI/kame polls every 0.5 s and restarts the LLM stream when the user said >= 2 new words or
a final transcript arrived, at most 5 restarts per 2 s. kame does the same, and also decides at
once when a transcript arrives (``event_driven``) so a final is not delayed by up to a poll.

    gate = RestartGate(OraclePolicy())
    d = gate.decide(now, new_words=3, final=False, has_text=True)   # Decision("start", "words")
    if d.action == "start":
        gate.record(now)

Rules, in order (``now`` on the session clock):
  nothing to predict (no user words)          -> none
  in back-off after a failure                 -> wait "backoff" (then "retry" once it is over)
  final transcript not predicted yet          -> start "final"   (skips min_interval, not the cap)
  >= min_new_words changed/new user words     -> start "words"   (after min_interval; with
                                                 wait_first_token and the last prediction cancelled
                                                 unheard, once the running one has its first
                                                 piece: wait "first_token")
  restarts in the last ``window`` s >= max    -> wait "cap"
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal

from ..errors import BackendError

# The longest Retry-After honoured: a longer one (a far date, a server clock ahead of ours) would
# silence a component for the rest of the session; a retry after this costs one request.
MAX_RETRY_AFTER = 60.0


def backoff(base: float, failures: int, cap: float) -> float:
    """The wait before the next try after ``failures`` failures in a row: base, 2 base, 4 base, ... up to cap."""
    return min(cap, base * 2 ** max(0, failures - 1))


@dataclass
class OraclePolicy:
    min_new_words: int = 2  # restart after this many new (or revised) user words
    restart_on_final: bool = True  # restart when a final transcript arrives (if its text is new)
    min_interval: float = 0.5  # s between word-triggered restarts (KAME's poll period)
    max_restarts: int = 5  # at most this many restarts ...
    window: float = 2.0  # ... per this many seconds
    poll_interval: float = 0.5  # s between polls (deferred restarts, retries)
    event_driven: bool = True  # also decide on each transcript, not only on polls
    # after a prediction was cancelled before its first piece, a word-triggered restart waits
    # until the running one has its first piece (a final does not): with an LLM slower to its
    # first token than the user is to two new words (a CPU LLM under load, a long monologue),
    # restarting on words alone cancels every prediction before it says anything, and the
    # front-end has no oracle until the user stops. Off by default (SakanaAI/kame's rule: restart
    # regardless): on short turns it delayed the whole turn's prediction (BENCHMARKS.md, "LLM and oracle")
    wait_first_token: bool = False
    max_tokens: int = 80  # LLM max_tokens per prediction
    temperature: float | None = None  # None = the LLM's default
    first_token_timeout: float = 10.0  # s (session clock) from request to first piece -> failure
    chunk_timeout: float = 5.0  # s (session clock) between pieces -> failure
    retry_backoff: float = 1.0  # s before retrying after a failure; doubles per failure ...
    max_backoff: float = 8.0  # ... up to this
    reset_on_first_token: bool = True  # emit OracleReset with the first tokens (the old
    # prediction keeps feeding until the new one has content); False: a bare reset at the restart cuts
    # the old one (its start id, then pad), the new one's reset still goes with its first tokens

    @classmethod
    def from_config(cls, backend) -> "OraclePolicy":
        """From kame.config.BackendConfig: every field has its backend.* key (docs/backend.md)."""
        b = backend
        return cls(
            min_new_words=b.min_new_words, restart_on_final=b.restart_on_final,
            # unset: poll_interval_s, as before the key existed (and as KAME: a restart waits for a poll)
            min_interval=b.poll_interval_s if b.min_interval_s is None else b.min_interval_s,
            max_restarts=b.max_restarts, window=b.restart_window_s, poll_interval=b.poll_interval_s,
            event_driven=b.event_driven, wait_first_token=b.wait_first_token,
            max_tokens=b.llm_max_tokens, temperature=b.llm_temperature,
            first_token_timeout=b.llm_first_token_timeout_s, chunk_timeout=b.llm_chunk_timeout_s,
            retry_backoff=max(b.retry_s, 0.01), max_backoff=b.llm_retry_max_s,
            reset_on_first_token=b.reset_on_first_token,
        )

    def backoff(self, failures: int) -> float:
        return backoff(self.retry_backoff, failures, self.max_backoff)


def stall_limits(first: float, chunk: float, component: object) -> tuple[float, float]:
    """The (first, chunk) stall timeouts a watchdog (the oracle's, the cascade's) gives
    ``component``'s stream: its own ``first`` / ``chunk`` s, raised to the timeouts the component's
    spec set explicitly (``component.stall_timeouts``: (first or None, between chunks or None),
    e.g. ``openai:MODEL;first_token_timeout=60``), so that those are never cut short by the
    watchdog (was: a spec's 60 s ended at the oracle's 10 s). A timeout the spec sets lower
    than the watchdog's fires first by itself (the adapter's own error).

    The other way round, the component is told the watchdog's limits (``follow_watchdog(first,
    chunk)``, the openai adapters: kame.backend.openai_http.OpenAIHTTP): its own timeouts its spec
    left unset are raised to them, so the watchdog's keys (backend.llm_first_token_timeout_s,
    cascade.first_timeout, ...) are not capped by an adapter's built-in ones (was: set to 30, a
    slow LLM still failed at the adapter's 15 s)."""
    own = getattr(component, "stall_timeouts", None)
    own_first, own_chunk = own if isinstance(own, tuple) and len(own) == 2 else (None, None)
    limits = max(first, own_first or 0.0), max(chunk, own_chunk or 0.0)
    follow = getattr(component, "follow_watchdog", None)
    if callable(follow):
        follow(*limits)
    return limits


@dataclass(frozen=True)
class Decision:
    action: Literal["start", "wait", "none"]
    reason: str = ""  # start: "words" | "final" | "retry"; wait: "interval" | "first_token" | "cap" | "backoff"


class RestartGate:
    """The decision state: recent restart times and the failure back-off."""

    def __init__(self, policy: OraclePolicy) -> None:
        self.policy = policy
        self.recent: deque[float] = deque()  # start times within the last window
        self.last_start: float | None = None
        self.retry_at: float | None = None  # set after a failure; None = healthy

    def record(self, now: float) -> None:
        self.recent.append(now)
        self.last_start = now

    MAX_RETRY_AFTER = MAX_RETRY_AFTER  # (the module's: RetryAfterGate's cap)

    def fail(self, now: float, failures: int, at_least: float | None = None) -> None:
        """Back off after a failure; ``at_least``: the wait the service asked for (Retry-After),
        honoured up to MAX_RETRY_AFTER seconds."""
        self.retry_at = now + max(self.policy.backoff(failures), honoured(at_least))

    def ok(self) -> None:
        self.retry_at = None

    def decide(self, now: float, *, new_words: int, final: bool, has_text: bool,
               awaiting_first: bool = False) -> Decision:
        """``awaiting_first``: a prediction is running that has not yielded its first piece (and
        the one before it was cancelled before its own: the producer decides that)."""
        p = self.policy
        while self.recent and self.recent[0] <= now - p.window:
            self.recent.popleft()
        if not has_text:
            return Decision("none")
        if self.retry_at is not None:
            if now < self.retry_at:
                return Decision("wait", "backoff")
            reason = "retry"
        elif final and p.restart_on_final:
            reason = "final"
        elif new_words >= p.min_new_words:
            if self.last_start is not None and now - self.last_start < p.min_interval:
                return Decision("wait", "interval")
            if awaiting_first and p.wait_first_token:
                return Decision("wait", "first_token")
            reason = "words"
        else:
            return Decision("none")
        if len(self.recent) >= p.max_restarts:
            return Decision("wait", "cap")
        return Decision("start", reason)


def honoured(after: object) -> float:
    """The part of a Retry-After (s; e.g. a BackendError's ``retry_after``) that kame waits: at
    most MAX_RETRY_AFTER, 0 for none (None, not a number, not positive)."""
    if isinstance(after, bool) or not isinstance(after, (int, float)) or not after > 0:
        return 0.0
    return min(float(after), MAX_RETRY_AFTER)


class RetryAfterGate:
    """The wait a rate-limited server asked for (HTTP 429's Retry-After), kept where its client
    lives: the openai adapters' ``rate_gate`` (kame.backend.openai_http.OpenAIHTTP), one object
    that every session, the STT's streams, the cascade's replies, hybrid routing and the oracle
    share (was: each kept its own, so N sessions each asked a server that had already said 429).
    ``now`` is the caller's clock (an agent's sessions share one). Thread-safe (the openai STT
    notes from its worker threads).

        gate.note(now, exc.retry_after)   # after a failure: True if the wait grew (log it once)
        gate.left(now)                    # s before the server may be asked again (0: now)
        gate.refuse(now, "not asked")     # BackendError (retry_after: the time left) while it holds"""

    # a note that extends the wait by no more than this is no news (several streams' requests
    # in flight come back 429 one after another, each a few ms later): ``note`` says False
    NEWS_S = 1.0

    def __init__(self) -> None:
        self._until: float | None = None
        self._lock = threading.Lock()

    def note(self, now: float, after: object) -> bool:
        """A failure's Retry-After (``after``, s; honoured) holds back requests until ``now`` +
        it; True if it started a wait, or moved the end of a running one by more than NEWS_S
        (the caller logs it; was: only a wait of more than NEWS_S, so "Retry-After: 1" was
        never logged)."""
        wait = honoured(after)
        if not wait:
            return False
        with self._lock:
            running = self._until is not None and self._until > now
            if running and now + wait <= self._until:
                return False
            news = not running or now + wait - self._until > self.NEWS_S
            self._until = now + wait
            return news

    def left(self, now: float) -> float:
        """s before the server may be asked again (0: now), at most MAX_RETRY_AFTER (the gate's
        wait may have been noted on another clock: an adapter shared by two agents' components=)."""
        until = self._until
        return 0.0 if until is None else min(max(0.0, until - now), MAX_RETRY_AFTER)

    def refuse(self, now: float, what: str = "not asked") -> None:
        """BackendError "``what``: it rate-limited kame (HTTP 429) and asked it to wait N s more
        (Retry-After)" (its ``retry_after``: those N s) while the wait holds; else nothing."""
        left = self.left(now)
        if left > 0:
            exc = BackendError(f"{what}: it rate-limited kame (HTTP 429) and asked it to wait "
                               f"{left:.1f} s more (Retry-After)")
            exc.retry_after = left
            raise exc


def rate_gate(component: object, own: RetryAfterGate | None = None) -> RetryAfterGate:
    """``component``'s shared RetryAfterGate (its ``rate_gate``: the openai adapters', a wrapper's
    that forwards it), else ``own`` (a caller's own, for a component without one), else a new one."""
    gate = getattr(component, "rate_gate", None)
    if isinstance(gate, RetryAfterGate):
        return gate
    return own if own is not None else RetryAfterGate()
