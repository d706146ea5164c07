"""The LLM judge of ``kame eval mtbench``: MT-Bench's single-answer grading (a 1-10 rating given
as "[[rating]]"), in kame's own wording, adapted to spoken answers (the answer is what the agent
said, not formatted text).

    messages = judge_messages(question, answer, reference=ref, history=[(q1, a1)])
    reply = await ask_judge(llm, messages, timeout_s=120)
    rating = parse_rating(reply)        # 1.0 .. 10.0, or None (unparseable: counted, never guessed)
"""

from __future__ import annotations

import asyncio
import re

from ..backend.types import ChatMessage

SYSTEM = (
    "You are an impartial judge of an AI voice assistant. A user asked a question out loud and the "
    "assistant answered out loud; you read a transcript of the assistant's spoken answer, so do not "
    "penalise missing formatting, lists or symbols, only what was said. Judge how helpful, relevant, "
    "accurate, deep and detailed the answer is.")
_REFERENCE_NOTE = ("A reference answer is given: compare the assistant's answer with it, find and "
                   "correct any mistakes in the assistant's answer, and weigh correctness first. ")
_INSTRUCTION = ("First explain your assessment briefly and objectively. Then give a rating from 1 "
                "(worst) to 10 (best), written exactly as [[rating]], for example: \"Rating: [[6]]\".")


def judge_messages(question: str, answer: str, *, reference: str | None = None,
                   history: list[tuple[str, str]] = ()) -> list[ChatMessage]:
    """The judge's request: grade ``answer`` to ``question``. ``history``: the earlier turns
    (question, answer) of the same conversation (MT-Bench's second turn is graded with its first
    as context: only the last answer is rated)."""
    parts = []
    for i, (q, a) in enumerate(history, 1):
        parts += [f"[User, turn {i}]\n{q}", f"[Assistant's answer, turn {i}]\n{a or '(no answer)'}"]
    n = len(history) + 1
    parts.append(f"[User, turn {n}]\n{question}")
    if reference:
        parts.append(f"[Reference answer, turn {n}]\n{reference}")
    parts.append(f"[Assistant's answer, turn {n}: the one to rate]\n{answer or '(the assistant said nothing)'}")
    which = "the assistant's answer" + (f" to turn {n} only (the earlier turns are context)" if history else "")
    task = f"Rate {which}. " + (_REFERENCE_NOTE if reference else "") + _INSTRUCTION
    return [ChatMessage("system", SYSTEM), ChatMessage("user", "\n\n".join(parts) + "\n\n" + task)]


_DOUBLE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
# fallbacks a judge that ignored the format may use: "[7]", "Rating: 7", "7/10", "7 out of 10"
_LOOSE = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]|rating\s*(?:is|of)?\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)"
                    r"|(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.IGNORECASE)


def parse_rating(reply: str) -> float | None:
    """The rating in a judge's reply: the last "[[n]]" in it, else the last "[n]", "Rating: n",
    "n/10" or "n out of 10"; None when there is none, or it is outside 1..10."""
    hits = _DOUBLE.findall(reply or "")
    if not hits:
        hits = [next(g for g in m.groups() if g) for m in _LOOSE.finditer(reply or "")]
    if not hits:
        return None
    value = float(hits[-1])
    return value if 1.0 <= value <= 10.0 else None


async def ask_judge(llm, messages: list[ChatMessage], *, timeout_s: float, max_tokens: int = 1024) -> str:
    """The judge's whole reply (deterministic: temperature 0). Raises asyncio.TimeoutError past
    ``timeout_s``, and whatever the LLM raises."""
    async def collect() -> str:
        pieces = []
        async for piece in llm.stream_chat(messages, max_tokens=max_tokens, temperature=0.0):
            pieces.append(piece)
        return "".join(pieces)

    return await asyncio.wait_for(collect(), timeout_s)
