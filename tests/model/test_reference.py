"""kame's front-end LM == the moshi reference package, on tiny Moshi- and STT-shaped configs
with the same random weights (a safetensors file loaded by both through their own loaders)."""

import pytest
import torch

from ._ref import make_checkpoint, moshi_kwargs, moshi_lm
from kame.model.loaders import load_frontend
from kame.model.stepper import Sampling, Stepper

pytest.importorskip("moshi.models")
from moshi.models.lm import LMGen  # noqa: E402


def _codes(B, T, text_card=300, card=100, n_q=16):
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, card, (B, n_q + 1, T), generator=g)
    codes[:, 0] = torch.randint(0, text_card, (B, T), generator=g)
    codes[0, 3, 5] = -1  # zero token
    codes[1, 0, 7] = -1
    return codes


@pytest.fixture(scope="module")
def moshi_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moshi_ckpt")
    make_checkpoint(folder, "moshi")
    return folder


@pytest.fixture(scope="module")
def stt_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stt_ckpt")
    make_checkpoint(folder, "stt", extra={"model_type": "stt",
                                          "stt_config": {"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.0}})
    return folder


@torch.no_grad()
def test_training_forward_matches_moshi(moshi_ckpt):
    ref = moshi_lm(moshi_kwargs(), moshi_ckpt / "model.safetensors")
    model, info = load_frontend(moshi_ckpt, oracle=False)
    codes = _codes(2, 20)
    a, b = ref(codes), model(codes)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.text_mask, b.text_mask)
    assert torch.allclose(a.logits.nan_to_num(), b.logits.nan_to_num(), atol=1e-4)
    assert torch.allclose(a.text_logits.nan_to_num(), b.text_logits.nan_to_num(), atol=1e-4)
    assert set(ref.state_dict()) == set(model.state_dict())


@torch.no_grad()
def test_oracle_neutral_inputs_match_moshi(moshi_ckpt):
    """With the oracle stream on: an all zero-token (-1) oracle == moshi (the oracle only enters as
    a sum at the temporal input; forward adds no token of its own); an all-pad oracle, which
    oracle=None feeds too, == moshi once the pad row is zero."""
    ref = moshi_lm(moshi_kwargs(), moshi_ckpt / "model.safetensors")
    model, info = load_frontend(moshi_ckpt, oracle=True)
    assert info.oracle_upgraded
    codes = _codes(2, 12)
    a = ref(codes)
    b = model(codes, oracle=torch.full((2, 12), -1))
    assert torch.allclose(a.logits.nan_to_num(), b.logits.nan_to_num(), atol=1e-4)
    assert torch.allclose(a.text_logits.nan_to_num(), b.text_logits.nan_to_num(), atol=1e-4)
    # pad (what the stepper feeds with no prediction; oracle=None too) is an input...
    assert not torch.allclose(a.text_logits.nan_to_num(), model(codes).text_logits.nan_to_num(), atol=1e-4)
    model.oracle_emb.weight.data[3] = 0.0  # ...that adds nothing once its row is zero
    for c in (model(codes, oracle=torch.full((2, 12), 3)), model(codes)):
        assert torch.allclose(a.logits.nan_to_num(), c.logits.nan_to_num(), atol=1e-4)
        assert torch.allclose(a.text_logits.nan_to_num(), c.text_logits.nan_to_num(), atol=1e-4)
    # The stepper with the oracle stream on and no prediction feeds pad: == moshi's LMGen.
    want, got, _, _ = _greedy_both(ref, model, 2, 20, 8)
    assert torch.equal(want, got)
    # ...and a real oracle changes the text logits (it is not ignored).
    d = model(codes, oracle=torch.randint(4, 300, (2, 12)))
    assert not torch.allclose(a.text_logits.nan_to_num(), d.text_logits.nan_to_num(), atol=1e-3)


@torch.no_grad()
def _greedy_both(ref, model, B, T, n_user):
    user = torch.randint(0, 100, (B, n_user, T), generator=torch.Generator().manual_seed(2))
    gen = LMGen(ref, use_sampling=False)
    stepper = Stepper(model, B, Sampling(greedy=True))
    got, want, heads_ref, heads = [], [], [], []
    with gen.streaming(B):
        for t in range(T):
            if model.cfg.extra_heads_num_heads:
                r = gen.step_with_extra_heads(user[:, :, t: t + 1])
            else:
                r = gen.step(user[:, :, t: t + 1])
            o = stepper.step(user[:, :, t])
            if r is None:
                assert not o.valid.any()
                continue
            assert o.valid.all()
            if model.cfg.extra_heads_num_heads:
                r, eh = r
                heads_ref.append(torch.stack([h[:, 0] for h in eh]))
                heads.append(torch.stack(o.extra_heads))
            want.append(r[:, :, 0])
            got.append(torch.cat([o.text[:, None], o.audio], dim=1))
    return torch.stack(want), torch.stack(got), heads_ref, heads


def test_greedy_50_frames_match_moshi(moshi_ckpt):
    ref = moshi_lm(moshi_kwargs(), moshi_ckpt / "model.safetensors")
    model, _ = load_frontend(moshi_ckpt, oracle=False)
    want, got, _, _ = _greedy_both(ref, model, 2, 50, 8)  # context 12: the KV ring buffer wraps
    assert want.shape == (49, 2, 9)
    assert torch.equal(want, got)
    assert len(set(got[:, 0, 0].tolist())) > 3  # not a constant stream


def test_stt_shape_matches_moshi(stt_ckpt):
    kw = moshi_kwargs("stt")
    ref = moshi_lm(kw, stt_ckpt / "model.safetensors")
    model, info = load_frontend(stt_ckpt)
    assert not model.has_oracle and info.model_type == "stt" and model.cfg.dep_q == 0
    codes = _codes(2, 10, n_q=8)
    with torch.no_grad():  # moshi's training forward needs a depformer: compare the temporal pass
        init = torch.tensor([300] + [100] * 8).view(1, 9, 1).expand(2, 9, 1)
        seq = torch.cat([init, codes[:, :, :-1]], dim=2)  # delays are all 0
        _, a = ref.forward_text(seq)
        b = model(codes)
    assert torch.allclose(a.nan_to_num(), b.text_logits.nan_to_num(), atol=1e-4)
    want, got, heads_ref, heads = _greedy_both(ref, model, 2, 30, 8)
    assert got.shape[-1] == 1 and torch.equal(want, got)
    assert len(heads) == len(want) and torch.allclose(torch.stack(heads_ref), torch.stack(heads), atol=1e-5)


@pytest.mark.parametrize("extra", [
    # grouped-query attention, LayerScale, low-rank + demuxed text embeddings, depformer norms,
    # sin+rope, rope in the depformer, a weight-sharing schedule, biases, a larger text output
    dict(kv_repeat=2, layer_scale=0.1, depformer_low_rank_embeddings=16, demux_second_stream=True,
         depformer_norm="layer_norm", positional_embedding="sin_rope", depformer_pos_emb="rope",
         depformer_weights_per_step_schedule=[0, 0, 1, 1, 2, 2, 3, 3], bias_proj=True, text_card_out=310,
         extra_heads_num_heads=1, norm="layer_norm"),
    # plain GELU feed-forward in the temporal transformer, embedding norms, no multi-linear
    dict(gating="none", norm_emb=True, depformer_multi_linear=False,
         depformer_dim_feedforward=[96, 96, 64, 64, 96, 96, 64, 64], norm="rms_norm", positional_embedding="sin"),
])
@torch.no_grad()
def test_config_variants_match_moshi(tmp_path, extra):
    raw, _ = make_checkpoint(tmp_path, "moshi", extra=extra)
    kw = moshi_kwargs()
    kw.update(extra)
    ref = moshi_lm(kw, tmp_path / "model.safetensors")
    model, _ = load_frontend(tmp_path, oracle=False)
    codes = _codes(2, 10)
    if extra.get("demux_second_stream"):
        codes[:, 0, 3] = 5 * 301 + 7  # a muxed pair of text tokens
    a, b = ref(codes), model(codes)
    assert torch.allclose(a.logits.nan_to_num(), b.logits.nan_to_num(), atol=1e-4)
    assert torch.allclose(a.text_logits.nan_to_num(), b.text_logits.nan_to_num(), atol=1e-4)
    want, got, _, _ = _greedy_both(ref, model, 1, 12, 8)
    assert torch.equal(want, got)
