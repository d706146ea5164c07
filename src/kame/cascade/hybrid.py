"""Hybrid routing for a tandem session: "structured" user turns (numbers, code, extraction; see
kame.cascade.routing) are answered by the cascade path, the rest by the tandem front-end.

One ``HybridRouter`` per tandem session; the tandem runtime calls it from the event loop:

    router = HybridRouter(llm, tts, cfg.cascade, clock, emit=session._put, metrics=agent.metrics,
                          session_id=session.id, prompt_fn=prompt_fn, on_heard=session.on_routed_reply)
    router.on_transcript(tr)            # every partial/final from the STT; a final may start a reply
    router.on_agent_text(piece, t)      # the front-end's own words (kept in the history)
    router.on_vad(events, t, in_speech, last_voice)  # user voice: barge-in cancels a routed reply
    pcm = router.frame(front_end_pcm)   # per 80 ms frame: the routed reply's audio while it
                                        # plays (the front-end's frame is muted), else the front-end's
    await router.aclose()

A routed turn emits Meta {"type": "route", "route": "structured", "rules": [...], "t_user_end", "t"}
(t_user_end: the end of the user's speech, the latency origin, as the cascade's "turn" has it) and the
reply's AgentText / metrics like the cascade: as there, a routed reply's first text piece starts
with a space when the session's text so far (the front-end's words, an earlier routed reply)
does not end in whitespace, so the TEXT stream reads "... okay. Twelve", not "okay.Twelve". Nothing here
blocks: LLM and TTS run in tasks. ``on_heard(text, t, interrupted)`` is called as each routed
reply's ``agent_turn`` is committed, with its heard text: "" when none of it was heard (a later
final or a barge-in cut it before its first word, or the LLM/TTS failed first, or the LLM
answered nothing; ``interrupted``: cut, rather than ended by itself). The tandem session hands
it to the oracle producer's conversation: heard text as the agent's answer, which its next
prediction then sees; nothing heard puts the routed question back into its prompts.
``router.stats`` counts its replies' waits for a reload of the LLM's model (``wait_llm_loading``,
as the cascade's), which the tandem session's "stats" Meta sends.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from ..backend.prompt import add_agent_text, remember
from ..backend.types import ChatMessage, Transcript, Turn
from ..runtime.base import BackendHealth, Meta, Output
from ..runtime.clock import Clock
from ..runtime.metrics import Metric, MetricsSink, null_sink
from .config import CascadeConfig
from .reply import ReplyParts, ReplyPipeline
from .routing import explain_turn
from .turns import SpeechRegions, barges_in, voice_heard_since

log = logging.getLogger(__name__)


class HybridRouter:
    def __init__(
        self,
        llm,
        tts,
        cfg: CascadeConfig,
        clock: Clock,
        *,
        emit: Callable[[Output], None],
        prompt_fn: Callable[[Sequence[Turn]], list[ChatMessage]],
        metrics: MetricsSink = null_sink,
        session_id: str | None = None,
        health: BackendHealth | None = None,  # the session's (None: the router's own)
        on_heard: Callable[[str, float, bool], None] | None = None,  # (heard text or "", t, interrupted): each agent_turn
    ) -> None:
        self.parts = ReplyParts(llm, tts, cfg, clock, emit, getattr(prompt_fn, "prompt_config", None), health,
                                session=session_id)
        self.cfg, self.clock = cfg, clock
        self._emit, self._sink, self._prompt_fn, self.session_id = emit, metrics, prompt_fn, session_id
        self._on_heard = on_heard
        self.history: list[Turn] = []
        self.reply: ReplyPipeline | None = None
        self.routed_turns = 0
        self._turn = 0
        self._speech = SpeechRegions()  # the user's speech regions (the cascade session's rule)
        self._last_voice: float | None = None  # end of the latest chunk the VAD heard as speech

    # ---- inputs -----------------------------------------------------------------------
    def on_transcript(self, tr: Transcript) -> str | None:
        """Returns the route of a final transcript ("structured"/"open"), None for partials; a
        structured one starts a routed reply (then ``routed_turns`` counts it) if hybrid_routing is on."""
        text = tr.text.strip()
        if not tr.final or not text:
            return None
        # its end of speech (latency origin): the VAD's end of the speech its words were in, also
        # when the final comes while the user speaks again (as the cascade session's)
        end = self._speech.end_of(tr, self._last_voice)
        start = tr.words[0].start if tr.words else end
        # (first: the previous reply's agent turn goes before this user turn; a reply that ended
        # unheard, not yet collected by frame(), is cut by this final too: the final predicts)
        self._stop_reply(superseded=True)
        remember(self.history, Turn("user", text, start, end))
        self._turn += 1
        route, rules = explain_turn(text)
        self._emit(Meta({"type": "route", "turn": self._turn, "route": route, "rules": rules, "t_user_end": end,
                         "t": self.clock.now()}))
        if route == "structured" and self.cfg.hybrid_routing:
            self.routed_turns += 1
            tid = self._turn
            labels = {"turn": tid, "route": "structured"}
            self.reply = ReplyPipeline(self.parts, metric=lambda n, v, extra: self._metric(n, v, {**labels, **extra}))
            self.reply.start(self._prompt_fn(self.history), t_user_end=end, turn_id=tid)
        return route

    def on_agent_text(self, piece: str, t: float) -> None:
        self.parts.text_sent(piece)  # (the session sends it: a routed reply after it starts a new word)
        if self.reply is not None and self.reply.active:
            return  # the front-end is muted: its words are not heard
        add_agent_text(self.history, piece, t)  # (bounded: kame.backend.prompt)

    def on_vad(self, events: Sequence, t: float, in_speech: bool, last_voice: float | None = None) -> None:
        """VAD events of one frame ending at ``t``; ``last_voice`` = end of the latest chunk the
        VAD heard as speech (None: not known, then ``t`` while in speech)."""
        self._speech.add(events)
        if last_voice is not None or in_speech:
            self._last_voice = t if last_voice is None else last_voice
        rp = self.reply
        if rp is None or not rp.active or not in_speech:
            return
        # only voice heard since the reply started counts (the cascade session's rule)
        heard = voice_heard_since(rp.t_started, self._speech.open_start, self._last_voice)
        if barges_in(heard, self.cfg.barge_in_min_speech):
            self._emit(Meta({"type": "barge_in", "turn": rp.turn_id, "t": t, "heard": rp.spoken_text}))
            self._stop_reply()

    # ---- output -----------------------------------------------------------------------
    def frame(self, front_end_pcm: np.ndarray) -> np.ndarray:
        """The 80 ms frame to send: the routed reply's audio while it is active, else the front-end's."""
        rp = self.reply
        if rp is None:
            return front_end_pcm
        pcm = rp.pull_frame()
        if pcm is None and not rp.active:
            self._stop_reply()
            return front_end_pcm
        return pcm if pcm is not None else np.zeros_like(front_end_pcm)

    @property
    def active(self) -> bool:
        return self.reply is not None and self.reply.active

    @property
    def stats(self):
        """Its replies' counts (ReplyParts.stats: wait_llm_loading), which the tandem session's
        "stats" Meta carries."""
        return self.parts.stats

    async def aclose(self) -> None:
        self._stop_reply()

    def _stop_reply(self, superseded: bool = False) -> None:
        """Commit the routed reply's agent turn. ``superseded``: a new final cuts it (on_heard is
        told it was interrupted even if it had ended unheard a moment before: that final, not
        the unheard question, is what the oracle answers next)."""
        rp, self.reply = self.reply, None
        if rp is None:
            return
        interrupted = rp.active
        rp.cancel()
        # what was heard: all of the reply, unless a barge-in or a failed LLM/TTS cut it (as the cascade's)
        text = (rp.spoken_text if interrupted or rp.failed else rp.text).strip()
        if text:
            remember(self.history, Turn("agent", text, rp.t_started, self.clock.now(), {"routed": True}))
        self._emit(Meta({"type": "agent_turn", "text": text, "reply": rp.text, "interrupted": interrupted,
                         "failed": rp.failed, "turn": rp.turn_id, "route": "structured", "t": self.clock.now()}))
        if self._on_heard is not None:  # (e.g. the oracle's conversation: "" puts the question back there)
            try:
                self._on_heard(text, self.clock.now(), interrupted or superseded)
            except Exception:  # noqa: BLE001 - the router's own state is settled; its callback's failure is logged
                log.exception("session %s: hybrid routing's on_heard callback failed", self.session_id)

    def _metric(self, name: str, value: float, labels: dict) -> None:
        m = Metric(name, float(value), self.clock.now(), self.session_id, {"mode": "hybrid", **labels})
        self._sink(m)
        self._emit(Meta({"type": "metric", **m.to_json()}))
