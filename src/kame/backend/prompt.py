"""The oracle's view of the conversation and the prompt built from it (as SakanaAI/kame does).

    conv = Conversation()
    conv.on_transcript(tr)                 # partials replace the pending line; finals commit it
    conv.on_agent_text(" Paris", t)        # the front-end's own spoken words (inner monologue)
    messages = build_messages(conv, PromptConfig(), knowledge=kb)

gives two messages: the system prompt (KAME's: a suitable next response, at most 30 words,
spoken style, no symbols; plus a persona and retrieved notes if any) and one user message with
the conversation as ``user: …`` / ``agent: …`` lines, the pending partial transcript last.

Small models answer that by continuing the conversation: after their reply they write the
user's next line ("\\nuser: thanks") or another agent line. ``ReplyGuard`` cuts a streamed reply
there, for the oracle producer and the cascade alike:

    guard = ReplyGuard(PromptConfig())
    for piece in llm_stream:
        keep = guard.feed(piece)   # the text to use now ("" while a possible label is held)
        if guard.ended:            # the reply is over: stop reading (close) the stream
            break
    keep = guard.flush()           # at the end of the stream: the text still held
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import ConfigError
from .types import ChatMessage, Transcript, Turn

DEFAULT_SYSTEM_PROMPT = (
    "You are the voice of a helpful assistant in a live spoken conversation. Below is the "
    "conversation so far; the user's last line may still be unfinished. Write a suitable next "
    "response for the agent, at most {max_words} words, in a natural spoken style, with no "
    "symbols, lists, markdown or emoji. Reply with the response only."
)

# The prompt's conversation lines hold at most ~4000 characters in all (~1k tokens of English for
# SmolLM2): the embedded LLM's first token waits for its prefill of the whole prompt (on a loaded
# 2-core machine: 1.5k tokens 5.6 s; 6k tokens, the 40 x 600-character lines alone, 40 s).
HISTORY_CHARS = 4000


@dataclass
class PromptConfig:
    system_prompt: str = ""  # "" = DEFAULT_SYSTEM_PROMPT; "{max_words}" is filled in
    persona: str = ""  # extra instructions appended to the system prompt
    max_words: int = 30
    user_label: str = "user"
    agent_label: str = "agent"
    max_lines: int = 40  # keep the last N conversation lines
    history_chars: int = HISTORY_CHARS  # ... and at most this many characters of them (0 = no limit)
    knowledge_k: int = 3  # retrieved chunks per prediction (if a knowledge base is given)
    knowledge_query_words: int = 40  # the query is the last N user words


KEEP_TURNS = 100  # a Conversation keeps at least the last 100 turns (2.5 x the default max_lines)
MAX_LINE_CHARS = 600  # a turn's text keeps its last ~600 characters (whole words, ~100 words)


def _tail(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text``'s last ``limit`` characters, from a word start (its older words are dropped)."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    i = cut.find(" ")
    return cut[i:] if i >= 0 else cut


def remember(turns: list[Turn], turn: Turn, keep: int = KEEP_TURNS) -> list[Turn]:
    """Append ``turn``, keeping the newest ``keep`` to 2 x ``keep`` turns (dropped in chunks:
    rarely, O(1) per turn): a history for sessions of hours (Conversation, the cascade's).
    Returns the turns dropped."""
    turns.append(turn)
    if len(turns) < 2 * keep:
        return []
    dropped = turns[:-keep]
    del turns[:-keep]
    return dropped


def add_agent_text(turns: list[Turn], piece: str, t: float, keep: int = KEEP_TURNS) -> list[Turn]:
    """The agent's next words, ``piece``, spoken at ``t``: they extend its last turn (its newest
    MAX_LINE_CHARS only: an agent that talks for minutes makes one ever-growing line), else
    start a turn (not for blank text). Returns the turns dropped (remember)."""
    last = turns[-1] if turns else None
    if last is not None and last.speaker == "agent":
        last.text = _tail(last.text + piece)
        last.end = t
    elif piece.strip():
        return remember(turns, Turn("agent", _tail(piece.lstrip()), t, t), keep)
    return []


class Conversation:
    """Committed turns + the pending partial user transcript, in arrival order.

    Bounded for sessions of hours: only the newest turns are kept (between ``keep_turns`` and
    twice that; the prompt uses the last ``max_lines`` that fit in ``history_chars``), and a turn's text keeps its last
    MAX_LINE_CHARS characters (an agent that talks for minutes with no user final in between
    makes one ever-growing line: the prompt would overflow a small model's context). So
    ``user_words()`` is the words of the kept turns: when old turns are dropped, its list loses
    its front (``dropped_user_words`` says how many words so far, for a reader comparing it with
    an older copy).
    """

    def __init__(self, keep_turns: int = KEEP_TURNS) -> None:
        self.turns: list[Turn] = []
        self.pending: Transcript | None = None
        self.keep_turns = max(2, int(keep_turns))  # (2: the newest user turn is always among them)
        self.dropped_user_words = 0  # user words of the turns dropped so far (user_words() lost its front)

    def _add(self, turn: Turn) -> None:
        self._count(remember(self.turns, turn, self.keep_turns))

    def _count(self, dropped: list[Turn]) -> None:
        self.dropped_user_words += sum(len(t.text.split()) for t in dropped if t.speaker == "user")

    def on_transcript(self, tr: Transcript, routed: bool = False) -> None:
        """A partial replaces the pending line; a final commits it as a user turn (its own: finals
        are never merged). ``routed``: another path answers that final (hybrid routing): its turn
        is marked ``extra["routed"]`` and left out of the prompt until an agent line follows it
        (a prediction made meanwhile would answer it too); ``user_words`` keeps its words."""
        if tr.final:
            self.pending = None
            if tr.words:
                w = tr.words
                self._add(Turn("user", _tail(tr.text), w[0].start, w[-1].end, {"routed": True} if routed else {}))
        else:
            self.pending = tr if tr.words else None

    def on_agent_text(self, piece: str, t: float) -> None:
        piece = piece.replace("\u2581", " ")
        if not piece:
            return
        self._count(add_agent_text(self.turns, piece, t, self.keep_turns))

    def user_words(self, prompted: bool = False) -> list[str]:
        """The user words of the kept turns + the pending ones, lower-cased, for change detection.
        ``prompted``: of the turns the prompt shows only (not a routed turn left out until its
        answer is heard): the knowledge query's."""
        turns = reversed(list(self._prompted())) if prompted else self.turns
        out = [w.lower() for t in turns if t.speaker == "user" for w in t.text.split()]
        if self.pending is not None:
            # (split as a committed turn's text is: a word "new york", from "new\x1cyork", is two)
            out += [x.lower() for w in self.pending.words for x in w.text.split()]
        return out

    def unroute(self) -> int:
        """The routed user turns no agent line follows (their answer was not heard: cut, failed or
        empty) back into the prompt (no longer marked routed). Returns how many."""
        n = 0
        for t in reversed(self.turns):
            if t.speaker == "agent" and t.text.strip():
                break
            if t.speaker == "user" and t.extra.get("routed"):
                t.extra = {k: v for k, v in t.extra.items() if k != "routed"}
                n += 1
        return n

    def _prompted(self) -> Iterator[Turn]:
        """The kept turns that go into the prompt, newest first: all but a routed user turn
        no agent line follows yet (its answer, from the other path, is not heard yet)."""
        answered = False
        for t in reversed(self.turns):
            if t.speaker == "agent":
                answered = answered or bool(t.text.strip())
            elif not answered and t.extra.get("routed"):
                continue
            yield t

    def last_user_word_end(self) -> float | None:
        if self.pending is not None and self.pending.words:
            return self.pending.words[-1].end
        for t in self._prompted():
            if t.speaker == "user":
                return t.end
        return None

    def lines(self, cfg: PromptConfig) -> list[str]:
        """The prompt's ``label: text`` lines, oldest first: the newest ``cfg.max_lines`` lines
        that fit in ``cfg.history_chars`` characters in all (newline-joined), kept whole (the
        older ones are dropped); a newest line longer than that alone keeps its label and its
        text's last characters (_tail: from a word start, if it has a space)."""
        label = {"user": cfg.user_label, "agent": cfg.agent_label}
        n, budget = cfg.max_lines, cfg.history_chars
        # (the pending partial's text on one line too: was as the STT gave it, so a word holding a newline
        # and "agent:" made a line the LLM took for the agent's)
        newest = [] if self.pending is None else [(cfg.user_label, " ".join(self.pending.text.split()))]
        turns = ((label[t.speaker], " ".join(t.text.split())) for t in self._prompted() if t.text.strip())
        out: list[str] = []
        used = -1  # characters of "\n".join(out)
        for who, text in itertools.chain(newest, turns):  # newest first: only the kept are formatted
            if n > 0 and len(out) >= n:
                break
            line = f"{who}: {text}"
            if budget > 0 and used + 1 + len(line) > budget:
                if not out:  # the newest line alone is too long: its last characters
                    room = max(1, budget - len(who) - 2)
                    out.append(f"{who}: {_tail(text, room).lstrip()}")
                break
            out.append(line)
            used += 1 + len(line)
        out.reverse()
        return out


def build_messages(conv: Conversation, cfg: PromptConfig, knowledge=None) -> list[ChatMessage]:
    system = (cfg.system_prompt or DEFAULT_SYSTEM_PROMPT).replace("{max_words}", str(cfg.max_words))
    if cfg.persona:
        system += "\n" + cfg.persona
    if knowledge is not None and cfg.knowledge_k > 0:
        words, n = conv.user_words(prompted=True), cfg.knowledge_query_words
        query = " ".join(words[-n:] if n > 0 else words)  # (n <= 0: all of them)
        hits = knowledge.search(query, k=cfg.knowledge_k) if query else []
        if hits:
            notes = "\n".join(f"- ({c.source}) {c.text}" for _, c in hits)
            system += "\nUse these notes if they are relevant:\n" + notes
    return [ChatMessage("system", system), ChatMessage("user", "\n".join(conv.lines(cfg)))]


# A speaker label's markup, here and in the training oracle's clean_reply (kame.train.oracle_sim builds
# its label pattern from these): the front-end is trained on the text it gets live.
LABEL_DECOR = " \t*_#>-•\"'“‘"  # markdown or quotes before a label at a line's start ("**User:", "- user:")
LABEL_CLOSE = "*_"  # markdown around a label's ':' ("**Agent:** Paris", "**Agent**:")
_CLOSING = re.compile(rf"^[{re.escape(LABEL_CLOSE)}]*\s*")  # what closes a label's markdown after its ':'


class ReplyGuard:
    """Cuts a streamed LLM reply where the model goes on writing the conversation (module doc).

    Rules (labels from the PromptConfig, compared case-insensitively, spaces allowed before ':',
    markdown around a label too: "**User:**", "- user:", "> *User*:", as clean_reply allows for in
    training, kame.train.oracle_sim):
    - the reply's first line may start with the agent label ("agent: Paris …"): the label and the
      reply's leading whitespace are removed;
    - a line that starts with the user label or the agent label and ':' ends the reply: ``ended``
      becomes True and ``dropped`` holds the text from that line's newline on (for the first line
      with the user label: all of it), plus everything fed later; nothing of it is returned;
    - a label anywhere else ("The user: a person.") is ordinary text.
    Text at a line start that may still become a label ("\\nus") is held until it is decided.
    """

    def __init__(self, cfg: PromptConfig | None = None) -> None:
        cfg = cfg or PromptConfig()
        for name in ("user_label", "agent_label"):
            if not getattr(cfg, name).strip():
                raise ConfigError(f"PromptConfig.{name} must not be empty (the prompt's lines are '<label>: text')")
        self._user, self._agent = cfg.user_label.strip().lower(), cfg.agent_label.strip().lower()
        self._held = ""  # undecided text; when non-empty and at a line start, it starts there
        self._line_start = True  # the next text fed starts a line (the reply's first at first)
        self._first = True  # nothing kept yet: still on the reply's first line
        self._labelled = False  # the first line's agent label was dropped
        self.ended = False
        self.dropped = ""

    def feed(self, piece: str) -> str:
        """The text to keep of ``piece`` (and of text held before); "" once ``ended``."""
        if self.ended:
            self.dropped += piece
            return ""
        buf, self._held = self._held + piece, ""
        out: list[str] = []
        while buf:
            if self._line_start:
                label = self._label_at_line_start(buf)
                if label is None:  # may still become a label: wait for more text
                    self._held = buf
                    break
                if label == "user" or (label == "agent" and not self._first):
                    self.ended, self.dropped = True, buf
                    break
                ws = len(buf) - len(buf.lstrip())
                if label == "agent":  # the reply labelled as the agent's line: drop the label
                    rest = buf[buf.index(":", ws) + 1 :]
                    buf, self._labelled = _CLOSING.sub("", rest), True  # ("**Agent:** Paris": its "**" too)
                    if not buf:
                        break  # still at the start: leading whitespace is dropped as it comes
                elif self._first:
                    if self._labelled:  # ("**Agent:" and "** Paris" in two pieces)
                        buf = _CLOSING.sub("", buf)
                    buf = buf.lstrip()  # the reply's leading whitespace
                else:
                    out.append(buf[:ws])  # the newline (and indentation) before an ordinary line
                    buf = buf[ws:]
                self._line_start = self._first = False
            nl = buf.find("\n")
            if nl < 0:
                out.append(buf)
                break
            out.append(buf[:nl])
            buf, self._line_start = buf[nl:], True
        return "".join(out)

    def flush(self) -> str:
        """At the end of the stream: the text still held (it did not become a label)."""
        held, self._held = self._held, ""
        if self.ended or (self._first and not held.strip()):
            return ""
        return held.lstrip() if self._first else held

    def _label_at_line_start(self, buf: str) -> str | bool | None:
        """"user"/"agent" if ``buf`` starts (after whitespace) with that label and ':', False if
        it cannot, None if it still may (more text needed)."""
        s = buf.lstrip().lower().lstrip(LABEL_DECOR)
        if not s:
            return None
        for name, label in (("user", self._user), ("agent", self._agent)):
            if s.startswith(label):
                rest = s[len(label) :].lstrip(" \t" + LABEL_CLOSE)
                if not rest:
                    return None
                if rest[0] == ":":
                    return name
            elif label.startswith(s):
                return None
        return False
