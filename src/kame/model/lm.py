"""The front-end LM: Moshi's temporal transformer + depformer, plus KAME's oracle stream.

Streams (channel k of the [B, K = n_q + 1, T] code tensor):
    k = 0                 text (inner monologue), vocab text_card (+1 for the BOS id text_card)
    k = 1 .. dep_q        the model's own audio codebooks (predicted by the depformer)
    k = dep_q+1 .. n_q    the user's audio codebooks (inputs only)
Each stream k is delayed by delays[k] frames. Id -1 is the "zero token": it embeds to zero.
The oracle (KAME) is one more text-vocabulary stream, embedded with its own table ``oracle_emb``
and summed into the temporal transformer's input only (the depformer never sees it).

    model = LMModel(preset("tiny"))
    out = model(codes, oracle=oracle_tokens)   # training forward: logits aligned with codes,
    #                                            oracle_tokens[:, t] = what the stepper feeds at step t
    # streaming: see kame.model.stepper.Stepper

Parameter names are those of moshi's LMModel (plus ``oracle_emb.weight``), so published
checkpoints load directly (kame.model.loaders).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .config import LMConfig
from .modules import ScaledEmbedding, Transformer, TransformerState, make_norm

# init_weights: the length of each oracle token's embedding at init, along its text_linear row (the
# other embeddings are ~1 long: at 10 the frame's oracle token is among the few likeliest text tokens)
ORACLE_INIT_NORM = 10.0


@dataclass
class LMOutput:
    logits: torch.Tensor  # [B, dep_q, T, card], aligned with codes[:, 1:dep_q+1] (NaN where invalid)
    mask: torch.Tensor  # [B, dep_q, T] valid positions
    text_logits: torch.Tensor  # [B, 1, T, text_card_out], aligned with codes[:, :1]
    text_mask: torch.Tensor  # [B, 1, T]


def not_ids(x: torch.Tensor) -> bool:
    """Whether a tensor's dtype can hold no ids: bool, float or complex (the model and the stepper
    take integer tensors only)."""
    return x.dtype == torch.bool or x.is_floating_point() or x.is_complex()


def check_id_tensor(x, name: str, shape: str) -> None:
    """Ids given to the model (codes, inputs, oracle) are an integer tensor (not bool), else a
    one-line TypeError naming ``name`` (was: a float tensor's RuntimeError deep in torch)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be an integer tensor {shape}, got {type(x).__name__}")
    if not_ids(x):
        raise TypeError(f"{name} must be an integer tensor {shape} of ids, got dtype {x.dtype}")


def check_ids(checks: list[tuple[torch.Tensor, str, list[tuple[str, int | None, int | None, int]]]]) -> None:
    """The ranges of ids given to the model (tensors checked by check_id_tensor): per ``(x, name,
    groups)`` and per group of streams ``(what, first, end, n)`` (streams ``first .. end - 1`` of
    dim 1, or the whole tensor when first is None), ids in [-1, n) (-1: the zero token, or no
    target), else a one-line ValueError naming ``name`` and the range (was: a torch IndexError in an
    embedding or the loss, ids below -1 taken as 0 silently). One min/max per group, all read with
    one ``.tolist()`` (one device sync per forward)."""
    parts, groups = [], []
    for x, name, streams in checks:
        for what, first, end, n in streams:
            part = x if first is None else x[:, first:end]
            if part.numel():
                parts += [part.min().long(), part.max().long()]
                groups.append((name, what, first, end, n))
    if not parts:
        return
    values = torch.stack([v.to(parts[0].device) for v in parts]).tolist()
    for (name, what, first, end, n), lo, hi in zip(groups, values[::2], values[1::2]):
        if lo < -1 or hi >= n:
            where = "" if first is None else f" (streams {first}..{end - 1})" if end - first > 1 else f" (stream {first})"
            note = ("the logits' classes: a BOS id is an input only, for inputs=; or -1: no target"
                    if what.endswith("target") else "or -1: no token")
            raise ValueError(f"{name}: {what} ids{where} must be in [0, {n}) ({note}), got ids in [{lo}, {hi}]")


def delay_codes(codes: torch.Tensor, delays: list[int], initial: torch.Tensor) -> torch.Tensor:
    """codes [B, K, T] -> delayed [B, K, T]: stream k shifted right by delays[k], filled with initial[k]."""
    out = codes.clone()
    for k, d in enumerate(delays):
        if d > 0:
            out[:, k, d:] = codes[:, k, :-d]
            out[:, k, :d] = initial[k]
    return out


def undelay_logits(logits: torch.Tensor, delays: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, K, T, V] -> realigned logits and mask [B, K, T] (False/NaN for the last d steps)."""
    B, K, T = logits.shape[:3]
    mask = torch.ones(B, K, T, dtype=torch.bool, device=logits.device)
    out = logits.clone()
    for k, d in enumerate(delays):
        if d > 0:
            out[:, k, : T - d] = logits[:, k, d:]
            out[:, k, T - d:] = float("nan")
            mask[:, k, T - d:] = False
    return out, mask


class LMModel(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg = cfg.validate()
        D, Dd = cfg.dim, cfg.depformer_dim
        demux = cfg.demux_second_text_stream
        self.emb = nn.ModuleList([ScaledEmbedding(cfg.card + 1, D, norm=cfg.norm_emb) for _ in range(cfg.n_q)])
        self.text_emb = ScaledEmbedding(cfg.text_card + 1, D, norm=cfg.norm_emb, demux=demux)
        self.oracle_emb = ScaledEmbedding(cfg.text_card + 1, D, norm=cfg.norm_emb, demux=demux) if cfg.oracle else None
        self.text_linear = nn.Linear(D, cfg.text_card_out or cfg.text_card, bias=cfg.bias_proj)
        self.transformer = Transformer(
            D, cfg.num_heads, cfg.num_layers, [cfg.ffn_dim], norm=cfg.norm, gating=cfg.gating,
            kv_repeat=cfg.kv_repeat, causal=cfg.causal, context=cfg.context, pos_emb=cfg.positional_embedding,
            max_period=cfg.max_period, positional_scale=cfg.positional_scale, layer_scale=cfg.layer_scale)
        self.out_norm = make_norm(cfg.norm, D)
        # Projections of the temporal output into the depformer (one per codebook if multi_linear).
        sched = cfg.depformer_weights_per_step_schedule
        num_in = (max(sched) + 1 if sched else cfg.dep_q) if cfg.depformer_multi_linear else 1
        self.depformer_in = nn.ModuleList([nn.Linear(D, Dd, bias=False) for _ in range(num_in)])
        if cfg.dep_q > 0:
            lr = cfg.depformer_low_rank_embeddings
            # The last codebook is never a depformer input, hence dep_q - 1 tables.
            self.depformer_emb = nn.ModuleList(
                [ScaledEmbedding(cfg.card + 1, Dd, norm=cfg.norm_emb, low_rank=lr) for _ in range(cfg.dep_q - 1)])
            self.depformer_text_emb = ScaledEmbedding(cfg.text_card + 1, Dd, norm=cfg.norm_emb, low_rank=lr, demux=demux)
            self.depformer_norms = nn.ModuleList(
                [nn.Identity() if cfg.depformer_norm is None else make_norm(cfg.depformer_norm, Dd)
                 for _ in range(cfg.dep_q)])
            self.depformer = Transformer(
                Dd, cfg.depformer_num_heads, cfg.depformer_num_layers, cfg.dep_ffn_dims, norm=cfg.norm,
                gating=cfg.depformer_gating or cfg.gating, kv_repeat=cfg.depformer_kv_repeat or cfg.kv_repeat,
                num_weights=cfg.dep_num_weights, weights_schedule=cfg.depformer_weights_per_step_schedule,
                causal=cfg.causal, context=None, pos_emb=cfg.depformer_pos_emb,
                max_period=cfg.depformer_max_period, positional_scale=cfg.positional_scale,
                layer_scale=cfg.depformer_layer_scale)
        else:  # text only (Kyutai STT)
            self.depformer_emb = self.depformer_text_emb = self.depformer = None
        self.extra_heads = nn.ModuleList(
            [nn.Linear(D, cfg.extra_heads_dim, bias=False) for _ in range(cfg.extra_heads_num_heads)])
        self.linears = nn.ModuleList([nn.Linear(Dd, cfg.card, bias=cfg.bias_proj) for _ in range(cfg.dep_q)])
        if not any(p.is_meta for p in self.parameters()):
            self.init_weights()

    # ------------------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self) -> None:
        """Random init (truncated normal, std 1/sqrt(fan_in)); oracle_emb: a copy-ready start.

        Each oracle id's row (the padding ids' too) lies along its own row of text_linear,
        ORACLE_INIT_NORM long: at step 0 the frame's oracle token is most often the top text logit
        (an all-pad oracle: pad), so a front-end trained from scratch has copying its oracle at
        hand. With oracle_emb a copy of text_emb, a 256-wide model with 4 000 text ids did not learn
        to copy even an oracle aligned to its speech in 475 steps; with this start it did in 50
        (BENCHMARKS.md, "A fourth attempt"). The start id (no text_linear row) and a demuxed table
        keep text_emb's rows; with norm_emb the table's LayerNorm undoes the length. A checkpoint
        without oracle_emb (Moshi's) gets a copy of its trained text_emb instead, as KAME
        (kame.model.loaders)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                fan_in = m.weight.shape[1]
                std = 1 / fan_in ** 0.5
                nn.init.trunc_normal_(m.weight, std=std, a=-3 * std, b=3 * std)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
        if self.oracle_emb is not None:
            self.oracle_emb.load_state_dict(self.text_emb.state_dict())
            out = self.text_linear.weight  # [text_card_out, D]
            table = self.oracle_emb.weight  # [text_card + 1, D]
            if table.shape[1] == out.shape[1] and not self.oracle_emb.demux:
                n = min(out.shape[0], table.shape[0])
                table[:n] = out[:n] / out[:n].norm(dim=1, keepdim=True) * ORACLE_INIT_NORM

    @property
    def device(self) -> torch.device:
        return self.text_emb.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.text_emb.weight.dtype

    @property
    def has_oracle(self) -> bool:
        return self.oracle_emb is not None

    def initial_tokens(self) -> torch.Tensor:
        """[K] the BOS id of each stream: text_card for text, card for audio."""
        c = self.cfg
        return torch.tensor([c.text_card] + [c.card] * c.n_q, device=self.device)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------------------------
    def forward_text(self, seq: torch.Tensor, oracle: torch.Tensor | None = None,
                     state: TransformerState | None = None,
                     exec_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Temporal transformer. seq [B, K, S] (already delayed), oracle [B, S] or None.
        Returns transformer_out [B, S, D] (after out_norm) and text_logits [B, S, text_card_out]."""
        x = None
        for k in range(self.cfg.n_q):
            e = self.emb[k](seq[:, k + 1])
            x = e if x is None else x + e
        text = self.text_emb(seq[:, 0])
        if oracle is not None:
            if self.oracle_emb is None:
                raise ValueError("this model has no oracle stream (config oracle=False)")
            text = text + self.oracle_emb(oracle)
        x = text if x is None else x + text  # [B, S, D]
        out = self.out_norm(self.transformer(x, state=state, exec_mask=exec_mask))
        return out, self.text_linear(out)

    def forward(self, codes: torch.Tensor, oracle: torch.Tensor | None = None,
                inputs: torch.Tensor | None = None) -> LMOutput:
        """Training forward: the Stepper's computation over a whole session (teacher forced).

        codes [B, K, T]: frame t of every stream, undelayed (the delays are applied here): the
        targets; -1 = no target there (masked). Logits and masks are aligned with codes. The
        predicted streams' ids (text, audio 1..dep_q) are the logits' classes: [0, text_card_out or
        text_card) and [0, card) (their BOS ids are inputs only: a ValueError here, not the loss's
        IndexError; a demuxed config's text pairs are checked as inputs); the user's streams take
        their BOS id too.
        inputs [B, K, T] (default codes): what the temporal transformer reads, laid out as codes;
        -1 embeds to zero. Input-only changes (KAME's input dropouts: text tokens dropped to pad, a
        stream zeroed) go here; codes keep the targets and are the depformer's teacher-forced
        tokens (as KAME's fine-tune, whose dropouts change the temporal transformer's input only).
        oracle [B, T]: ``oracle[:, t]`` is exactly the token the Stepper feeds at its step t;
        nothing is added or shifted here. ``kame.model.stepper.oracle_timeline(events, T,
        **oracle_ids(cfg))`` gives it from the back-end's resets/appends (pad until the first
        prediction, its start id at the reset's frame). Step t predicts text frame t, so
        ``text_logits[:, :, t]`` sees oracle[:, :t + 1]. oracle=None on a model with an oracle
        stream: pad at every step (what the stepper feeds with no prediction; also keeps
        oracle_emb in the graph, as DDP needs); all -1 adds nothing (plain Moshi).

        Layout (the Stepper's, as in Moshi): input position t is step t. The model's frame f
        (text, audio) is what the stepper outputs as frame f. The user's streams are shifted by
        one: ``codes[:, user, f]`` holds the user codes the stepper got at step f + 1 (user frame
        f + 1 beside model frame f). So data preparation puts user frame f + 1 at column f; the
        user's frame 0 is never read (step 0 feeds BOS), nor is the last column's (-1 is fine).
        tests/model/test_stepper.py checks forward == stepper on this layout."""
        cfg = self.cfg
        K = cfg.num_codebooks
        # Checked here, one min/max per kind of stream: a bad id is a line naming it, not an
        # IndexError deep in an embedding or the loss (ids below -1 would be taken as 0 silently).
        # codes are the targets of the predicted streams (text, audio 1..dep_q): ids of the logits'
        # classes (a BOS id, text_card / card, is an input only: give it in inputs); the user's
        # streams, and inputs, are inputs only: the BOS ids are ids there.
        text_out = cfg.text_card_out or cfg.text_card  # (text_linear's size)
        # (demuxed: the text stream holds pairs of ids the depformer reads too, no class of the
        # logits: it is checked as an input; kame's loss trains no demuxed text)
        text_target = ("text", 0, 1, cfg.text_ids) if cfg.demux_second_text_stream else ("text target", 0, 1, text_out)
        ids = [("text", 0, 1, cfg.text_ids), ("audio", 1, K, cfg.card + 1)]  # (BOS: text_card, card)
        targets = [text_target, ("audio target", 1, 1 + cfg.dep_q, cfg.card),
                   ("audio", 1 + cfg.dep_q, K, cfg.card + 1)]
        check_id_tensor(codes, "codes", "[B, K, T]")
        if codes.dim() != 3 or codes.shape[1] != K:
            raise ValueError(f"codes must be [B, K = n_q + 1 = {K}, T], got shape {tuple(codes.shape)}")
        B, _, T = codes.shape
        checks = [(codes, "codes", targets)]
        if inputs is None:
            inputs = codes
        else:
            check_id_tensor(inputs, "inputs", "[B, K, T]")
            if inputs.shape != codes.shape:
                raise ValueError(f"inputs must have the shape of codes {tuple(codes.shape)}, got {tuple(inputs.shape)}")
            checks.append((inputs, "inputs", ids))
        if oracle is not None:
            if not self.has_oracle:
                raise ValueError("this model has no oracle stream (config oracle=False): give oracle=None")
            check_id_tensor(oracle, "oracle", "[B, T]")
            if oracle.shape != (B, T):
                raise ValueError(f"oracle must be [B, T] = {(B, T)} (the token fed at each step), "
                                 f"got {tuple(oracle.shape)}")
            checks.append((oracle, "oracle", [("text-vocabulary", None, None, cfg.text_ids)]))
        check_ids(checks)
        if oracle is None and self.has_oracle:  # (all pad: not checked)
            oracle = torch.full((B, T), cfg.existing_text_padding_id, dtype=torch.long, device=codes.device)
        initial = self.initial_tokens()

        def delayed_of(x: torch.Tensor) -> torch.Tensor:  # [B, K, T] -> [B, K, T + 1]: initial tokens first
            return torch.cat([initial.view(1, K, 1).expand(B, K, 1), delay_codes(x, cfg.delays, initial)], dim=2)

        delayed = delayed_of(codes)
        read = delayed if inputs is codes else delayed_of(inputs)
        out, text_logits = self.forward_text(read[:, :, :-1], oracle)
        text_logits, text_mask = undelay_logits(text_logits[:, None], cfg.delays[:1])
        text_mask &= codes[:, :1] != -1
        if cfg.dep_q == 0:
            empty = out.new_zeros(B, 0, T, cfg.card)
            return LMOutput(empty, torch.zeros(B, 0, T, dtype=torch.bool, device=out.device), text_logits, text_mask)
        logits = self.forward_depformer_training(delayed[:, :, 1:], out)
        logits, mask = undelay_logits(logits, cfg.delays[1: 1 + cfg.dep_q])
        mask &= codes[:, 1: 1 + cfg.dep_q] != -1
        return LMOutput(logits, mask, text_logits, text_mask)

    def _dep_input(self, cb: int, out: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        i = 0
        if cfg.depformer_multi_linear:
            i = cfg.depformer_weights_per_step_schedule[cb] if cfg.depformer_weights_per_step_schedule else cb
        emb = self.depformer_text_emb(token) if cb == 0 else self.depformer_emb[cb - 1](token)
        return self.depformer_in[i](out) + emb

    def forward_depformer_training(self, seq: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """seq [B, K, T] delayed codes of the current frames, out [B, T, D] -> logits [B, dep_q, T, card]."""
        B, K, T = seq.shape
        Ka = self.cfg.dep_q
        x = torch.stack([self._dep_input(cb, out, seq[:, cb]) for cb in range(Ka)], dim=2)  # [B, T, Ka, Dd]
        y = self.depformer(x.view(B * T, Ka, -1))  # [B*T, Ka, Dd]
        logits = [self.linears[cb](self.depformer_norms[cb](y[:, cb])).view(B, T, -1) for cb in range(Ka)]
        return torch.stack(logits, dim=1)

    def depformer_generate(self, text_token: torch.Tensor, out: torch.Tensor,
                           sample: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame of the depformer: text_token [B], out [B, 1, D]; sample(logits [B, card]) -> [B].
        Returns tokens [B, dep_q] and their logits [B, dep_q, card]."""
        past = [[] for _ in self.depformer.layers]
        prev, tokens, all_logits = text_token, [], []
        for cb in range(self.cfg.dep_q):
            x = self._dep_input(cb, out, prev[:, None])  # [B, 1, Dd]
            y = self.depformer(x, step=cb, past=past)
            logits = self.linears[cb](self.depformer_norms[cb](y))[:, 0]  # [B, card]
            prev = sample(logits)
            tokens.append(prev)
            all_logits.append(logits)
        return torch.stack(tokens, dim=1), torch.stack(all_logits, dim=1)

    def extra_head_probs(self, out: torch.Tensor) -> list[torch.Tensor]:
        """out [B, T, D] -> per extra head, softmax probabilities [B, T, extra_heads_dim]."""
        return [torch.softmax(h(out), dim=-1) for h in self.extra_heads]


def without_oracle(model: LMModel) -> LMModel:
    """The same weights without the oracle stream (plain Moshi), as kame run's frontend.oracle=off
    runs a front-end and kame bench step times its "no oracle" column: a shallow copy sharing every
    other module (nothing is loaded twice; a Stepper keeps its state, not the model), and ``model``
    keeps its own oracle_emb."""
    import copy

    plain = copy.copy(model)
    plain._modules = dict(model._modules)  # (its own table: the oracle_emb set to None below is the copy's)
    plain.oracle_emb = None
    plain.cfg = model.cfg.replace(oracle=False)
    return plain
