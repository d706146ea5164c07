"""A training dialogue (kame.train.data) -> the tensors LMModel.forward takes (docs/data.md).

    codes, oracle = training_example(dialogue, codec, tokenizer, cfg)   # [K, T], [T]
    codes, oracle = collate([ex1, ex2], cfg)                             # [B, K, T], [B, T] (right-padded)
    out = model(codes, oracle=oracle)
    codes, oracle = collate(windows(*ex1, 750), cfg)                    # a long dialogue's 60 s windows [B, K, 750]

Layout of ``codes`` (LMModel.forward's): row 0 the agent's inner-monologue text stream
(``text_stream`` of its words), rows 1..dep_q the agent's codec codes of frame f, the other rows
the user's codes of frame f + 1 (the stepper reads user frame f + 1 at the step after it made
frame f); the last column's user codes are -1 (no such frame). ``oracle[t]`` is the token the
stepper's OracleFeed gives at step t for the dialogue's events (kame.model.stepper.oracle_timeline,
the feed's own rules).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import torch

from ..cliargs import counted
from .codes import encode_dialogue, load_codes
from .data import FRAME_RATE, META, DataError, Dialogue, OracleEvent, Word, frame_of, is_int

DRIFT_WARNING_S = 0.5  # training_example warns when a word's tokens start later than this after it
TEXT_CARD_FIX = ("use a front-end whose text_card >= the tokenizer's vocab_size (e.g. load_frontend('random:tiny', "
                 "text_card=4000) for kame's default tokenizer), or the tokenizer the front-end was trained with")


@dataclass(frozen=True)
class StreamIds:
    """The special ids of the text and oracle streams (a front-end config's)."""

    pad: int  # existing_text_padding_id: nothing said this frame (Moshi: 3)
    end_pad: int  # existing_text_end_padding_id: a word starts next frame (Moshi: 0)
    text_card: int  # text ids are in [0, text_card) (the oracle's start id is text_card: oracle_ids)

    def is_word(self, t: int) -> bool:
        """Whether text-stream id ``t`` is a word token: not a padding id, nor -1 (no target)."""
        return t >= 0 and t not in (self.pad, self.end_pad)


def stream_ids(cfg) -> StreamIds:
    return StreamIds(cfg.existing_text_padding_id, cfg.existing_text_end_padding_id, cfg.text_card)


@dataclass
class TextStream:
    """``text_stream_report``'s result: the stream and what the alignment could not keep."""

    ids: torch.Tensor  # [T]
    max_drift: int = 0  # the most frames a word's first token landed after its start frame
    drift_word: str | None = None  # that word
    drift_start: float = 0.0  # its start (s)
    dropped: int = 0  # tokens past frame T, left out
    dropped_words: list[str] = field(default_factory=list)  # the words they belong to
    lost: list[str] = field(default_factory=list)  # words with characters the tokenizer does not know


def text_stream(words: Sequence[Word | Mapping], T: int, tokenizer, ids: StreamIds) -> torch.Tensor:
    """One speaker's words with times -> the [T] per-frame text stream (Moshi's inner monologue).

    Each word is encoded on its own (kame.backend.tokenizer: as Moshi's word-aligned data) and its
    tokens go one per frame from the frame of its start (``frame_of``); a word whose frame is still
    taken by the previous word's tokens starts right after them (shifted, no token dropped; Moshi's
    interleaver would cut the previous word). The frame before a word's first token becomes the
    end-of-padding id when it is padding (so a word straight after another gets none, as in
    Moshi); every other frame is padding. Pieces equal to the pad or end-of-padding id (<unk> is
    Moshi's end-of-padding id 0) are left out: the model would read them as padding. Tokens that
    would fall at frame T or later are dropped: the dialogue ends there, as its audio does.
    ``text_stream_report`` says how far the shifts went and what was dropped."""
    return text_stream_report(words, T, tokenizer, ids).ids


def text_stream_report(words: Sequence[Word | Mapping], T: int, tokenizer, ids: StreamIds, *,
                       where: str = "text_stream") -> TextStream:
    """``text_stream`` and what it could not keep: the largest shift of a word behind its start
    (frames), the tokens dropped at the end, the words whose unknown characters were left out."""
    if not isinstance(ids, StreamIds):  # (was: AttributeError 'LMConfig' object has no attribute 'pad')
        raise TypeError(f"{where}: ids must be a StreamIds, the front-end's special ids: give stream_ids(cfg) of "
                        f"its config, not the {type(ids).__name__} itself")
    out = [ids.pad] * T
    rep = TextStream(torch.empty(0))
    free, last = 0, float("-inf")  # first frame not taken; previous word's start
    for i, w in enumerate(words):
        word, start = (w.word, w.start) if isinstance(w, Word) else (w["word"], w["start"])
        if start < last:
            raise DataError(f"{where}: word {i} ({word!r}) starts at {start:g} s, before the previous word "
                            f"({last:g} s): sort the words by start")
        last = start
        raw = tokenizer.encode_words([word])
        toks = [t for t in raw if t not in (ids.pad, ids.end_pad)]
        if len(toks) < len(raw):
            rep.lost.append(word)
        bad = [t for t in toks if not 0 <= t < ids.text_card]
        if bad:
            raise DataError(f"{where}: word {word!r} has token ids {bad} outside the text vocabulary [0, "
                            f"{ids.text_card}): the tokenizer ({tokenizer.vocab_size} pieces) is not the "
                            f"front-end's (text_card {ids.text_card}): {TEXT_CARD_FIX}")
        f = max(frame_of(start), free)
        if toks and f - frame_of(start) > rep.max_drift and frame_of(start) < T:
            rep.max_drift, rep.drift_word, rep.drift_start = f - frame_of(start), word, float(start)
        cut = len(toks) - max(0, min(len(toks), T - f))
        if cut:
            rep.dropped += cut
            rep.dropped_words.append(word)
        if not toks or f >= T:
            continue
        if f > 0 and out[f - 1] == ids.pad:
            out[f - 1] = ids.end_pad
        for tok in toks[: T - f]:
            out[f] = tok
            f += 1
        free = f
    rep.ids = torch.tensor(out, dtype=torch.long)
    return rep


def training_example(d: Dialogue, codec, tokenizer, cfg, *, use_cache: bool = True,
                     drift_warning_s: float = DRIFT_WARNING_S) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [K = n_q + 1, T], oracle [T]) of dialogue ``d`` for a front-end of config ``cfg``,
    as LMModel.forward takes them (one row of its batch; ``collate`` makes a batch). ``codec``
    is set to code with the codebooks the front-end reads and writes, as the runtime sets it
    (kame.runtime.frontend); its codes come from FOLDER/codes.npz when ``use_cache`` and one
    exists (a stale one is a DataError), else from encoding the audio. ``tokenizer`` makes the
    agent's text stream and must be the one the oracle's ids were made with (its sha256;
    else retokenize_oracle first). On a config without an oracle stream, pass oracle=None to the
    model instead of the returned timeline. The dialogue is validated first, once (Dialogue.ensure_valid);
    a UserWarning says when its text stream lags its words by more than ``drift_warning_s``, drops
    tokens at the end, or loses characters the tokenizer does not know."""
    from ..model.stepper import oracle_ids, oracle_timeline
    from ..codec.base import fit_codec  # the runtime's rule: the same codebooks as at inference

    where = f"dialogue {d.folder}" if d.folder is not None else "dialogue"
    d.ensure_valid(where)  # (an in-memory dialogue has not been checked by a read or a write)
    fit_codec(codec, type(codec).__name__, cfg, "cfg", fix="pass the codec whose codes the front-end's config was "
              "made for (its card and codebooks), or a config that fits this codec")
    ids = stream_ids(cfg)
    T = d.frames
    _check_oracle(d, tokenizer, ids, where)
    rep = text_stream_report(d.words_of("agent"), T, tokenizer, ids, where=where)
    _warn_text(rep, T, where, drift_warning_s)
    codes = load_codes(d, codec) if use_cache else None
    user, agent = codes if codes is not None else encode_dialogue(d, codec)
    out = torch.full((cfg.num_codebooks, T), -1, dtype=torch.long)
    out[0] = rep.ids
    out[1: 1 + cfg.dep_q] = agent[: cfg.dep_q]
    if cfg.n_user_q:
        out[1 + cfg.dep_q:, : T - 1] = user[: cfg.n_user_q, 1:]  # user frame f + 1 beside agent frame f
    oracle = oracle_timeline(d.timeline_events(), T, **oracle_ids(cfg))
    return out, oracle


def _warn_text(rep: TextStream, T: int, where: str, drift_warning_s: float) -> None:
    """What the agent's text stream could not keep, said (training on it is the caller's choice)."""
    if rep.max_drift and rep.max_drift / FRAME_RATE > drift_warning_s:
        warnings.warn(f"{where}: the agent's text stream lags its words by up to {rep.max_drift} frames "
                      f"({rep.max_drift / FRAME_RATE:.2f} s; word {rep.drift_word!r} at {rep.drift_start:g} s): its "
                      f"words have more tokens than their time holds frames (one token per 80 ms frame); check the "
                      f"word times (docs/data.md, \"The text stream\")", UserWarning, stacklevel=3)
    if rep.dropped:
        warnings.warn(f"{where}: the agent's text has {counted(rep.dropped, 'token')} past its end (frame {T}), "
                      f"left out: words {rep.dropped_words[:5]}; end the audio later to keep them", UserWarning,
                      stacklevel=3)
    if rep.lost:
        warnings.warn(f"{where}: {counted(len(rep.lost), 'agent word')} with characters the tokenizer does not know, "
                      f"left out of the text stream: e.g. {rep.lost[:3]}", UserWarning, stacklevel=3)


def _check_oracle(d: Dialogue, tokenizer, ids: StreamIds, where: str = "dialogue") -> None:
    appended = check_oracle_tokens(d, tokenizer, where)
    bad = sorted({t for t in appended if t >= ids.text_card})
    if bad:
        raise DataError(f"{where}: oracle ids {bad[:8]} outside the front-end's text vocabulary [0, {ids.text_card}): "
                        f"its text_card is below the tokenizer's {tokenizer.vocab_size} pieces: {TEXT_CARD_FIX}")


def check_oracle_tokens(d: Dialogue, tokenizer, where: str = "dialogue") -> list[int]:
    """DataError unless ``d``'s oracle can be fed with ``tokenizer`` (training_example's checks but
    the front-end's; `kame data encode` runs them on a whole set): no prediction with text that no
    ids follow (that text would never be fed), ids of this tokenizer (its sha256), each id one of
    its pieces. ``tokenizer`` None: only the first (the one that needs no tokenizer). Returns the
    ids its appends feed, in order."""
    file = d.folder / META if d.folder is not None else where
    unfed = _text_only(d.oracle)
    if unfed:
        i, ev = unfed[0]
        more = f" (and {len(unfed) - 1} more such prediction(s))" if len(unfed) > 1 else ""
        fix = ("d = kame.train.examples.retokenize_oracle(d, tokenizer)" if d.folder is None else
               "kame.train.data.write_meta(kame.train.examples.retokenize_oracle(read_dialogue(FOLDER, audio=False), "
               "tokenizer)), then write the manifest again")
        raise DataError(f"{file}: oracle event {i} (append at frame {ev.frame}) has text {ev.text!r} but no ids, "
                        f"nor has a later append of its prediction{more}: the front-end is fed token ids, not text, "
                        f"so that text would never reach it. Encode the text with the tokenizer you train with: {fix}; or make a new oracle "
                        f"with `kame data oracle` (docs/data.md)")
    appended = [t for ev in d.oracle if ev.event == "append" for t in ev.ids]
    if not appended or tokenizer is None:
        return appended
    if d.tokenizer_sha256 != tokenizer.sha256:
        raise DataError(f"{where}: its oracle ids were made with tokenizer sha256 {d.tokenizer_sha256}, this "
                        f"tokenizer's is {tokenizer.sha256}: re-encode them "
                        f"(kame.train.examples.retokenize_oracle) or use that tokenizer")
    vocab = int(tokenizer.vocab_size)
    for i, ev in enumerate(d.oracle):  # (an id no piece of its tokenizer has: the file is damaged, not the front-end)
        corrupt = sorted({t for t in ev.ids if t >= vocab}) if ev.event == "append" else []
        if corrupt:
            raise DataError(f"{file}: oracle event {i} (frame {ev.frame}) has ids {corrupt[:8]}, not ids of its "
                            f"tokenizer (its {vocab} pieces are ids [0, {vocab})): the file is "
                            f"damaged or hand-edited; make its oracle again (kame data oracle) or leave the dialogue out")
    return appended


def _text_only(oracle: Sequence[OracleEvent]) -> list[tuple[int, OracleEvent]]:
    """(index, event) of each prediction (a reset and the appends after it) whose text is not all
    fed: its first append with text after its last append with ids (all of them when none has
    ids). Only the ids are fed, so that text never reaches the front-end. (retokenize_oracle
    leaves an append without ids only when a later one of its prediction gets the held-back
    word's: its last append, which may be blank.)"""
    out: list[tuple[int, OracleEvent]] = []
    unfed = None  # the open prediction's first append with text after its last append with ids
    for i, ev in enumerate(list(oracle) + [OracleEvent(0, "reset")]):  # (a reset closes the last one)
        if ev.event == "reset":
            if unfed is not None:
                out.append(unfed)
            unfed = None
        elif ev.ids:
            unfed = None
        elif unfed is None and isinstance(ev.text, str) and ev.text.strip():
            unfed = (i, ev)
    return out


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


DEFAULT_MIN_FRACTION = 2  # windows keeps a last, shorter window of at least length // this frames


def _check_example(codes: torch.Tensor, oracle: torch.Tensor | None, where: str) -> int:
    if codes.dim() != 2:
        raise ValueError(f"{where}: codes must be one example [K, T] (training_example's), got shape "
                         f"{tuple(codes.shape)}; cut a batch's rows one by one, before collate")
    T = codes.shape[1]
    if oracle is not None and oracle.shape != (T,):
        raise ValueError(f"{where}: oracle must be [T] = [{T}] (codes are {tuple(codes.shape)}), got "
                         f"{tuple(oracle.shape)}")
    return T


def _int(name: str, v, where: str) -> int:
    if not is_int(v):
        raise ValueError(f"{where}: {name} must be an int (frames), got {v!r}")
    return int(v)


def crop(codes: torch.Tensor, oracle: torch.Tensor | None, start: int,
         length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frames ``[start, start + length)`` of one example: (codes [K, length], oracle [length])
    (copies; oracle None stays None).

    A plain slice of every row and the oracle is a correct example on its own: LMModel.forward
    reads column 0 of any codes as step 0 of a fresh session (it prepends the initial tokens and
    applies ``cfg.delays`` itself, on undelayed codes), so no column is special and nothing is to
    be shifted here. The user's rows stay beside their agent frame (column f holds user frame
    f + 1), so the crop's user frame ``start`` (column start - 1) is left out just as a whole
    example's user frame 0 is (step 0 feeds BOS). What a crop does not have is the past: its first
    steps read BOS where the dialogue had frames, the transformer attends to no frame before
    ``start``, a delayed stream's last ``delays[k]`` frames have no target (the forward masks
    them), and a crop starting inside a word or a prediction starts with its middle tokens (the
    text target, and an oracle with no start id before them). moshi-finetune's windows are the
    same."""
    where = "crop"
    T = _check_example(codes, oracle, where)
    start, length = _int("start", start, where), _int("length", length, where)
    if length < 2:
        raise ValueError(f"{where}: length must be >= 2 frames, got {length}")
    if start < 0 or start + length > T:
        raise ValueError(f"{where}: frames [{start}, {start + length}) are not inside the example's [0, {T}): "
                         f"pass 0 <= start and start + length <= {T}")
    o = None if oracle is None else oracle[start: start + length].clone()
    return codes[:, start: start + length].clone(), o


def windows(codes: torch.Tensor, oracle: torch.Tensor | None, length: int, stride: int | None = None, *,
            min_length: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """One example (codes [K, T], oracle [T]) -> its windows for training, each ``crop(codes,
    oracle, start, length)`` for start = 0, stride, 2 * stride, ... (stride defaults to ``length``:
    no overlap; a stride above ``length`` skips the frames between windows).

    The training forward's memory grows with the square of T (its attention mask is [B, T, T]):
    train long dialogues on windows, as moshi-finetune does (``collate`` pads them to a batch).
    Each window is a session of its own (``crop`` says what that means at its start).

    The end: when the full windows do not reach frame T, the frames from the next start to T are a
    last, shorter window, kept when it has at least ``min_length`` frames (default ``length // 2``) and
    dropped otherwise (a short tail is mostly its start, with no past, and it still costs a row of
    padding in a batch). An example no longer than ``length`` is one window: itself, whatever its
    length (a short dialogue is not dropped)."""
    where = "windows"
    T = _check_example(codes, oracle, where)
    length = _int("length", length, where)
    if length < 2:
        raise ValueError(f"{where}: length must be >= 2 frames, got {length}")
    stride = length if stride is None else _int("stride", stride, where)
    if stride < 1:
        raise ValueError(f"{where}: stride must be >= 1 frame, got {stride}")
    min_length = max(2, length // DEFAULT_MIN_FRACTION) if min_length is None else _int("min_length", min_length, where)
    if not 2 <= min_length <= length:
        raise ValueError(f"{where}: min_length must be in [2, length = {length}], got {min_length}")
    if T < 2:
        raise ValueError(f"{where}: the example has {T} frame(s), a window needs at least 2")
    return [crop(codes, oracle, start, n) for start, n in window_spans(T, length, stride, min_length)]


def window_spans(T: int, length: int, stride: int | None = None,
                 min_length: int | None = None, offset: int = 0) -> list[tuple[int, int]]:
    """The (start, length) of each window ``windows`` cuts from an example of T frames (arguments
    as there, already checked): a training loop can cut lazily, without the example in hand.
    ``offset`` (0 <= offset < length): the windows start at frame ``offset`` instead of 0, the
    frames before it a first, shorter window kept as the tail is (at least ``min_length``
    frames); kame train draws it per epoch so the cuts fall elsewhere each time."""
    stride = length if stride is None else stride
    min_length = max(2, length // DEFAULT_MIN_FRACTION) if min_length is None else min_length
    if T <= length:
        return [(0, T)]
    out, start, end = [], 0, 0
    if 0 < offset < T:
        if offset >= min_length:
            out.append((0, offset))
        start = end = offset
    while start + length <= T:
        out.append((start, length))
        start, end = start + stride, start + length
    if end < T and start < T and T - start >= min_length:  # the tail: kept only when long enough (see windows)
        out.append((start, T - start))
    return out


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
    return replace(d, oracle=events, tokenizer_sha256=tokenizer.sha256)
