"""Fitting a chat prompt into an LLM's context (kame.backend.llm.embedded's child uses it):
fit_context drops the oldest messages, keeping the system message and the last user message (and
roles alternating), then cuts the start of that user message, so that at least
min(max_tokens, MIN_REPLY_TOKENS) tokens of the context are left for the reply; PromptTooLong when
the system message alone leaves no room. Needs only a tokenizer with a chat template
(``tok.apply_chat_template``), no model.
"""

from __future__ import annotations

import re


class PromptTooLong(Exception):
    """The prompt does not fit in the model's context, even cut down to its system message."""


MIN_REPLY_TOKENS = 64  # context kept free for the reply: a longer max_tokens is cut to what is left


def _tokenize(tok, messages: list[dict]):
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return inputs, int(inputs["input_ids"].shape[1])


def _first_not_user(messages: list[dict], keep: dict) -> int:
    """Index of the first message after the system message if it is not a user message (nor
    ``keep``), else -1: a prompt must not start with the assistant (Llama-2, Mistral and Gemma's
    templates raise TemplateError)."""
    first = 1 if messages and messages[0]["role"] == "system" else 0
    if first < len(messages) and messages[first]["role"] != "user" and messages[first] is not keep:
        return first
    return -1


def _cut_start(tok, messages: list[dict], budget: int):
    """(messages, inputs, n) with the START of the last message's text cut (its oldest lines: the
    current turn at its end stays) so that the prompt has at most ``budget`` tokens, exactly (a
    binary search over where the text starts, tokenized with the chat template); the cut is moved
    to the next word start when one is near. None if even an empty last message is too long."""
    text = messages[-1]["content"]

    def tried(start: int):
        cut = messages[:-1] + [dict(messages[-1], content=text[start:])]
        inputs, n = _tokenize(tok, cut)
        return (cut, inputs, n) if n <= budget else None

    best = tried(len(text))
    if best is None:
        return None
    lo, hi = 0, len(text)  # text[lo:] too long (the caller's); text[hi:] fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        fits = tried(mid)
        if fits is None:
            lo = mid
        else:
            hi, best = mid, fits
    word = re.compile(r"\s\S").search(text, hi - 1) if hi > 0 and not text[hi - 1].isspace() else None
    if word is not None and word.end() - 1 - hi <= 40:  # (text without spaces, such as Chinese: cut as is)
        best = tried(word.end() - 1) or best
    return best


def fit_context(tok, messages: list[dict], max_tokens: int, context: int):
    """(messages, inputs, their token count): ``messages`` tokenized with ``tok``'s chat template,
    cut to leave at least min(max_tokens, MIN_REPLY_TOKENS) of ``context`` for the reply (the
    caller generates at most context - n tokens). Past that, the oldest messages are dropped, but
    not the system message (first) nor the last user message; after each drop, messages before
    the first user message go too (roles keep alternating: a prompt starting with the assistant
    fails some chat templates). With only those two left, the start of the last user message is
    cut (kame's own prompts are [system, one user message] with the conversation oldest-first:
    the current turn at its end stays). Raises PromptTooLong if the system message alone leaves
    no room. ``context`` 0: not checked.
    (Was: a prompt past the context prefilled for over a minute, and the parent took the silence
    for a hung child and killed it; then the full max_tokens was set aside, so max_tokens >= 8192
    refused every prompt, and a long [system, user] prompt failed every turn of the session.)"""
    messages = list(messages)
    inputs, n = _tokenize(tok, messages)
    reserve = min(max(int(max_tokens), 1), MIN_REPLY_TOKENS)
    if context <= 0 or n + reserve <= context:
        return messages, inputs, n
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    keep = messages[last_user] if last_user >= 0 else None
    while n + reserve > context:
        first = 1 if messages and messages[0]["role"] == "system" else 0
        older = [i for i, m in enumerate(messages) if i >= first and m is not keep]
        if not older:
            break
        del messages[older[0]]
        while (i := _first_not_user(messages, keep)) >= 0:
            del messages[i]
        inputs, n = _tokenize(tok, messages)
    else:
        return messages, inputs, n
    fitted = _cut_start(tok, messages, context - reserve) if keep is not None else None
    if fitted is None:
        raise PromptTooLong(f"prompt {n} tokens > the embedded LLM's context {context} (less {reserve} for the "
                            "reply), and its system message alone leaves no room for the last user message: "
                            "shorten the system prompt (persona, knowledge notes)")
    return fitted
