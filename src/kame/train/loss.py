"""The front-end's training loss (KAME's: text + audio, text padding at half weight, the semantic
codebook at 100x the acoustic ones).

    out = model(codes, oracle=oracle)
    loss, parts = frontend_loss(out, codes, model.cfg, tcfg)   # parts: {"text": ..., "audio": ...}

Each part is made of per-position cross-entropies (ce) over the positions the forward says have
a target (``out.text_mask`` / ``out.mask``: the delays' tails and -1 codes are left out):

    text  = mean(ce over word positions) + text_pad_weight * mean(ce over padding positions)
            (KAME's formula: two means, each over its own positions; a padding position is one whose
            target is the padding id, cfg.existing_text_padding_id; the end-of-padding id, "a word
            starts next frame", counts as a word position, as in KAME)
    audio = sum(w * ce) / sum(w),  w = semantic_weight for codebook 0, acoustic_weight for the others
    loss  = text + audio

The text part differs from moshi-finetune's, which takes one weighted mean over all text
positions, sum(w * ce) / sum(w), with both the padding and end-of-padding ids at the lower
weight: there the padding's share of the loss shrinks as words get denser; here words and padding
are each averaged first, so a window of few words still gives its words a full-weight mean. The
audio part is moshi-finetune's weighted mean (the weights change each codebook's share, not the
loss's scale: 100:1 makes codebook 0 about 100/(100 + dep_q - 1) of it). A mean over no position
is 0, still attached to the graph (DistributedDataParallel wants every step's graph to reach the
same parameters).
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
    acoustic_weight (a TrainConfig). See the module docstring for the formula."""
    tmask = out.text_mask[:, 0]  # [B, T]
    ttgt = codes[:, 0][tmask]
    tlogits = out.text_logits[:, 0][tmask]
    pad = ttgt == cfg.existing_text_padding_id
    ones = torch.ones(ttgt.shape, dtype=torch.float32, device=ttgt.device)
    text = weighted_ce(tlogits, ttgt, ones * ~pad) + tcfg.text_pad_weight * weighted_ce(tlogits, ttgt, ones * pad)
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
