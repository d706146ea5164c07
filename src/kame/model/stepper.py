"""Streaming generation for the front-end LM (the role of moshi's LMGen), batched over sessions.

    stepper = Stepper(model, batch_size=4, sampling=Sampling())   # or Sampling(greedy=True)
    out = stepper.step(user_codes)      # user_codes [B, n_user_q] (the user's Mimi codes of a frame)
    out.valid[b]                        # False while the delays fill (first max_delay steps) or paused
    out.text[b], out.audio[b]           # the model's text token and dep_q audio codes of frame out.frame[b]
    out.extra_heads                     # list of [B, extra_heads_dim] probabilities (Kyutai STT VAD)

Rows are independent sessions: ``stepper.reset(rows)`` starts fresh sessions in those rows,
``stepper.pause(rows)`` / ``resume(rows)`` freeze rows (a paused row does not advance and its
outputs are invalid); other rows are not disturbed. These calls, and the oracle feed below, may
come from another thread (e.g. the asyncio thread while ``step`` runs on a worker thread): they
are queued under a lock and applied, in call order, at the start of the next ``step`` (a row's
``reset`` and the clearing of its oracle always land in the same step). ``step`` itself must run
on one thread at a time. Bad arguments (a row or token id that is not an int - a bool or float is
refused, not rounded -, a row out of range, a token id outside the vocabulary, user codes of the
wrong shape/dtype/range - bool codes are refused -, batch_size < 1, a model that is not an LMModel,
a sampling that is not a Sampling) raise at call time and change nothing. Sampling's values are
checked as they are set, so a step cannot fail in its sampling once it has started changing the
state.

Random streams: ``Stepper(..., seed=7)`` gives each row its own torch.Generator, seeded with the
seed (all 64 bits: kame.seeding) whenever a session starts in the row (construction, ``reset``)
and drawn from only on the row's own steps, so a session's samples depend only on the seed, its
inputs and its own steps (not on the batch size, its row, when it joined or what the other rows do). A shared
``generator=`` (or none: torch's global one) is one stream for the whole batch: each sampled
distribution draws [B, k] noise from it, so a row's samples depend on the batch size, its row and
every step taken before it joined - reproducible for the same batch and schedule only.

Oracle feed (KAME), per row, one token per 80 ms frame:
    stepper.oracle.reset(row)            # a new back-end prediction: start id (text_card) at the next frame
    stepper.oracle.append(row, [ids])    # its tokens, one per following frame; pad when none
A token whose frame has already passed when it arrives is skipped (counted in ``stats``); a
reset drops the unfed tokens of the previous prediction (counted as superseded): the newest
prediction wins. ``stepper.oracle.stats(row)`` -> OracleStats (``stats_all()``: every row's).
Rows with no prediction yet get pad (config existing_text_padding_id); an ``append`` with no
prediction open starts one, as if ``reset`` had been called first.

The same schedule as a pure function, for training data (``LMModel.forward``'s ``oracle``):
    oracle_timeline([(4, "reset"), (4, "append", ids), (9, "reset"), ...], T, **oracle_ids(cfg))
gives the [T] tokens this feed would give at steps 0..T-1 (events at frame f = calls made
before step f). OracleFeed and oracle_timeline share their rules (``_OracleRow``).
"""

from __future__ import annotations

import copy
import operator
import threading
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from ..numeric import is_finite_number, is_real_number
from ..seeding import seed_generator
from .lm import LMModel, not_ids
from .modules import TransformerState, check_cache_memory
from .token_ids import as_int, token_list  # (importable from here, as before)

UNGENERATED = -2


@dataclass
class Sampling:
    """Per-stream sampling; defaults are Moshi's / KAME's. Every value is checked as it is set (at
    construction and on assignment): a temperature is a finite number >= 0 (0: argmax), a top-k an
    int >= 0 (0: no top-k), greedy a bool; else a TypeError / ValueError naming the field (was: a
    torch error inside the step, after it had started changing the stepper's state)."""

    temp: float = 0.8  # audio temperature
    top_k: int = 250  # audio top-k
    temp_text: float = 0.7
    top_k_text: int = 25
    greedy: bool = False  # argmax everywhere (also when a temperature is <= 0)

    def __setattr__(self, name: str, value) -> None:
        if name in ("temp", "temp_text"):
            if isinstance(value, torch.Tensor) and value.dim() == 0:  # (a 0-d tensor, as top_k takes)
                value = value.item()
            if not is_real_number(value):
                raise TypeError(f"Sampling {name} must be a number (a temperature, 0: argmax), got "
                                f"{type(value).__name__} {value!r}")
            finite = is_finite_number(value)  # (False for an int too large for a float: was an OverflowError)
            if finite:
                value = float(value)
            if not (finite and value >= 0):
                raise ValueError(f"Sampling {name} must be a finite temperature >= 0 (0: argmax), got {value!r}")
        elif name in ("top_k", "top_k_text"):
            value = as_int(value, f"Sampling {name}")
            if value < 0:
                raise ValueError(f"Sampling {name} must be >= 0 (0: no top-k), got {value}")
        elif name == "greedy" and not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"Sampling greedy must be a bool, got {type(value).__name__} {value!r}")
        elif name == "greedy":
            value = bool(value)
        object.__setattr__(self, name, value)

    @classmethod
    def from_lm_gen_config(cls, cfg: dict | None) -> "Sampling":
        """From a config.json's lm_gen_config (keys temp, temp_text, top_k, top_k_text)."""
        cfg = cfg or {}
        return cls(**{k: cfg[k] for k in ("temp", "top_k", "temp_text", "top_k_text") if k in cfg})


def sample(logits: torch.Tensor, temp: float, top_k: int, greedy: bool,
           generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """logits [B, V] -> tokens [B] (top-k, temperature; argmax if greedy or temp <= 0).
    noise: the Exp(1) draws to sample with, [B, >= sample_draws(V, temp, top_k, greedy)] (e.g. one
    row each from the rows' own generators); else [B, k] are drawn from `generator`."""
    logits = logits.float()
    if greedy or temp <= 0:
        return logits.argmax(dim=-1)
    # (best logit 0 first: a 1e-40 temp is near-greedy; was: logits / temp inf, softmax NaN, token 0)
    probs = torch.softmax((logits - logits.amax(dim=-1, keepdim=True)) / temp, dim=-1)
    idx = None
    if 0 < top_k < probs.shape[-1]:
        probs, idx = probs.topk(top_k, dim=-1)
    # Exponential race == sampling from probs (no host sync, works with a generator).
    if noise is None:
        noise = torch.empty_like(probs).exponential_(1, generator=generator)
    else:
        noise = noise[:, : probs.shape[-1]]
    choice = (probs / noise).argmax(dim=-1, keepdim=True)
    return (idx.gather(-1, choice) if idx is not None else choice)[:, 0]


def sample_draws(vocab: int, temp: float, top_k: int, greedy: bool) -> int:
    """How many noise draws per row ``sample`` uses for a [B, vocab] distribution (0: argmax)."""
    if greedy or temp <= 0:
        return 0
    return top_k if 0 < top_k < vocab else vocab


@dataclass
class OracleStats:
    fed: int = 0  # tokens fed to the model (start ids included)
    skipped: int = 0  # tokens that arrived after their frame had passed
    superseded: int = 0  # unfed tokens dropped because a newer prediction reset the row
    predictions: int = 0  # resets (back-end predictions started)
    pad_frames: int = 0  # frames fed with pad
    starts: int = 0  # start ids among fed (fed - starts: the predictions' own tokens fed)


@dataclass
class _OracleRow:
    """One row's oracle schedule: the rules OracleFeed and oracle_timeline share."""

    start: int | None = None  # frame of the start token (None: no prediction yet)
    tokens: list[int] = field(default_factory=list)  # tokens[i] is for frame start + i
    stats: OracleStats = field(default_factory=OracleStats)

    def apply(self, op: str, ids: list[int] | None, frame: int, start_id: int) -> None:
        """A "reset" or "append" made before the step of `frame`."""
        s = self.stats
        if op == "reset" or self.start is None:  # an append with nothing open starts a prediction
            if self.start is not None:
                s.superseded += max(0, len(self.tokens) - max(0, frame - self.start))
            self.start, self.tokens = frame, [start_id]
            s.predictions += 1
        if op == "append":
            n = len(self.tokens)
            s.skipped += sum(self.start + n + j < frame for j in range(len(ids)))  # their frame has passed
            self.tokens.extend(ids)

    def token_at(self, frame: int, pad_id: int) -> tuple[int, bool]:
        """(token fed at `frame`, whether it is a prediction's token rather than pad)."""
        i = -1 if self.start is None else frame - self.start
        if 0 <= i < len(self.tokens):
            return self.tokens[i], True
        return pad_id, False


def _check_ids(token_ids: Sequence[int], vocab: int, where: str) -> list[int]:
    ids = token_list(token_ids, where)
    bad = [t for t in ids if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"oracle token id(s) {bad[:8]} outside the text vocabulary [0, {vocab}) ({where})")
    return ids


def oracle_ids(cfg) -> dict:
    """The oracle's special ids for an LMConfig: start id (text_card), pad, vocabulary size."""
    return dict(start_id=cfg.text_card, pad_id=cfg.existing_text_padding_id, vocab=cfg.text_ids)


def oracle_timeline(events: Sequence[tuple], num_frames: int, *, start_id: int, pad_id: int,
                    vocab: int | None = None) -> torch.Tensor:
    """The oracle tokens a Stepper feeds one session at steps 0..num_frames-1 -> LongTensor [num_frames].

    events: ``(frame, "reset")`` and ``(frame, "append", token_ids)`` in call order (frames not
    decreasing): the OracleFeed calls made before the row's step `frame` (step f = the step fed
    with the user's frame f). Events at frames >= num_frames change nothing. This is the training
    forward's ``oracle`` (LMModel.forward: ``oracle[:, t]`` is fed at step t). Ids as OracleFeed's
    (``oracle_ids(cfg)`` gives them for a config)."""
    vocab = start_id + 1 if vocab is None else vocab
    evs = [_event(n, ev, vocab) for n, ev in enumerate(events)]
    for n in range(1, len(evs)):
        if evs[n][0] < evs[n - 1][0]:
            raise ValueError(f"oracle event {n} at frame {evs[n][0]} comes after one at frame {evs[n - 1][0]}: "
                             "give the events in the order the feed got them (frames not decreasing)")
    row, out, i = _OracleRow(), [], 0
    for f in range(num_frames):
        while i < len(evs) and evs[i][0] == f:
            _, op, ids = evs[i]
            if op == "reset" or ids:  # an empty append is no call (as OracleFeed.append)
                row.apply(op, ids, f, start_id)
            i += 1
        out.append(row.token_at(f, pad_id)[0])
    return torch.tensor(out, dtype=torch.long)


def _event(n: int, ev, vocab: int) -> tuple[int, str, list[int] | None]:
    """oracle_timeline's event n -> (frame, op, ids), or a ValueError saying what is wrong."""
    op = ev[1] if isinstance(ev, (tuple, list)) and len(ev) in (2, 3) and isinstance(ev[1], str) else None
    if (op, len(ev) if op else 0) not in (("reset", 2), ("append", 3)):
        raise ValueError(f"oracle event {n} must be (frame, 'reset') or (frame, 'append', token_ids), got {ev!r}")
    try:
        frame = None if isinstance(ev[0], bool) else operator.index(ev[0])
    except TypeError:
        frame = None
    if frame is None or frame < 0:
        raise ValueError(f"oracle event {n}: its frame must be an int >= 0 (the step it comes before), got {ev[0]!r}")
    return frame, op, _check_ids(ev[2], vocab, f"event {n}") if op == "append" else None


class OracleFeed:
    """Per-row oracle token schedule. reset/append are thread-safe (queued, applied at step start)."""

    def __init__(self, batch_size: int, start_id: int, pad_id: int, vocab: int | None = None, enabled: bool = True):
        """vocab: number of valid ids (default start_id + 1); appended ids must be in [0, vocab).
        enabled=False (a model without an oracle stream): reset and append are a ValueError (its
        tokens would reach nothing: nothing is dropped silently)."""
        self.start_id, self.pad_id, self.enabled = start_id, pad_id, enabled
        self.vocab = start_id + 1 if vocab is None else vocab
        self._rows = [_OracleRow() for _ in range(batch_size)]
        self._lock = threading.Lock()
        self._ops: list[tuple] = []

    def _check(self, row: int, feed: bool = False) -> int:
        if feed and not self.enabled:
            raise ValueError("this model has no oracle stream (config oracle=False): it takes no oracle tokens "
                             "(a KAME checkpoint: load it with oracle=True)")
        row = as_int(row, "oracle row")
        if not 0 <= row < len(self._rows):
            raise IndexError(f"oracle row {row} out of range [0, {len(self._rows)})")
        return row

    def reset(self, row: int) -> None:
        """A new prediction for `row`: the start id is fed at the row's next frame."""
        row = self._check(row, feed=True)
        with self._lock:
            self._ops.append(("reset", row, None))

    def append(self, row: int, token_ids: Sequence[int]) -> None:
        """Tokens of the current prediction, one per frame after the previous ones."""
        row = self._check(row, feed=True)
        ids = _check_ids(token_ids, self.vocab, f"row {row}")
        if ids:
            with self._lock:
                self._ops.append(("append", row, ids))

    def clear(self, row: int) -> None:
        """Forget the row's prediction and stats (a new session in this row)."""
        row = self._check(row)
        with self._lock:
            self._ops.append(("clear", row, None))

    def stats(self, row: int) -> OracleStats:
        row = self._check(row)
        with self._lock:
            s = self._rows[row].stats
            return OracleStats(**vars(s))

    def stats_all(self) -> list[OracleStats]:
        """Every row's stats, read at once (after a step: what that step left)."""
        with self._lock:
            return [OracleStats(**vars(r.stats)) for r in self._rows]

    # --- called by the stepper (worker thread) -------------------------------------------
    def _apply(self, frames: list[int]) -> None:
        with self._lock:
            ops, self._ops = self._ops, []
            for op, row, ids in ops:
                if op == "clear":
                    self._rows[row] = _OracleRow()
                else:
                    self._rows[row].apply(op, ids, frames[row], self.start_id)

    def _next(self, frames: list[int], run: list[bool]) -> list[int]:
        out = []
        with self._lock:
            for row, (f, go) in enumerate(zip(frames, run)):
                r = self._rows[row]
                tok, have = r.token_at(f, self.pad_id)
                out.append(tok)
                if go:  # a paused row does not consume its oracle
                    if have:
                        r.stats.fed += 1
                        r.stats.starts += f == r.start
                    else:
                        r.stats.pad_frames += 1
        return out


@dataclass
class StepOutput:
    text: torch.Tensor  # [B] text token of frame `frame` (UNGENERATED = -2 where not valid; pad 3 / end-pad 0 = no word)
    audio: torch.Tensor  # [B, dep_q] audio codes of frame `frame`
    valid: torch.Tensor  # [B] bool
    frame: torch.Tensor  # [B] index of the output frame in the row's session
    text_logits: torch.Tensor  # [B, text_card_out] logits of the text sampled this step (undelayed)
    # [B, dep_q, card] logits of the audio sampled this step; codebook k's are for frame
    # step - delays[1 + k] (LMModel.forward's logits[:, k, step - delays[1 + k]])
    audio_logits: torch.Tensor
    sampled_text: torch.Tensor  # [B] text token sampled this step (before the delay realignment)
    extra_heads: list[torch.Tensor]  # per extra head [B, extra_heads_dim] probabilities
    oracle_in: torch.Tensor  # [B] oracle token fed this step (-1: model without oracle)


@dataclass
class StepperState:
    offsets: torch.Tensor  # [B] frames stepped by each row
    tokens: torch.Tensor  # [B, K, max_delay + 2] ring buffer of the delayed streams
    active: torch.Tensor  # [B] bool, False = paused
    lm: TransformerState  # the temporal transformer's KV ring buffers


class Stepper:
    """Batched streaming generation; see the module docstring."""

    def __init__(self, model: LMModel, batch_size: int = 1, sampling: Sampling | None = None,
                 generator: torch.Generator | None = None, active: bool = True, *, seed: int | None = None):
        """active=False: all rows start paused (a server allocating B slots; ``reset([row])``
        starts a session in a slot). seed (an int in [0, 2**64)): per-row random streams, each
        row's generator seeded with it when a session starts there; generator: one stream shared
        by the batch (see the module docstring). Not both; neither: torch's global generator."""
        if not isinstance(model, LMModel):
            hint = (": load_frontend returns (model, info), so unpack it: model, info = load_frontend(...)"
                    if isinstance(model, tuple) else
                    ": a registry Frontend holds it as .model (or use its .stepper(batch_size))"
                    if isinstance(getattr(model, "model", None), LMModel) else "")
            raise TypeError(f"Stepper needs a front-end model (kame.model.LMModel), got {type(model).__name__}{hint}")
        batch_size = as_int(batch_size, "Stepper batch_size")
        if batch_size < 1:
            raise ValueError(f"Stepper batch_size must be at least 1 (one row per session), got {batch_size}")
        check_cache_memory(model, batch_size)  # (before any per-row allocation)
        self.model, self.cfg, self.batch_size = model, model.cfg, batch_size
        self.sampling = Sampling() if sampling is None else sampling
        self._seed, self._row_generators = None, []
        if seed is not None:
            seed = as_int(seed, "Stepper seed")
            if not 0 <= seed < 2**64:
                raise ValueError(f"Stepper seed must be in [0, 2**64) (torch's seeds; None: unseeded), got {seed}")
            if generator is not None:
                raise ValueError("Stepper takes a seed (per-row random streams) or a generator (one stream shared "
                                 "by the batch), not both")
            self._seed = seed
            self._row_generators = [seed_generator(torch.Generator(device=model.device), seed)
                                    for _ in range(batch_size)]
        self.generator = generator
        if model.training:
            model.eval()
        c, dev = self.cfg, model.device
        self.delays = torch.tensor(c.delays, device=dev)
        self.initial = model.initial_tokens()
        self.oracle = OracleFeed(batch_size, **oracle_ids(c), enabled=model.has_oracle)
        self._lock = threading.Lock()
        self._ops: list[tuple[str, list[int]]] = []
        self.state = StepperState(
            offsets=torch.zeros(batch_size, dtype=torch.long, device=dev),
            tokens=torch.full((batch_size, c.num_codebooks, c.max_delay + 2), UNGENERATED, device=dev),
            active=torch.full((batch_size,), bool(active), dtype=torch.bool, device=dev),
            lm=model.transformer.init_state(batch_size))

    # Sampling and generator are checked as they are set (here, and on assignment), so that a
    # step cannot fail in its sampling after it has started changing the state.
    @property
    def sampling(self) -> Sampling:
        return self._sampling

    @sampling.setter
    def sampling(self, sampling: Sampling) -> None:
        if not isinstance(sampling, Sampling):
            raise TypeError(f"Stepper sampling must be a kame.model.Sampling (e.g. Sampling(greedy=True)), got "
                            f"{type(sampling).__name__} {sampling!r}")
        self._sampling = sampling

    @property
    def generator(self) -> torch.Generator | None:
        return self._generator

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"Stepper generator must be a torch.Generator or None, got {type(generator).__name__}")
        if generator is not None and self._seed is not None:
            raise ValueError("this Stepper has a seed (per-row random streams): it takes no shared generator")
        if generator is not None and generator.device.type != self.model.device.type:
            raise ValueError(f"Stepper generator is on {generator.device}, the model on {self.model.device}: make it "
                             f"there, torch.Generator(device=...)")
        self._generator = generator

    @property
    def seed(self) -> int | None:
        """The per-row streams' seed (None: a shared generator or torch's global one)."""
        return self._seed

    # --- session control (thread-safe, applied at the next step) -------------------------
    def _rows(self, rows: int | Sequence[int]) -> list[int]:
        """A row (an int) or rows (ints) -> list[int], else TypeError / IndexError."""
        try:
            rows = [as_int(rows, "row")]
        except TypeError:
            if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
                raise TypeError(f"rows must be a row (an int) or a sequence of rows, got {type(rows).__name__} "
                                f"{rows!r}") from None
            rows = [as_int(r, "row") for r in rows]
        bad = [r for r in rows if not 0 <= r < self.batch_size]
        if bad:
            raise IndexError(f"rows {bad} out of range [0, {self.batch_size})")
        return rows

    @property
    def frames(self) -> list[int]:
        """Frames stepped so far by each row (= the frame index its next step works on)."""
        return self.state.offsets.tolist()

    @property
    def active(self) -> list[bool]:
        return self.state.active.tolist()

    def reset(self, rows: int | Sequence[int] | None = None) -> None:
        """Start fresh sessions in `rows` (a row, rows, or all when None); they are also resumed."""
        rows = list(range(self.batch_size)) if rows is None else self._rows(rows)
        with self._lock:  # queued together with the oracle clear: both land in the same step
            self._ops.append(("reset", rows))
            for r in rows:
                self.oracle.clear(r)

    def pause(self, rows: int | Sequence[int]) -> None:
        """Freeze rows: they do not advance, their outputs are invalid, their inputs ignored."""
        rows = self._rows(rows)
        with self._lock:
            self._ops.append(("pause", rows))

    def resume(self, rows: int | Sequence[int]) -> None:
        rows = self._rows(rows)
        with self._lock:
            self._ops.append(("resume", rows))

    def _apply_ops(self) -> list[int]:
        """Apply the queued session and oracle operations; returns the rows' frames.
        Lock order: the stepper's lock, then the oracle's."""
        with self._lock:
            ops, self._ops = self._ops, []
            self._apply_session_ops(ops)
            frames = self.state.offsets.tolist()
            self.oracle._apply(frames)
        return frames

    def _apply_session_ops(self, ops: list[tuple[str, list[int]]]) -> None:
        s = self.state
        for op, rows in ops:
            mask = torch.zeros(self.batch_size, dtype=torch.bool, device=s.offsets.device)
            mask[rows] = True
            if op == "reset":
                for r in rows if self._seed is not None else ():  # a new session: its stream anew
                    seed_generator(self._row_generators[r], self._seed)
                s.offsets.masked_fill_(mask, 0)
                s.tokens.masked_fill_(mask[:, None, None], UNGENERATED)
                s.lm.reset(mask)
                s.active |= mask
            elif op == "pause":
                s.active &= ~mask
            else:
                s.active |= mask

    def _check_user_codes(self, user_codes: torch.Tensor | None) -> torch.Tensor:
        c, B, nu = self.cfg, self.batch_size, self.cfg.n_user_q
        if (not isinstance(user_codes, torch.Tensor) or user_codes.dim() != 2 or user_codes.shape[0] != B
                or user_codes.shape[1] < nu or not_ids(user_codes)):  # (bool too: refused as rows are)
            got = tuple(user_codes.shape) if isinstance(user_codes, torch.Tensor) else type(user_codes).__name__
            dt = f" {user_codes.dtype}" if isinstance(user_codes, torch.Tensor) else ""
            raise ValueError(f"user_codes must be integer codes [B, n_user_q] = {(B, nu)}, got {got}{dt}")
        user_codes = user_codes[:, :nu]  # extra codebooks (a codec with more) are ignored, as in moshi
        lo, hi = int(user_codes.min()), int(user_codes.max())
        if lo < -1 or hi > c.card:
            raise ValueError(f"user_codes must be audio codes in [0, {c.card}) (or -1 / {c.card}), got [{lo}, {hi}]")
        return user_codes

    def _row_noise(self, run: list[bool], n_text: int, n_audio: int) -> tuple:
        """Per-row streams: the Exp(1) noise of this step's samples, [B, n_text] and [B, dep_q,
        n_audio] (None where nothing is sampled), each running row's drawn from its own generator
        in one call; paused rows get ones (their samples are dropped) and keep their streams."""
        dq = self.cfg.dep_q if n_audio else 0
        n = n_text + dq * n_audio
        if not n:
            return None, None
        noise = torch.ones(self.batch_size, n, device=self.model.device)
        for row, (go, g) in enumerate(zip(run, self._row_generators)):
            if go:
                noise[row].exponential_(1, generator=g)
        return (noise[:, :n_text] if n_text else None,
                noise[:, n_text:].view(self.batch_size, dq, n_audio) if dq else None)

    # --- the step ------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, user_codes: torch.Tensor | None) -> StepOutput:
        """user_codes [B, >= n_user_q] int (or None when n_user_q == 0) -> StepOutput."""
        # (the sampling as it is now, for the whole step: a field set meanwhile, from another thread,
        # cannot change the noise's size between the text and the audio samples)
        model, c, s, sp = self.model, self.cfg, self.state, copy.copy(self.sampling)
        B, K, CT = self.batch_size, c.num_codebooks, s.tokens.shape[2]
        nu = c.n_user_q
        if nu:  # checked before anything changes: a bad call leaves the stepper as it was
            user_codes = self._check_user_codes(user_codes)
        frames = self._apply_ops()
        run = s.active.clone()
        run_rows = run.tolist() if model.has_oracle or self._seed is not None else None  # (one sync)
        if nu:
            # Write the user's codes where their delayed stream will read them.
            user_delays = self.delays[c.dep_q + 1:]
            where = ((s.offsets[:, None] + user_delays[None]) % CT)[:, :, None]  # [B, nu, 1]
            buf = s.tokens[:, c.dep_q + 1:]
            old = buf.gather(2, where)
            buf.scatter_(2, where, torch.where(run[:, None, None], user_codes.to(buf)[:, :, None], old))
        # The input of this step: position `offset` of every stream, BOS while a delay fills.
        pos = (s.offsets % CT)[:, None, None].expand(B, K, 1)
        inp = s.tokens.gather(2, pos)[:, :, 0]  # [B, K]
        is_init = (s.offsets[:, None] <= self.delays[None]) | ~run[:, None]
        inp = torch.where(is_init, self.initial[None], inp)
        # Oracle token of this frame, per row.
        oracle_in = torch.full((B,), -1, dtype=torch.long, device=inp.device)
        if model.has_oracle:
            oracle_in = torch.tensor(self.oracle._next(frames, run_rows), device=inp.device)
        out, text_logits = model.forward_text(inp[:, :, None], oracle_in[:, None] if model.has_oracle else None,
                                              state=s.lm, exec_mask=run)
        text_logits = text_logits[:, 0]  # [B, V]
        text_noise = audio_noise = None
        if self._seed is not None:
            text_noise, audio_noise = self._row_noise(
                run_rows, sample_draws(text_logits.shape[-1], sp.temp_text, sp.top_k_text, sp.greedy),
                sample_draws(c.card, sp.temp, sp.top_k, sp.greedy) if c.dep_q else 0)
        text = sample(text_logits, sp.temp_text, sp.top_k_text, sp.greedy, self.generator, text_noise)
        audio, audio_logits = None, text_logits.new_zeros(B, 0, c.card)
        if c.dep_q:
            codebook = iter(range(c.dep_q))  # (the depformer samples its codebooks in order)
            audio, audio_logits = model.depformer_generate(text, out, lambda lg: sample(
                lg, sp.temp, sp.top_k, sp.greedy, self.generator,
                None if audio_noise is None else audio_noise[:, next(codebook)]))
        extra = [p[:, 0] for p in model.extra_head_probs(out)]
        # Store the sampled tokens at the next position (only for running rows).
        s.offsets += run.long()
        wpos = (s.offsets % CT)[:, None, None]
        new = text[:, None] if audio is None else torch.cat([text[:, None], audio], dim=1)  # [B, 1 + dep_q]
        buf = s.tokens[:, : 1 + c.dep_q]
        wpos = wpos.expand(B, 1 + c.dep_q, 1)
        buf.scatter_(2, wpos, torch.where(run[:, None, None], new[:, :, None], buf.gather(2, wpos)))
        # Output: all model streams realigned to frame offset - 1 - max_delay.
        md = c.max_delay
        gen_delays = self.delays[: 1 + c.dep_q]
        idx = ((s.offsets[:, None] - md + gen_delays[None]) % CT)[:, :, None]
        outs = s.tokens[:, : 1 + c.dep_q].gather(2, idx)[:, :, 0]  # [B, 1 + dep_q]
        valid = run & (s.offsets > md)
        outs = torch.where(valid[:, None], outs, torch.full_like(outs, UNGENERATED))
        return StepOutput(text=outs[:, 0], audio=outs[:, 1:], valid=valid, frame=s.offsets - 1 - md,
                          text_logits=text_logits, audio_logits=audio_logits, sampled_text=text,
                          extra_heads=extra, oracle_in=oracle_in)
