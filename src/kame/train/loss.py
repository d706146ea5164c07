"""The front-end's training loss (KAME's: text + audio, text padding at half weight, the semantic
codebook at 100x the acoustic ones).

    out = model(codes, oracle=oracle)
    loss, parts = frontend_loss(out, codes, model.cfg, tcfg)   # parts: {"text": ..., "audio": ...}

Each part is a weighted mean of per-position cross-entropies over the positions the forward says
have a target (``out.text_mask`` / ``out.mask``: the delays' tails and -1 codes are left out):

    text  = sum(w * ce) / sum(w),  w = text_pad_weight where the target is the padding id
            (cfg.existing_text_padding_id), else 1 (the end-of-padding id, "a word starts next
            frame", keeps full weight)
    audio = sum(w * ce) / sum(w),  w = semantic_weight for codebook 0, acoustic_weight for the others
    loss  = text + audio

(moshi-finetune's normalisation: the weights change each position's share, not the loss's scale,
so 100:1 makes codebook 0 about 100/(100 + dep_q - 1) of the audio part.) A part with no valid
position is 0, still attached to the graph (DistributedDataParallel wants every step's graph to
reach the same parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_ce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(weights * cross_entropy) / sum(weights) over the given positions ([N, V], [N], [N])."""
    if targets.numel() == 0 or float(weights.sum()) == 0.0:
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    return (ce * weights).sum() / weights.sum()


def frontend_loss(out, codes: torch.Tensor, cfg, tcfg) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, {"text", "audio"}) of a training forward ``out`` (LMOutput) against ``codes``
    [B, K, T] (the targets the forward was given). ``tcfg``: text_pad_weight, semantic_weight,
    acoustic_weight (a TrainConfig). See the module docstring for the weighting."""
    tmask = out.text_mask[:, 0]  # [B, T]
    ttgt = codes[:, 0][tmask]
    tw = torch.ones(ttgt.shape, dtype=torch.float32, device=ttgt.device)
    tw[ttgt == cfg.existing_text_padding_id] = tcfg.text_pad_weight
    text = weighted_ce(out.text_logits[:, 0][tmask], ttgt, tw)
    dep_q = out.logits.shape[1]
    if dep_q:
        amask = out.mask  # [B, dep_q, T]
        atgt = codes[:, 1: 1 + dep_q][amask]
        per_cb = torch.full((dep_q,), float(tcfg.acoustic_weight), device=atgt.device)
        per_cb[0] = tcfg.semantic_weight
        aw = per_cb[None, :, None].expand(amask.shape)[amask]
        audio = weighted_ce(out.logits[amask], atgt, aw)
    else:  # a text-only config (Kyutai STT shape)
        audio = text.new_zeros(())
    loss = text + audio
    return loss, {"text": float(text.detach()), "audio": float(audio.detach())}
