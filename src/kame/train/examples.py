"""A training dialogue (kame.train.data) -> the tensors LMModel.forward takes (docs/training.md).

    codes, oracle = training_example(dialogue, codec, tokenizer, cfg)   # [K, T], [T]
    codes, oracle = collate([ex1, ex2], cfg)                             # [B, K, T], [B, T] (right-padded)
    out = model(codes, oracle=oracle)

Layout of ``codes`` (LMModel.forward's): row 0 the agent's inner-monologue text stream
(``text_stream`` of its words), rows 1..dep_q the agent's codec codes of frame f, the other rows
the user's codes of frame f + 1 (the stepper reads user frame f + 1 at the step after it made
frame f); the last column's user codes are -1 (no such frame). ``oracle[t]`` is the token the
stepper's OracleFeed gives at step t for the dialogue's events (kame.model.stepper.oracle_timeline,
the feed's own rules).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import torch

from .codes import encode_dialogue, load_codes
from .data import DataError, Dialogue, OracleEvent, Word, frame_of


@dataclass(frozen=True)
class StreamIds:
    """The special ids of the text and oracle streams (a front-end config's)."""

    pad: int  # existing_text_padding_id: nothing said this frame (Moshi: 3)
    end_pad: int  # existing_text_end_padding_id: a word starts next frame (Moshi: 0)
    start: int  # the oracle's start id (text_card)
    text_card: int  # text ids are in [0, text_card)


def stream_ids(cfg) -> StreamIds:
    return StreamIds(cfg.existing_text_padding_id, cfg.existing_text_end_padding_id, cfg.text_card, cfg.text_card)


def tokenizer_sha256(tokenizer) -> str:
    """The sha256 of a TextTokenizer's model (= its .model file's sha256, as config.json's
    kame.tokenizer_sha256 records it)."""
    sha = getattr(tokenizer, "_kame_sha256", None)
    if sha is None:
        sha = hashlib.sha256(tokenizer.sp.serialized_model_proto()).hexdigest()
        tokenizer._kame_sha256 = sha
    return sha


def text_stream(words: Sequence[Word | Mapping], T: int, tokenizer, ids: StreamIds) -> torch.Tensor:
    """One speaker's words with times -> the [T] per-frame text stream (Moshi's inner monologue).

    Each word is encoded on its own (kame.backend.tokenizer: as Moshi's word-aligned data) and its
    tokens go one per frame from the frame of its start (``frame_of``); a word whose frame is still
    taken by the previous word's tokens starts right after them (shifted, no token dropped; Moshi's
    interleaver would cut the previous word). The frame before a word's first token becomes the
    end-of-padding id when it is padding (so a word straight after another gets none, as in
    Moshi); every other frame is padding. Pieces equal to the pad or end-of-padding id (<unk> is
    Moshi's end-of-padding id 0) are left out: the model would read them as padding. Tokens that
    would fall at frame T or later are dropped: the dialogue ends there, as its audio does."""
    out = [ids.pad] * T
    free, last = 0, float("-inf")  # first frame not taken; previous word's start
    for i, w in enumerate(words):
        word, start = (w.word, w.start) if isinstance(w, Word) else (w["word"], w["start"])
        if start < last:
            raise DataError(f"text_stream: word {i} ({word!r}) starts at {start:g} s, before the previous word "
                            f"({last:g} s): sort the words by start")
        last = start
        toks = [t for t in tokenizer.encode_words([word]) if t not in (ids.pad, ids.end_pad)]
        bad = [t for t in toks if not 0 <= t < ids.text_card]
        if bad:
            raise DataError(f"text_stream: word {word!r} has token ids {bad} outside the text vocabulary [0, "
                            f"{ids.text_card}): the tokenizer ({tokenizer.vocab_size} pieces) is not the "
                            f"front-end's (text_card {ids.text_card})")
        f = max(frame_of(start), free)
        if not toks or f >= T:
            continue
        if f > 0 and out[f - 1] == ids.pad:
            out[f - 1] = ids.end_pad
        for tok in toks[: T - f]:
            out[f] = tok
            f += 1
        free = f
    return torch.tensor(out, dtype=torch.long)


def training_example(d: Dialogue, codec, tokenizer, cfg, *, use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [K = n_q + 1, T], oracle [T]) of dialogue ``d`` for a front-end of config ``cfg``,
    as LMModel.forward takes them (one row of its batch; ``collate`` makes a batch). ``codec``
    is set to code with the codebooks the front-end reads and writes, as the runtime sets it
    (kame.runtime.frontend); its codes come from FOLDER/codes.npz when ``use_cache`` and one
    exists (a stale one is a DataError), else from encoding the audio. ``tokenizer`` makes the
    agent's text stream and must be the one the oracle's ids were made with (tokenizer_sha256;
    else retokenize_oracle first). On a config without an oracle stream, pass oracle=None to the
    model instead of the returned timeline."""
    from ..model.stepper import oracle_ids, oracle_timeline
    from ..runtime.frontend import fit_codec  # the runtime's rule: the same codebooks as at inference

    fit_codec(codec, type(codec).__name__, cfg, "the training config")
    ids = stream_ids(cfg)
    T = d.frames
    _check_oracle(d, tokenizer, ids)
    codes = load_codes(d, codec) if use_cache else None
    user, agent = codes if codes is not None else encode_dialogue(d, codec)
    out = torch.full((cfg.num_codebooks, T), -1, dtype=torch.long)
    out[0] = text_stream(d.words_of("agent"), T, tokenizer, ids)
    out[1: 1 + cfg.dep_q] = agent[: cfg.dep_q]
    if cfg.n_user_q:
        out[1 + cfg.dep_q:, : T - 1] = user[: cfg.n_user_q, 1:]  # user frame f + 1 beside agent frame f
    oracle = oracle_timeline(d.timeline_events(), T, **oracle_ids(cfg))
    return out, oracle


def _check_oracle(d: Dialogue, tokenizer, ids: StreamIds) -> None:
    appended = [t for ev in d.oracle if ev.event == "append" for t in ev.ids]
    if not appended:
        return
    if d.tokenizer_sha256 != tokenizer_sha256(tokenizer):
        where = f" ({d.folder})" if d.folder else ""
        raise DataError(f"dialogue{where}: its oracle ids were made with tokenizer sha256 {d.tokenizer_sha256}, this "
                        f"tokenizer's is {tokenizer_sha256(tokenizer)}: re-encode them "
                        f"(kame.train.examples.retokenize_oracle) or use that tokenizer")
    bad = sorted({t for t in appended if t >= ids.text_card})
    if bad:
        raise DataError(f"dialogue: oracle ids {bad[:8]} outside the front-end's text vocabulary [0, {ids.text_card}): "
                        f"its text_card is below the tokenizer's {tokenizer.vocab_size} pieces")


def collate(examples: Sequence[tuple[torch.Tensor, torch.Tensor]], cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """training_example outputs -> (codes [B, K, T_max], oracle [B, T_max]), right-padded: codes -1
    (no target, embeds to zero), oracle pad (what the feed gives with nothing to say). Causal
    attention keeps the padding from changing the real frames' logits. The last delays[k] frames
    of each stream k are -1 too: the forward predicts them at steps past the example's end, which
    a shorter row would get from its padding (hearing no user there); so a row has the targets
    it has alone. (Those codes are read only at such steps.)"""
    if not examples:
        raise DataError("collate: no examples")
    K = examples[0][0].shape[0]
    T = max(c.shape[1] for c, _ in examples)
    codes = torch.full((len(examples), K, T), -1, dtype=torch.long)
    oracle = torch.full((len(examples), T), cfg.existing_text_padding_id, dtype=torch.long)
    for b, (c, o) in enumerate(examples):
        if c.shape[0] != K or o.shape != (c.shape[1],):
            raise DataError(f"collate: example {b} has codes {tuple(c.shape)} and oracle {tuple(o.shape)}, expected "
                            f"[{K}, T] and [T]")
        n = c.shape[1]
        codes[b, :, :n] = c
        for k, d in enumerate(cfg.delays):
            codes[b, k, max(0, n - d): n] = -1
        oracle[b, :n] = o
    return codes, oracle


def retokenize_oracle(d: Dialogue, tokenizer) -> Dialogue:
    """``d`` with its oracle's ids re-encoded from their text by ``tokenizer``, as the back-end
    streams a prediction: each append's text through one IncrementalEncoder per prediction (a word
    cut between appends is emitted once complete), the rest flushed into its last append."""
    events: list[OracleEvent] = []
    enc, last = None, None  # the open prediction's encoder and last append (index in events)

    def close() -> None:
        if enc is not None and last is not None:
            events[last] = replace(events[last], ids=events[last].ids + enc.flush())

    for i, ev in enumerate(d.oracle):
        if ev.event == "reset":
            close()
            enc, last = tokenizer.incremental(), None
            events.append(ev)
            continue
        if ev.text is None:
            raise DataError(f"retokenize_oracle: oracle event {i} (append at frame {ev.frame}) has no text to re-encode")
        if enc is None:  # an append with no prediction open starts one (as the feed does)
            enc = tokenizer.incremental()
        events.append(replace(ev, ids=enc.push(ev.text)))
        last = len(events) - 1
    close()
    return replace(d, oracle=events, tokenizer_sha256=tokenizer_sha256(tokenizer))
