"""LMModel's training forward is what the roadmap's fine-tuning will use (kame.train's plan):
its masked losses are finite, every part of the model gets a gradient (the oracle embedding too),
a few optimizer steps fit a fixed batch, and the oracle stream changes the text predictions.
One tiny random model, CPU, one thread, fixed seeds."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kame.model.config import preset
from kame.model.lm import LMModel


def losses(model: LMModel, codes: torch.Tensor, oracle: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(text loss, audio loss): cross-entropy over the valid positions the masks give."""
    out = model(codes, oracle=oracle)
    text = F.cross_entropy(out.text_logits[out.text_mask], codes[:, :1][out.text_mask])
    audio_codes = codes[:, 1: 1 + model.cfg.dep_q]
    audio = F.cross_entropy(out.logits[out.mask], audio_codes[out.mask])
    return text, audio


def batch(cfg, B: int = 2, T: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(0, cfg.text_card, (B, 1, T), generator=g)
    audio = torch.randint(0, cfg.card, (B, cfg.n_q, T), generator=g)
    oracle = torch.randint(0, cfg.text_card, (B, T), generator=g)
    return torch.cat([text, audio], dim=1), oracle


def test_every_part_learns_from_the_masked_losses():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LMModel(preset("tiny"))
    codes, oracle = batch(model.cfg)
    text, audio = losses(model, codes, oracle)
    assert torch.isfinite(text) and torch.isfinite(audio)  # no NaN from the masked positions
    (text + audio).backward()
    for name in ("text_emb", "oracle_emb", "emb.0", "transformer", "text_linear", "depformer", "linears.0"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_a_few_steps_fit_a_fixed_batch_and_the_oracle_matters():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LMModel(preset("tiny"))
    codes, oracle = batch(model.cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        text, audio = losses(model, codes, oracle)
        loss = text + audio
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first, (first, loss.item())
    with torch.no_grad():  # the same codes with another oracle: other text predictions
        other = (oracle + 1) % model.cfg.text_card
        a, b = model(codes, oracle=oracle).text_logits, model(codes, oracle=other).text_logits
        valid = model(codes, oracle=oracle).text_mask
        assert (a[valid] - b[valid]).abs().max() > 1e-3


@torch.no_grad()
def test_inputs_change_what_the_model_reads_not_the_targets():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LMModel(preset("tiny")).eval()
    cfg = model.cfg
    codes, oracle = batch(cfg)
    codes[0, 0, 3] = -1  # no text target there
    ref = model(codes, oracle=oracle)
    same = model(codes, oracle=oracle, inputs=codes.clone())
    for name in ("logits", "mask", "text_logits", "text_mask"):
        assert torch.equal(getattr(ref, name).nan_to_num(), getattr(same, name).nan_to_num()), name
    # KAME-style input dropouts: text to pad from frame 5 on, the user's semantic stream zeroed
    inputs = codes.clone()
    inputs[:, 0, 5:] = cfg.existing_text_padding_id
    inputs[:, 1 + cfg.dep_q] = -1
    out = model(codes, oracle=oracle, inputs=inputs)
    assert torch.equal(out.mask, ref.mask) and torch.equal(out.text_mask, ref.text_mask)  # from codes
    assert not out.text_mask[0, 0, 3]
    # the first position sees only BOS frames (the user's stream is read from position 1 on)
    assert torch.equal(out.text_logits[:, :, 0], ref.text_logits[:, :, 0])
    assert (out.text_logits[:, :, 1:] - ref.text_logits[:, :, 1:]).abs().amax(-1).min() > 1e-4
    # an input zeroed (-1) where codes hold a target: still a target
    inputs = codes.clone()
    inputs[:, 0, 7] = -1
    out = model(codes, oracle=oracle, inputs=inputs)
    assert out.text_mask[:, 0, 7].all() and torch.equal(out.text_mask, ref.text_mask)
    assert (out.text_logits[:, :, 8] - ref.text_logits[:, :, 8]).abs().max() > 1e-4
    assert torch.equal(out.text_logits[:, :, :8], ref.text_logits[:, :, :8])  # causal: earlier ones unchanged
    # the depformer is teacher-forced with codes, not inputs (KAME's dropouts are the temporal
    # transformer's): the model's semantic code of the last frame, which only the depformer reads,
    # changed in inputs changes nothing
    assert cfg.delays[1] == 0
    inputs = codes.clone()
    inputs[:, 1, -1] = (codes[:, 1, -1] + 1) % cfg.card
    out = model(codes, oracle=oracle, inputs=inputs)
    for name in ("logits", "text_logits"):
        assert torch.equal(getattr(out, name).nan_to_num(), getattr(ref, name).nan_to_num()), name


def test_no_oracle_feeds_pad_so_every_parameter_gets_a_gradient():
    """oracle=None on a model with an oracle stream = pad at every step (what the stepper feeds
    with no prediction): oracle_emb stays in the graph, so DDP does not find an unused parameter."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LMModel(preset("tiny"))
    codes, _ = batch(model.cfg)
    pad = torch.full(codes[:, 0].shape, model.cfg.existing_text_padding_id)
    with torch.no_grad():
        a, b = model(codes), model(codes, oracle=pad)
        assert torch.equal(a.text_logits.nan_to_num(), b.text_logits.nan_to_num())
        assert torch.equal(a.logits.nan_to_num(), b.logits.nan_to_num())
    text, audio = losses(model, codes, None)
    (text + audio).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, unused
    assert model.oracle_emb.weight.grad[model.cfg.existing_text_padding_id].abs().sum() > 0


def test_layer_norm_f32_computes_in_fp32_with_bf16_weights():
    """A layer_norm_f32 config's norm with bf16 weights (FSDP's mixed precision casts them, `kame
    train --shard --precision bf16`) still normalizes in fp32 (was: a dtype error)."""
    from kame.model.modules import LayerNormF32

    torch.manual_seed(0)
    norm = LayerNormF32(16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.1, 0.1)
    x = torch.randn(2, 3, 16)
    want = norm(x)
    got = norm.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16 and torch.allclose(got.float(), want, atol=0.05)


def test_a_new_front_end_starts_with_each_oracle_token_among_its_likeliest_text_tokens():
    """init_weights' copy-ready oracle_emb: at step 0 the frame's oracle token is most often the top
    text logit (was: ranked ~1 000th or so, its table a copy of text_emb's), so a front-end trained
    from scratch has its oracle at hand; the start id keeps text_emb's row."""
    torch.manual_seed(0)
    cfg = preset("small").replace(text_card=4000)  # 256 wide: narrower than its vocabulary
    model = LMModel(cfg).eval()
    codes, _ = batch(cfg, B=4, T=64)
    tokens = torch.randint(4, cfg.text_card, (4, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(codes, oracle=tokens).text_logits[:, 0]  # [B, T, text_card]
    ranks = (logits > logits.gather(2, tokens[..., None])).sum(2).flatten().float()
    assert float((ranks == 0).float().mean()) >= 0.6 and ranks.median() == 0 and ranks.mean() < 20, ranks.tolist()
    assert torch.equal(model.oracle_emb.weight[cfg.text_card], model.text_emb.weight[cfg.text_card])
