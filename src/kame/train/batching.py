"""The data side of `kame train` (kame.train.finetune): a manifest's dialogues as training
examples (codes cached in each dialogue's codes.npz on the first encode), KAME's oracle
augmentation, and the seeded batches of fixed-length windows that depend only on (seed, step).

    examples = load_examples("data/train.jsonl", codec, tokenizer, model.cfg, codec_spec="embedded")
    for step, (codes, oracle) in batches(examples, model.cfg, TrainConfig(batch_size=4)):
        ...   # codes [B, K, window], oracle [B, window]
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Iterator, Sequence

from .data import FRAME_RATE, DataError, read_dialogue
from .manifest import read_manifest

if TYPE_CHECKING:  # (torch is imported where it is used: `kame train --help` stays fast)
    import torch

    from .config import TrainConfig

log = logging.getLogger(__name__)


def augment_oracle(events: Sequence[tuple], rng, tcfg: TrainConfig, protected: Collection[int] = ()) -> list[tuple]:
    """KAME's oracle augmentation of one dialogue's timeline events (``Dialogue.timeline_events``):
    each prediction (a reset and the appends after it; appends before any reset count as one) is
    skipped with probability p ~ U[skip_prob], never the last nor one whose reset's index in
    ``events`` is in ``protected`` (a true reply, ``OracleEvent.use_hint``: ``protected_events``
    lists them); then each kept prediction arrives 0..``jitter_frames`` frames later (drawn per
    prediction; no earlier than the one before it, so frames stay in order); then, with
    probability slow_prob, the dialogue's predictions stream as from an LLM of r ~ U[slow_rate]
    tokens/s (``streamed``; oracle_timeline then skips the tokens that come after their frame, as
    the live feed does); then, with probability shift_prob, every event moves right 1-10 or left
    1-15 frames. As in KAME, an event moved before frame 0 is dropped (past the end: not fed); but
    when that would leave no event at all, the last prediction stays, at frame 0, so that every
    sample keeps an oracle. ``rng``: a numpy Generator (with slow_prob 0 it draws what it drew
    before that knob was added)."""
    preds = predictions(events)
    groups = [g for _, g in preds]
    keep = [n in protected for n, _ in preds]  # per group: never skipped
    keep[-1:] = [True] * len(keep[-1:])  # (the last)
    p = rng.uniform(*tcfg.skip_prob)
    kept = [g for g, k in zip(groups, keep) if rng.random() >= p or k]
    shift = 0
    if rng.random() < tcfg.shift_prob:
        if rng.random() < 0.5:
            shift = int(rng.integers(tcfg.shift_right[0], tcfg.shift_right[1] + 1))
        else:
            shift = -int(rng.integers(tcfg.shift_left[0], tcfg.shift_left[1] + 1))
    if tcfg.jitter_frames > 0:  # (after the other draws: without jitter they are what they were)
        late, floor = [], 0
        for g in kept:
            j = int(rng.integers(0, tcfg.jitter_frames + 1))
            moved = [(max(ev[0] + j, floor), *ev[1:]) for ev in g]
            floor = moved[-1][0]
            late.append(moved)
        kept = late
    if tcfg.slow_prob > 0 and rng.random() < tcfg.slow_prob:  # (the last draws: slow_prob 0 draws nothing new)
        rate = rng.uniform(*tcfg.slow_rate)
        kept = [streamed(g, rate, kept[n + 1][0][0] if n + 1 < len(kept) else None) for n, g in enumerate(kept)]
    out = [(ev[0] + shift, *ev[1:]) for g in kept for ev in g if ev[0] + shift >= 0]
    if not out and kept:  # all moved before frame 0: the last prediction stays, at frame 0
        out = [(max(0, ev[0] + shift), *ev[1:]) for ev in kept[-1]]
    return out


def streamed(group: Sequence[tuple], rate: float, until: int | None = None) -> list[tuple]:
    """One prediction's timeline events (a reset and its appends, or appends alone) as an LLM
    streaming ``rate`` tokens/s sends them: its token i (counted over all its appends) arrives at
    its first event's frame + ceil(i * 12.5 / rate) (token 0 with the reset, as the back-end
    resets on the first token by default), or at its recorded frame when that is later; one
    append per frame that gets tokens. Tokens that would arrive at or after ``until`` (the next
    prediction's first frame) are not sent: the back-end sends only the newest prediction's
    tokens (kame.backend.oracle). Which of the rest the front-end is fed is the feed's rule, not
    decided here: oracle_timeline (as OracleFeed live) feeds token i at the reset's frame + 1 + i
    and skips one that arrives after that frame. At 12.5 tokens/s or faster a prediction written
    at once (kame data synth's) arrives in time: every token is fed, as before."""
    out = [ev for ev in group if ev[1] == "reset"]
    start = group[0][0]
    tokens = [(ev[0], t) for ev in group if ev[1] == "append" for t in ev[2]]
    for i, (frame, token) in enumerate(tokens):
        at = max(frame, start + math.ceil(i * FRAME_RATE / rate))
        if until is not None and at >= until:
            break
        if out and out[-1][1] == "append" and out[-1][0] == at:
            out[-1][2].append(token)
        else:
            out.append((at, "append", [token]))
    return out


def input_dropouts(codes: torch.Tensor, cfg, tcfg: TrainConfig, step: int, first: int = 0) -> torch.Tensor | None:
    """KAME's input dropouts of one batch (collate's codes [B, K, T], part of step ``step``'s global
    batch, from its window ``first`` on: batches' ``slot``) -> what the temporal transformer reads
    (LMModel.forward's ``inputs``), None when
    they are all off. Text tokens other than pad (and -1) read as pad with probability
    ``text_token_dropout`` each; with probability ``text_emb_dropout`` per window the whole text
    stream reads as nothing (-1 embeds to zero; the oracle is still added), with
    ``semantic_emb_dropout`` the model's own semantic codes (stream 1). Drawn per window from
    (seed, step, its place in the global batch): a resumed run reads what a straight one did, on
    any number of processes."""
    import numpy as np
    import torch

    ps = (tcfg.text_token_dropout, tcfg.text_emb_dropout, tcfg.semantic_emb_dropout)
    if not any(ps):
        return None
    B, _, T = codes.shape
    inputs = codes.clone()
    for k in range(B):
        rng = np.random.default_rng([tcfg.seed, step, first + k, 3])
        # the whole-window draws first: the token draws after them depend on the batch's padded length T
        whole_text, whole_semantic = rng.random(2) < ps[1:]
        text = inputs[k, 0]  # [T] (a view)
        flip = torch.from_numpy(rng.random(T) < ps[0]) & (text != cfg.existing_text_padding_id) & (text != -1)
        text[flip] = cfg.existing_text_padding_id
        if whole_text:
            text[:] = -1
        if whole_semantic and cfg.dep_q > 0:  # (stream 1 is a user stream when it generates no audio)
            inputs[k, 1] = -1
    return inputs


def protected_events(oracle) -> frozenset[int]:
    """The indices, in a dialogue's oracle events (kame.train.data.OracleEvent), of the resets
    whose prediction is the true reply (``use_hint``): augment_oracle never skips them."""
    return frozenset(n for n, ev in enumerate(oracle) if ev.event == "reset" and ev.use_hint)


@dataclass
class Example:
    """One dialogue, ready to cut: its codes (int16 when they fit: a quarter of int64's memory),
    its oracle as recorded (training_example's) and its oracle events (to augment)."""

    name: str
    codes: torch.Tensor  # [K, T]
    recorded: torch.Tensor  # [T]
    events: list[tuple] = field(default_factory=list)
    protected: frozenset[int] = frozenset()  # augment_oracle's (protected_events)

    def oracle(self, cfg, tcfg: TrainConfig, epoch: int, index: int, hint_only: bool = False) -> torch.Tensor:
        """The oracle this window of ``epoch`` gets: augmented (tcfg.oracle_aug), and with
        ``hint_only`` its true replies alone (the predictions marked use_hint; a dialogue with none
        marked keeps all)."""
        import numpy as np

        from ..model.stepper import oracle_ids, oracle_timeline

        events, protected = self.events, self.protected
        if hint_only and protected:
            events, protected = true_replies(events, protected)
        elif not tcfg.oracle_aug:
            return self.recorded
        if tcfg.oracle_aug:
            events = augment_oracle(events, np.random.default_rng([tcfg.seed, epoch, index]), tcfg, protected)
        return oracle_timeline(events, self.codes.shape[1], **oracle_ids(cfg)) if events else self.recorded


def predictions(events: Sequence[tuple]) -> list[tuple[int, list[tuple]]]:
    """The timeline events cut into predictions: (the index of its first event, its events), each
    a reset and the appends after it (appends before any reset count as one)."""
    out: list[tuple[int, list[tuple]]] = []
    for n, ev in enumerate(events):
        if ev[1] == "reset" or not out:
            out.append((n, [ev]))
        else:
            out[-1][1].append(ev)
    return out


def true_replies(events: Sequence[tuple], protected: Collection[int]) -> tuple[list[tuple], frozenset[int]]:
    """Only the predictions whose reset's index is in ``protected`` (the true replies), and their
    resets' indices in what is returned."""
    out, keep = [], set()
    for n, group in predictions(events):
        if n in protected:
            keep.add(len(out))
            out += group
    return out, frozenset(keep)


def hint_only_share(step: int, tcfg: TrainConfig) -> float:
    """The share of step ``step``'s windows shown only their true replies (tcfg.hint_only = (A, B),
    KAME's hint-only curriculum): all before step A, none from step B on, falling linearly between."""
    a, b = tcfg.hint_only
    if step >= b:
        return 0.0
    return 1.0 if step < a else 1.0 - (step - a) / (b - a)


def manifest_path(path: str | Path, command: str = "train") -> Path:
    """The manifest file ``path`` names (a `kame data synth` OUT folder: its train.jsonl), else a
    DataError worded for `kame COMMAND`."""
    p = Path(path)
    if p.is_dir():
        if (p / "train.jsonl").is_file():
            return p / "train.jsonl"
        raise DataError(f"{command}: {p} is a folder without a train.jsonl: give the manifest file (kame data synth "
                        f"writes OUT/train.jsonl)")
    if not p.is_file():
        raise DataError(f"{command}: no manifest at {p}: make one with `kame data synth` (OUT/train.jsonl) or "
                        f"kame.train.manifest.write_manifest")
    return p


def manifest_entries(path: str | Path, command: str = "train") -> tuple[Path, list]:
    """(the manifest file ``path`` names (manifest_path), its entries (read_manifest)); a manifest
    that lists no dialogues is a DataError worded for `kame COMMAND`, as a missing one is."""
    p = manifest_path(path, command=command)
    entries = read_manifest(p)
    if not entries:
        raise DataError(f"{command}: manifest {p} lists no dialogues")
    return p, entries


def load_examples(manifest: str | Path, codec, tokenizer, cfg, use_cache: bool = True, *,
                  codec_spec: str | None = None, rank: int = 0, world: int = 1,
                  echo: Callable[[str], None] = lambda s: None, listed: dict | None = None) -> list[Example]:
    """Every dialogue of the manifest as an Example (DataError: a missing or empty manifest, a
    dialogue that does not fit the codec, tokenizer or front-end). With ``use_cache``, a dialogue
    without codes.npz, or whose codes.npz another codec or audio made, is encoded and cached there
    (write_codes, as ``codec_spec``; rank r of ``world`` processes encodes every world-th one,
    then all wait and read); without ``use_cache``, or with a codec without a fingerprint (it
    cannot be cached), every dialogue is encoded every time and caches are not read. ``echo``:
    progress. ``listed``: {folder: Dialogue} already read without samples (kame.train.checkpoint's
    check_listed), whose cache is tried without reading their dialogue.json again (emptied)."""
    import torch
    import torch.distributed as dist

    from ..codec.base import fit_codec
    from .codes import write_codes
    from .examples import training_example
    from .oracle_sim import stale_cleaning
    from .parallel import agree

    path, entries = manifest_entries(manifest)
    if note := stale_cleaning(path):  # (once: echo is rank 0's)
        echo(f"warning: {note}")
    spec = codec_spec or type(codec).__name__
    fit_codec(codec, spec, cfg, "the front-end")  # (the codebooks it codes with, before any encode)
    cache = use_cache and codes_cacheable(codec, spec, echo)
    # the dialogues whose cache is good, read without their samples (the codes come from the cache;
    # the same object again below, so their audio.wav is hashed once)
    known = {e.path: cached_dialogue(e.path, codec, echo, (listed or {}).get(e.path)) for e in entries} if cache else {}
    if listed:
        listed.clear()  # (taken: not held through the caller's training)
    todo = [e for e in entries if known.get(e.path) is None]
    distributed = world > 1 and dist.is_available() and dist.is_initialized()
    if cache:
        if distributed:  # every rank has listed what is missing before any writes (else a rank that looks
            dist.barrier()  # late sees another's new files: the shares differ and a dialogue goes unwritten)
        mine = todo[rank::world]

        def encode_share() -> None:
            for i, e in enumerate(mine, 1):
                share = f", this process's share of {len(todo)}" if world > 1 else ""  # (rank 0's: it alone says)
                _progress(echo, i, len(mine), f"encoding {{}}/{len(mine)} dialogues{share} (cached as codes.npz)")
                write_codes(read_dialogue(e.path), codec, spec=spec)

        # (distributed: a failure is said to the other ranks, "train: rank R failed: ...", else they would wait for
        # it at the next collective; agree is also the barrier after which every share is written)
        if distributed:
            agree(encode_share)
        else:
            encode_share()
        todo = []
    encode = {e.path for e in todo}
    out, n = [], 0
    for e in entries:
        d = known.pop(e.path, None) or read_dialogue(e.path, audio=not cache)  # (cached: no samples needed)
        if e.path in encode:
            n += 1
            _progress(echo, n, len(encode), f"encoding {{}}/{len(encode)} dialogues")
        codes, oracle = training_example(d, codec, tokenizer, cfg, use_cache=cache)
        small = codes.numel() == 0 or int(codes.max()) < 2 ** 15  # (ids and codes; -1 is "none")
        out.append(Example(str(e.path), codes.to(torch.int16 if small else torch.int32), oracle, d.timeline_events(),
                           protected_events(d.oracle)))
    return out


def codes_cacheable(codec, spec: str, echo: Callable[[str], None] = lambda s: None) -> bool:
    """Whether ``codec``'s codes can be read from and cached in codes.npz (load_codes, write_codes):
    only a codec with a fingerprint; for one without (random weights), said (``echo``) and False:
    every run encodes its codes. With cached_dialogue, the rule kame train and kame eval follow
    read a set's caches by."""
    if getattr(codec, "fingerprint", None) is not None:
        return True
    echo(f"codec {spec} has no fingerprint: its codes cannot be cached, every run encodes them")
    return False


def cached_dialogue(folder: Path, codec, echo: Callable[[str], None] = lambda s: None, d=None):
    """FOLDER's dialogue (read without its samples; ``d``: as read already) when it holds a
    codes.npz this codec can use, else None (one made by another codec or from other audio is
    said, to be encoded again)."""
    from .codes import load_codes
    from .data import CODES

    if not (folder / CODES).is_file():
        return None
    if d is None:
        d = read_dialogue(folder, audio=False)
    try:
        load_codes(d, codec)
    except DataError as exc:
        echo(f"{getattr(exc, 'stale', exc)}: encoding it again")  # (the what, not load_codes' fix: done here)
        return None
    return d


def _progress(echo, i: int, n: int, fmt: str) -> None:
    if i == 1 or i == n or i % max(1, n // 10) == 0:  # (about ten lines)
        echo(fmt.format(i))


def echo_oracle(text: torch.Tensor, oracle: torch.Tensor, alpha: float, cfg) -> torch.Tensor:
    """A dialogue's oracle with its predictions replaced by what the agent says (the curriculum of
    ``kame train --oracle-echo``): text [T] (the agent's text stream, codes row 0), oracle [T] (the
    dialogue's oracle as recorded, for its resets: the frames holding the start id) -> [T]. After
    each reset, the agent's words (its text tokens but the padding ids) up to the next reset are
    placed between the frame each is spoken at (``alpha`` 0: the oracle gives each token at the
    very frame the front-end says it, so that copying it is the easy thing to learn) and where a
    prediction streams them, one a frame from the reset on (``alpha`` 1, as the back-end gives
    them), in order, at most one a frame; every other frame is pad, and words before the first
    reset get none. Made for the whole dialogue, then cut: a window keeps the words of a reply
    begun before it."""
    import torch

    from .examples import stream_ids

    is_word = stream_ids(cfg).is_word
    said = text.tolist()
    T = len(said)
    out = torch.full_like(oracle, cfg.existing_text_padding_id)
    resets = (oracle == cfg.text_card).nonzero().flatten().tolist()
    for n, t0 in enumerate(resets):
        out[t0] = cfg.text_card
        end = resets[n + 1] if n + 1 < len(resets) else T
        spoken = [f for f in range(t0 + 1, end) if is_word(said[f])]
        at = t0
        for k, f in enumerate(spoken):  # the k-th word token after the reset, spoken at frame f
            at = max(round((1 - alpha) * f + alpha * (t0 + 1 + k)), at + 1)
            if at >= end:
                break
            out[at] = said[f]
    return out


def _echo_alpha(step: int, place: int, tcfg: TrainConfig) -> float | None:
    """Where window ``place`` of step ``step`` puts its echoed words (echo_oracle's alpha), or None:
    its own oracle. tcfg.oracle_echo = (A, B): 0 before step A, then rising to 1 at step B (+- 0.1,
    drawn from (seed, step, place) as _hint_only's), None from step B on."""
    import numpy as np

    a, b = tcfg.oracle_echo
    if step >= b:
        return None
    if step < a:
        return 0.0
    jitter = np.random.default_rng([tcfg.seed, step, place, 9]).uniform(-0.1, 0.1)
    return float(np.clip((step - a) / (b - a) + jitter, 0.0, 1.0))


def slot(tcfg: TrainConfig, rank: int, forward: int) -> int:
    """The place in its step's global batch of the first window of ``rank``'s ``forward``-th batch
    (rank r takes the r-th share of batch_size * grad_accum windows, one batch_size per forward)."""
    return (rank * tcfg.grad_accum + forward) * tcfg.batch_size


def batches(examples: Sequence[Example], cfg, tcfg: TrainConfig, rank: int = 0,
            world: int = 1, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's (codes [B, K, T], oracle [B, T]) of every forward, forever: each epoch's
    windows (``windows`` of every dialogue, from a start drawn per epoch with tcfg.window_offsets,
    its oracle augmented for that epoch) in a seeded order, cut into global batches of batch_size *
    world * grad_accum windows (the last ones of an epoch carry over into the next), of which rank
    r takes the r-th share, as grad_accum batches of batch_size (``slot``): a step's windows are the
    same whatever the split of its global batch into processes and forwards. ``skip``: start at
    step ``skip`` (a resumed run: the batches before it are passed over without being cut)."""
    import torch

    from .examples import collate, window_spans

    share = tcfg.batch_size * tcfg.grad_accum
    G, buf, epoch, step = share * world, [], 0, 0
    while True:
        spans = [(i, start, n) for i, ex in enumerate(examples)  # this epoch's cuts
                 for start, n in window_spans(ex.codes.shape[1], tcfg.window_frames,
                                              offset=_offset(ex.codes.shape[1], tcfg, epoch, i))]
        order = torch.randperm(len(spans), generator=torch.Generator().manual_seed(tcfg.seed * 100_003 + epoch))
        for j in order.tolist():
            buf.append((epoch, spans[j]))
            if len(buf) == G:
                mine = buf[rank * share: (rank + 1) * share]
                buf, step = [], step + 1
                if skip > 0:
                    skip -= 1
                    continue
                for f in range(tcfg.grad_accum):
                    first = slot(tcfg, rank, f)
                    part = mine[f * tcfg.batch_size: (f + 1) * tcfg.batch_size]
                    hint = [_hint_only(step - 1, first + k, tcfg) for k in range(len(part))]
                    echo = [_echo_alpha(step - 1, first + k, tcfg) for k in range(len(part))]
                    yield collate([_cut(examples, cfg, tcfg, ep, sp, h, a)
                                   for (ep, sp), h, a in zip(part, hint, echo)], cfg)
        epoch += 1


def _hint_only(step: int, place: int, tcfg: TrainConfig) -> bool:
    """Whether window ``place`` of step ``step``'s global batch (``slot``'s) shows only its true
    replies (hint_only_share; drawn from (seed, step, place): any rank, and a resumed run, draw the same)."""
    import numpy as np

    share = hint_only_share(step, tcfg)
    return share >= 1 or (share > 0 and np.random.default_rng([tcfg.seed, step, place, 5]).random() < share)


def _offset(T: int, tcfg: TrainConfig, epoch: int, i: int) -> int:
    """Where the windows of dialogue ``i`` start in ``epoch`` (tcfg.window_offsets; drawn from
    (seed, epoch, dialogue) alone, as its augmentation): 0, or a frame in [0, window) for a dialogue
    longer than one window, so a cut does not always fall on the same frame."""
    import numpy as np

    if not tcfg.window_offsets or T <= tcfg.window_frames:
        return 0
    return int(np.random.default_rng([tcfg.seed, epoch, i, 1]).integers(0, tcfg.window_frames))


def _cut(examples, cfg, tcfg, epoch: int, span: tuple, hint_only: bool = False,
         echo: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [K, length], oracle [length]) of window ``span``: its oracle augmented for ``epoch``
    (Example.oracle), or with ``echo`` (an alpha) the echo_oracle of its dialogue as recorded
    (before step B of --oracle-echo, neither augmentation nor the hint-only curriculum applies)."""
    i, start, length = span
    ex = examples[i]
    oracle = (ex.oracle(cfg, tcfg, epoch, i, hint_only) if echo is None
              else echo_oracle(ex.codes[0].long(), ex.recorded, echo, cfg))
    return ex.codes[:, start: start + length].long(), oracle[start: start + length]


