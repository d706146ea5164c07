"""The oracle's view of the conversation and the prompt built from it (as SakanaAI/kame does).

    conv = Conversation()
    conv.on_transcript(tr)                 # partials replace the pending line; finals commit it
    conv.on_agent_text(" Paris", t)        # the front-end's own spoken words (inner monologue)
    messages = build_messages(conv, PromptConfig(), knowledge=kb)

gives two messages: the system prompt (KAME's: a suitable next response, at most 30 words,
spoken style, no symbols; plus a persona and retrieved notes if any) and one user message with
the conversation as ``user: …`` / ``agent: …`` lines, the pending partial transcript last.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import ChatMessage, Transcript, Turn

DEFAULT_SYSTEM_PROMPT = (
    "You are the voice of a helpful assistant in a live spoken conversation. Below is the "
    "conversation so far; the user's last line may still be unfinished. Write a suitable next "
    "response for the agent, at most {max_words} words, in a natural spoken style, with no "
    "symbols, lists, markdown or emoji. Reply with the response only."
)


@dataclass
class PromptConfig:
    system_prompt: str = ""  # "" = DEFAULT_SYSTEM_PROMPT; "{max_words}" is filled in
    persona: str = ""  # extra instructions appended to the system prompt
    max_words: int = 30
    user_label: str = "user"
    agent_label: str = "agent"
    max_lines: int = 40  # keep the last N conversation lines
    knowledge_k: int = 3  # retrieved chunks per prediction (if a knowledge base is given)
    knowledge_query_words: int = 40  # the query is the last N user words


class Conversation:
    """Committed turns + the pending partial user transcript, in arrival order."""

    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.pending: Transcript | None = None

    def on_transcript(self, tr: Transcript) -> None:
        if tr.final:
            self.pending = None
            if tr.words:
                w = tr.words
                self.turns.append(Turn("user", tr.text, w[0].start, w[-1].end))
        else:
            self.pending = tr if tr.words else None

    def on_agent_text(self, piece: str, t: float) -> None:
        piece = piece.replace("\u2581", " ")
        if not piece:
            return
        last = self.turns[-1] if self.turns else None
        if last is not None and last.speaker == "agent":
            last.text += piece
            last.end = t
        else:
            self.turns.append(Turn("agent", piece, t, t))

    def user_words(self) -> list[str]:
        """All user words so far (committed + pending), lower-cased, for change detection."""
        out = [w.lower() for t in self.turns if t.speaker == "user" for w in t.text.split()]
        if self.pending is not None:
            out += [w.text.lower() for w in self.pending.words]
        return out

    def last_user_word_end(self) -> float | None:
        if self.pending is not None and self.pending.words:
            return self.pending.words[-1].end
        for t in reversed(self.turns):
            if t.speaker == "user":
                return t.end
        return None

    def lines(self, cfg: PromptConfig) -> list[str]:
        label = {"user": cfg.user_label, "agent": cfg.agent_label}
        out = [f"{label[t.speaker]}: {' '.join(t.text.split())}" for t in self.turns if t.text.strip()]
        if self.pending is not None:
            out.append(f"{cfg.user_label}: {self.pending.text}")
        return out[-cfg.max_lines :]


def build_messages(conv: Conversation, cfg: PromptConfig, knowledge=None) -> list[ChatMessage]:
    system = (cfg.system_prompt or DEFAULT_SYSTEM_PROMPT).replace("{max_words}", str(cfg.max_words))
    if cfg.persona:
        system += "\n" + cfg.persona
    if knowledge is not None and cfg.knowledge_k > 0:
        query = " ".join(conv.user_words()[-cfg.knowledge_query_words :])
        hits = knowledge.search(query, k=cfg.knowledge_k) if query else []
        if hits:
            notes = "\n".join(f"- ({c.source}) {c.text}" for _, c in hits)
            system += "\nUse these notes if they are relevant:\n" + notes
    return [ChatMessage("system", system), ChatMessage("user", "\n".join(conv.lines(cfg)))]
