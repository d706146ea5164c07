"""The runtime runs a published-format checkpoint as it was trained: its own tokenizer (missing:
an error, not kame's default vocabulary), its lm_gen_config sampling (the user's frontend.temp
etc. win), a Mimi codec for a Mimi-trained checkpoint, and frontend.oracle auto | on | off (what
the oracle stream is: in the components kame run writes)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from kame.backend.tokenizer import DEFAULT_MODEL, TextTokenizer
from kame.cli import main
from kame.codec.mimi import build_random, save_mimi
from kame.config import load_config
from kame.errors import CheckpointError, ConfigError
from kame.model.loaders import load_frontend, save_frontend
from kame.runtime.frontend import load_frame_models

F = 1920
MIMI = "mimi_tiny.safetensors"


def make_ck(folder, *, oracle_emb=True, config_oracle=None, tokenizer=True, mimi=True, card=None, lm=None,
            mimi_cfg=None, tokenizer_name="spm.model", **meta):
    """A tiny checkpoint folder: config.json + weights (+ its Mimi + its tokenizer). ``oracle_emb``:
    whether the weights hold a (KAME) oracle_emb; config.json gets no "oracle" key (as published),
    unless ``config_oracle`` is one. ``lm``: LM config keys (n_q, dep_q, delays ...); ``mimi_cfg``:
    its Mimi's MimiConfig (default: tiny); ``tokenizer_name`` None: config.json names none."""
    codec = build_random(mimi_cfg or "tiny")
    model, _ = load_frontend("random:tiny", card=card or codec.cardinality, oracle=oracle_emb,
                             text_card=TextTokenizer(DEFAULT_MODEL).vocab_size, **(lm or {}))
    names = {"mimi_name": MIMI} if mimi else {}
    if tokenizer_name is not None:
        names["tokenizer_name"] = tokenizer_name
    save_frontend(model, folder, **names, **meta)
    raw = json.loads((folder / "config.json").read_text())
    raw.pop("oracle", None)  # (a KAME save's; a plain save keeps its "oracle": false under model_id.kame_lm)
    raw.pop("model_id", None)
    if config_oracle is not None:
        raw["oracle"] = config_oracle
    (folder / "config.json").write_text(json.dumps(raw))
    if mimi:
        save_mimi(codec, folder / MIMI)
    if tokenizer:
        shutil.copy(DEFAULT_MODEL, folder / "spm.model")
    return folder


def cfg(spec, *sets):
    return load_config(None, [f"frontend.spec={spec}", "backend.stt=none", "backend.llm=none", *sets])


def used(info):
    """The sampling a load reports as used (the components kame run writes)."""
    return {k.removeprefix("sampling_"): v for k, v in info.items() if k.startswith("sampling_")}


def step_text(factory, n=6, seed=0):
    fm = factory(1)
    fm.reset([0])
    rng = np.random.default_rng(seed)
    outs = [fm.step(rng.standard_normal((1, F)).astype(np.float32) * 0.1, np.ones(1, bool)) for _ in range(n)]
    return [int(o.text[0]) for o in outs], [int(o.oracle[0]) for o in outs]


def test_a_missing_tokenizer_is_an_error_not_kames_default(tmp_path, monkeypatch):
    ck = make_ck(tmp_path / "ck", tokenizer=False)
    with pytest.raises(CheckpointError, match=r"front-end '.*ck': its text tokenizer 'spm.model' \(config.json "
                                              r"tokenizer_name\) was not found: looked for .*ck/spm.model\. "
                                              r"The oracle"):
        load_frame_models(cfg(ck))
    # named ~/NAME or file://PATH: where it was looked for is that path (was: ck/~/gone.model)
    raw = json.loads((ck / "config.json").read_text())
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("~/gone.model", f"file://{tmp_path}/home/gone.model"):
        (ck / "config.json").write_text(json.dumps({**raw, "tokenizer_name": name}))
        with pytest.raises(CheckpointError, match=rf"not found: looked for {tmp_path}/home/gone.model\. The oracle"):
            load_frame_models(cfg(ck))
    (ck / "config.json").write_text(json.dumps(raw))
    # the same checkpoint through hf:// (an offline cache without the file): where it was looked for
    import huggingface_hub.constants as hc

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(ck, repo / "snapshots" / commit)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match=r"looked for hf://acme/tiny/spm.model \(not in the local Hugging Face "
                                              r"cache"):
        load_frame_models(cfg("hf://acme/tiny"))
    # with the file it runs with it; kame's own front-ends that name none keep kame's default
    # (if it fits their text vocabulary: test_trained_weights_are_not_folded_into_a_tokenizer_that_does_not_fit)
    shutil.copy(DEFAULT_MODEL, ck / "spm.model")
    assert load_frame_models(cfg(ck))[1]["tokenizer"] == str(ck / "spm.model")
    model, _ = load_frontend("random:tiny", card=build_random("tiny").cardinality,
                             text_card=TextTokenizer(DEFAULT_MODEL).vocab_size)
    own = save_frontend(model, tmp_path / "own")
    _, info = load_frame_models(cfg(own, "codec.spec=mimi:random-tiny"))
    assert info["tokenizer"] == "default (kame/assets)"


def test_sampling_comes_from_the_checkpoint_unless_the_config_sets_it(tmp_path):
    ck = make_ck(tmp_path / "ck", lm_gen_config={"temp": 0, "temp_text": 0.0, "top_k": 7})
    factory, info = load_frame_models(cfg(ck, "frontend.seed=1"))
    assert used(info) == {"temp": 0.0, "top_k": 7, "temp_text": 0.0, "top_k_text": 25, "greedy": True,
                          "source": "temp=checkpoint top_k=checkpoint temp_text=checkpoint top_k_text=default"}
    assert factory(1).stepper.sampling.greedy
    # greedy, as the checkpoint says: other seeds give the same tokens
    assert step_text(factory) == step_text(load_frame_models(cfg(ck, "frontend.seed=2"))[0])
    # the user's explicit values win, key by key; "none" is the checkpoint's again
    factory, info = load_frame_models(cfg(ck, "frontend.temp_text=0.9", "frontend.top_k_text=3", "frontend.top_k=none"))
    s = factory(1).stepper.sampling
    assert (s.temp, s.top_k, s.temp_text, s.top_k_text, s.greedy) == (0.0, 7, 0.9, 3, False)
    assert used(info)["source"] == "temp=checkpoint top_k=checkpoint temp_text=config top_k_text=config"
    # moshi's use_sampling false (the loader's greedy Sampling): temperatures 0 unless set
    ck2 = make_ck(tmp_path / "ck2", lm_gen_config={"use_sampling": False, "temp": 0.6, "top_k": 7})
    _, info = load_frame_models(cfg(ck2, "frontend.temp=0.4"))
    assert used(info) == {"temp": 0.4, "top_k": 7, "temp_text": 0.0, "top_k_text": 25, "greedy": False,
                          "source": "temp=config top_k=checkpoint temp_text=checkpoint top_k_text=default"}
    # nothing anywhere: kame's (KAME/Moshi's) defaults
    _, info = load_frame_models(cfg("random:tiny", "codec.spec=mimi:random-tiny"))
    assert used(info) == {"temp": 0.8, "top_k": 250, "temp_text": 0.7, "top_k_text": 25, "greedy": False,
                          "source": "temp=default top_k=default temp_text=default top_k_text=default"}


def test_a_mimi_trained_checkpoint_refuses_another_codec(tmp_path):
    card = build_random("tiny").cardinality
    from kame import registry

    emb = registry.create("codec", "embedded")  # (its cardinality: the checkpoints below fit it)
    named = make_ck(tmp_path / "named", card=emb.cardinality)
    with pytest.raises(ConfigError, match=r"codec.spec 'embedded' does not fit the front-end '.*named': it was "
                                          r"trained on Mimi codes \(its config.json names the Mimi file "
                                          r"'mimi_tiny.safetensors'\).* Use codec.spec=auto"):
        load_frame_models(cfg(named, "codec.spec=embedded"))
    moshi = make_ck(tmp_path / "moshi", card=emb.cardinality, mimi=False, model_type="moshi")
    with pytest.raises(ConfigError, match=r"trained on Mimi codes \(its config.json model_type is 'moshi'\)"):
        load_frame_models(cfg(moshi, "codec.spec=embedded"))
    # a Mimi codec is taken; kame's own checkpoint that names no Mimi runs with the embedded codec
    assert load_frame_models(cfg(make_ck(tmp_path / "t", card=card), f"codec.spec=mimi:{tmp_path / 't' / MIMI}"))
    own = make_ck(tmp_path / "own", card=emb.cardinality, mimi=False)
    assert load_frame_models(cfg(own, "codec.spec=embedded"))[1]["codec"] == "embedded"


def test_frontend_oracle_auto_on_off(tmp_path):
    kame = make_ck(tmp_path / "kame")
    _, info = load_frame_models(cfg(kame))
    assert info["oracle"] is True and info["oracle_stream"] == "trained" and "oracle_note" not in info
    # a Moshi checkpoint (no oracle_emb): a copy of text_emb, and said so; or plain Moshi
    moshi = make_ck(tmp_path / "moshi", oracle_emb=False)
    _, info = load_frame_models(cfg(moshi))
    assert info["oracle_stream"] == "text_emb-copy" and "copy of text_emb" in info["oracle_note"]
    factory, info = load_frame_models(cfg(moshi, "frontend.oracle=off"))
    assert info["oracle"] is False and info["oracle_stream"] == "off"
    # a KAME file whose config.json says "oracle": false: the error names the config key
    off = make_ck(tmp_path / "off", config_oracle=False)  # (its weights hold oracle_emb)
    with pytest.raises(CheckpointError, match=r"front-end '.*off': .*checkpoint has 1 key\(s\) the config does not "
                                              r"define.*oracle_emb.weight.*; in kame's config: frontend.oracle=on .* or "
                                              r"frontend.oracle=off"):
        load_frame_models(cfg(off))
    on_factory, info = load_frame_models(cfg(off, "frontend.oracle=on", "frontend.temp=0", "frontend.temp_text=0"))
    assert info["oracle_stream"] == "trained"
    off_factory, info = load_frame_models(cfg(off, "frontend.oracle=off", "frontend.temp=0", "frontend.temp_text=0",
                                              "backend.stt=embedded", "backend.llm=embedded"))
    assert info["oracle"] is False and info["oracle_stream"] == "off"
    assert info["oracle_note"].startswith("frontend.oracle is off: the back-end's predictions")
    # off: the predictions reach no oracle stream (nothing fed), the front-end still runs
    fm = off_factory(1)
    fm.reset([0])
    fm.oracle_reset(0)
    fm.oracle_append(0, [5, 6, 7])
    outs = [fm.step(np.zeros((1, F), np.float32), np.ones(1, bool)) for _ in range(4)]
    assert [int(o.oracle[0]) for o in outs] == [-1] * 4 and fm.stepper.oracle.stats(0).fed == 0
    fm = on_factory(1)
    fm.reset([0])
    fm.oracle_reset(0)
    fm.oracle_append(0, [5, 6, 7])
    outs = [fm.step(np.zeros((1, F), np.float32), np.ones(1, bool)) for _ in range(4)]
    assert [int(o.oracle[0]) for o in outs] == [4000, 5, 6, 7]  # start id (text_card), then the tokens


def test_frontend_oracle_off_removes_the_stream_as_kame_bench_step_does(tmp_path, monkeypatch):
    """One way to run weights without their oracle stream: kame.model.lm.without_oracle, which
    kame bench step's "no oracle" column uses too (was: the runtime set oracle_emb to None itself)."""
    from kame.model import lm

    made, real = [], lm.without_oracle

    def spy(model):
        made.append(real(model))
        return made[-1]

    monkeypatch.setattr(lm, "without_oracle", spy)
    factory, info = load_frame_models(cfg(make_ck(tmp_path / "kame"), "frontend.oracle=off"))
    assert info["oracle_stream"] == "off" and len(made) == 1
    assert factory(1).stepper.model is made[0] and not made[0].has_oracle


def test_kame_run_json_shows_the_oracle_stream_and_the_sampling_used(tmp_path, capsys):
    ck = make_ck(tmp_path / "ck", oracle_emb=False, lm_gen_config={"temp": 0.5, "top_k_text": 9})
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(24000, np.float32), 24000)
    out = tmp_path / "out.wav"
    rc = main(["run", str(wav), "-o", str(out), "--fast", "--no-png", "--tail", "0.2", "--set", f"frontend.spec={ck}",
               "--set", "frontend.temp_text=0.3", "--set", "backend.stt=none", "--set", "backend.llm=none",
               "--set", "runtime.vad=energy"])
    assert rc == 0, capsys.readouterr()
    comps = json.loads(out.with_suffix(".json").read_text())["components"]
    assert comps["oracle_stream"] == "text_emb-copy" and comps["oracle"] is True
    assert used(comps) == {"temp": 0.5, "top_k": 250, "temp_text": 0.3, "top_k_text": 9, "greedy": False,
                           "source": "temp=checkpoint top_k=default temp_text=config top_k_text=checkpoint"}
    printed = capsys.readouterr().out  # and on screen, not only in the JSON
    assert ("model     oracle stream text_emb-copy   sampling temp=0.5 top_k=250 temp_text=0.3 top_k_text=9 "
            "(temp=checkpoint top_k=default temp_text=config top_k_text=checkpoint)") in printed
    assert "note      the checkpoint has no trained oracle_emb" in printed


def test_a_refused_checkpoint_is_refused_before_its_weights_are_read(tmp_path, monkeypatch):
    """The wrong-codec and missing-tokenizer checks need only config.json and the companion files:
    they come before the weights load (was: after, so a 7B checkpoint loaded for minutes first)."""
    from kame import registry
    from kame.model import loaders

    def no_weights(*a, **kw):
        raise AssertionError("the weights were read before the check")

    emb = registry.create("codec", "embedded")
    named = make_ck(tmp_path / "named", card=emb.cardinality)
    notok = make_ck(tmp_path / "notok", tokenizer=False)
    monkeypatch.setattr(loaders, "read_state", no_weights)
    with pytest.raises(ConfigError, match="does not fit the front-end"):
        load_frame_models(cfg(named, "codec.spec=embedded"))
    with pytest.raises(CheckpointError, match="its text tokenizer 'spm.model'"):
        load_frame_models(cfg(notok))


def test_the_codec_is_resolved_and_fitted_before_the_weights_are_read(tmp_path, monkeypatch):
    """codec.spec=auto's Mimi (missing), and a codec's cardinality, frame size and codebooks are
    decided from config.json and the codec before the weights (was: after, minutes for a 7B)."""
    import huggingface_hub.constants as hc

    from kame.codec.mimi.config import MimiConfig
    from kame.model import loaders

    ck = make_ck(tmp_path / "ck")
    nomimi = make_ck(tmp_path / "nomimi")
    (nomimi / MIMI).unlink()
    mimi4 = make_ck(tmp_path / "mimi4", mimi_cfg=MimiConfig.tiny(n_q=4, num_codebooks=4))  # needs 8
    save_mimi(build_random(MimiConfig.tiny(bins=64)), tmp_path / "bins64.safetensors")
    save_mimi(build_random(MimiConfig.tiny(frame_rate=25.0)), tmp_path / "f960.safetensors")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # the published Mimi: not cached here
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    real_read, reads = loaders.read_state, []

    def no_weights(*a, **kw):
        raise AssertionError("the weights were read before the check")

    monkeypatch.setattr(loaders, "read_state", no_weights)
    with pytest.raises(CheckpointError, match=r"codec.spec 'auto' for the front-end .*nomimi': its config.json "
                                              r"mimi_name 'mimi_tiny.safetensors' was not found"):
        load_frame_models(cfg(nomimi))
    with pytest.raises(ConfigError, match=r"bins64.safetensors' has 64 codes per codebook, the front-end .*ck' "
                                          r"expects 128"):
        load_frame_models(cfg(ck, f"codec.spec=mimi:{tmp_path / 'bins64.safetensors'}"))
    with pytest.raises(ConfigError, match=r"f960.safetensors' has frame_size 960, the runtime needs 1920"):
        load_frame_models(cfg(ck, f"codec.spec=mimi:{tmp_path / 'f960.safetensors'}"))
    with pytest.raises(ConfigError, match=r"holds 4 codebooks, the front-end .*mimi4' needs 8"):
        load_frame_models(cfg(mimi4))
    # a checkpoint that fits: its weights read once, its Mimi loaded once
    import kame.codec.mimi as mimi_pkg

    loads, real_load = [], mimi_pkg.load_mimi
    monkeypatch.setattr(loaders, "read_state", lambda *a: reads.append(a) or real_read(*a))
    monkeypatch.setattr(mimi_pkg, "load_mimi", lambda *a, **kw: loads.append(a) or real_load(*a, **kw))
    _, info = load_frame_models(cfg(ck))
    assert len(reads) == 1 and len(loads) == 1 and info["codec"] == f"mimi:{ck / MIMI}"


def test_the_codec_codes_with_the_codebooks_the_frontend_needs(tmp_path):
    """A Mimi file of 4 codebooks serves a front-end that needs 4 (was: "got 8", an 8 nobody set);
    for one that needs 8 the error names the Mimi file, the front-end and the counts."""
    import re

    from kame.codec.mimi.config import MimiConfig

    four = MimiConfig.tiny(n_q=4, num_codebooks=4)
    dq4 = make_ck(tmp_path / "dq4", mimi_cfg=four, lm={"n_q": 8, "dep_q": 4, "delays": [0, 0, 1, 1, 1, 0, 1, 1, 1]})
    for sets in ((), (f"codec.spec=mimi:{dq4 / MIMI}",)):
        factory, info = load_frame_models(cfg(dq4, *sets))
        fm = factory(1)
        assert fm.codec.num_codebooks == 4 and info["codec"] == f"mimi:{dq4 / MIMI}"
        fm.reset([0])
        outs = [fm.step(np.zeros((1, F), np.float32), np.ones(1, bool)) for _ in range(3)]
        assert all(o.pcm.shape == (1, F) for o in outs)
    # an 8-codebook Mimi is asked for the 4 this front-end reads and generates
    assert load_frame_models(cfg(dq4, "codec.spec=mimi:random-tiny"))[0](1).codec.num_codebooks == 4
    needs8 = make_ck(tmp_path / "needs8", mimi_cfg=four)  # n_q 16, dep_q 8
    with pytest.raises(ConfigError, match=re.escape(f"codec 'mimi:{needs8 / MIMI}' holds 4 codebooks, the front-end "
                                                    f"'{needs8}' needs 8 (n_user_q 8, dep_q 8): its config.json and "
                                                    f"the Mimi file it names (mimi_name) do not belong together")):
        load_frame_models(cfg(needs8))  # (auto: the misfit is inside the checkpoint, not another codec to pick)
    with pytest.raises(ConfigError, match=r"needs 8 \(n_user_q 8, dep_q 8\): use the codec it was trained with"):
        load_frame_models(cfg(needs8, f"codec.spec=mimi:{dq4 / MIMI}"))


def test_a_codec_of_a_fixed_count_that_covers_the_need_is_used_as_it_is(tmp_path, monkeypatch):
    """A codec that codes a fixed 8 codebooks (set_num_codebooks refuses others) serves a front-end
    that needs 4: the runtime takes the first 4 (was: refused, "cannot code with 4")."""
    from kame.codec.base import Codec
    from kame.codec.mimi.config import MimiConfig

    four = MimiConfig.tiny(n_q=4, num_codebooks=4)
    dq4 = make_ck(tmp_path / "dq4", mimi_cfg=four, lm={"n_q": 8, "dep_q": 4, "delays": [0, 0, 1, 1, 1, 0, 1, 1, 1]})

    def fixed(self, n):
        if n != self.num_codebooks:
            raise ConfigError(f"this codec always codes {self.num_codebooks} codebooks, got {n}")

    eight = build_random("tiny")  # 8 codebooks
    monkeypatch.setattr(type(eight), "set_num_codebooks", fixed)
    assert isinstance(eight, Codec)
    factory, _ = load_frame_models(cfg(dq4, "codec.spec=mimi:random-tiny"))
    fm = factory(1)
    assert fm.codec.num_codebooks == 8
    fm.reset([0])
    assert fm.step(np.zeros((1, F), np.float32), np.ones(1, bool)).pcm.shape == (1, F)


@pytest.mark.parametrize("codec", ["mimi", "embedded"])
def test_only_the_codebooks_the_model_generates_are_decoded(tmp_path, codec):
    """dep_q 4 with a codec coding 8 codebooks (the user's 8): the decoder gets the model's 4
    codes (coarse to fine, as moshi decodes them), not those padded with a silent frame's codes."""
    from kame import registry

    lm = {"n_q": 12, "dep_q": 4, "delays": [0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]}
    if codec == "mimi":
        ck = make_ck(tmp_path / "ck", lm=lm)
    else:  # kame's own front-end (no Mimi named) runs with the embedded codec
        ck = make_ck(tmp_path / "ck", lm=lm, mimi=False, card=registry.create("codec", "embedded").cardinality)
    factory, _ = load_frame_models(cfg(ck, f"codec.spec={'auto' if codec == 'mimi' else 'embedded'}",
                                       "frontend.seed=0"))
    fm = factory(1)
    assert fm.codec.num_codebooks == 8  # max(n_user_q 8, dep_q 4)
    fm.reset([0])
    made, decoded = [], []
    step, decode = fm.stepper.step, fm.stream.decode_frame
    fm.stepper.step = lambda u: made.append(step(u)) or made[-1]
    fm.stream.decode_frame = lambda codes: decoded.append(codes.clone()) or decode(codes)
    rng = np.random.default_rng(0)
    outs = [fm.step(rng.standard_normal((1, F)).astype(np.float32) * 0.1, np.ones(1, bool)) for _ in range(5)]
    assert [tuple(d.shape) for d in decoded] == [(1, 4)] * 5
    valid = [bool(o.valid[0]) for o in made]
    assert valid == [False, True, True, True, True]  # (acoustic codebooks delayed by 1)
    for o, d, out in zip(made, decoded, outs):
        if o.valid[0]:
            assert torch.equal(d, o.audio.cpu().to(d.dtype)) and np.abs(out.pcm).max() > 0
        else:
            assert torch.equal(d[0], fm.silence_codes[:4]) and not out.pcm.any()


def test_a_mimi_trained_config_without_tokenizer_name_needs_moshis_tokenizer(tmp_path):
    """A Moshi/KAME config.json without tokenizer_name means Moshi's tokenizer (as moshi reads it):
    missing, an error (was: kame's 4k vocabulary, silently); kame's own keep kame's default."""
    moshi = make_ck(tmp_path / "moshi", tokenizer=False, tokenizer_name=None, model_type="moshi")
    with pytest.raises(CheckpointError, match=r"front-end '.*moshi': its text tokenizer 'tokenizer_spm_32k_3.model' "
                                              r"\(the Moshi default: its config.json names no tokenizer_name, and it "
                                              r"was trained on Mimi codes \(its config.json names the Mimi file "
                                              r"'mimi_tiny.safetensors'\)\) was not found: looked for "
                                              r".*moshi/tokenizer_spm_32k_3.model\. .* set tokenizer_name"):
        load_frame_models(cfg(moshi))
    kame = make_ck(tmp_path / "kame", tokenizer=False, tokenizer_name=None, mimi=False, model_type="kame")
    with pytest.raises(CheckpointError, match=r"\(its config.json model_type is 'kame'\)\) was not found"):
        load_frame_models(cfg(kame, "codec.spec=mimi:random-tiny"))
    shutil.copy(DEFAULT_MODEL, moshi / "tokenizer_spm_32k_3.model")  # Moshi's default name: taken
    assert load_frame_models(cfg(moshi))[1]["tokenizer"] == str(moshi / "tokenizer_spm_32k_3.model")
    own = make_ck(tmp_path / "own", tokenizer=False, tokenizer_name=None, mimi=False)
    assert load_frame_models(cfg(own, "codec.spec=mimi:random-tiny"))[1]["tokenizer"] == "default (kame/assets)"


def own_ck(folder, text_card=None, **save):
    """kame's own tiny front-end for the embedded codec (its cardinality; the default tokenizer's
    vocabulary unless ``text_card``), saved with ``save`` (codec=, tokenizer=, train=, ...)."""
    from kame import registry

    card = registry.create("codec", "embedded").cardinality
    model, _ = load_frontend("random:tiny", card=card, text_card=text_card or TextTokenizer(DEFAULT_MODEL).vocab_size)
    return save_frontend(model, folder, **save)


def no_weights(monkeypatch):
    from kame.model import loaders

    def refuse(*a, **kw):
        raise AssertionError("the weights were read before the check")

    monkeypatch.setattr(loaders, "read_state", refuse)


def test_auto_runs_the_codec_and_tokenizer_the_checkpoint_records(tmp_path, monkeypatch):
    """codec.spec=auto follows config.json's kame.codec (was: the published Mimi, when cached: codes
    the front-end never heard; offline an error), and kame.tokenizer "default" is kame's own."""
    import huggingface_hub.constants as hc

    import kame.codec.mimi as mimi_pkg

    ck = own_ck(tmp_path / "ck", codec="embedded", tokenizer="default", model_type="kame", train={"steps": 3})
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(mimi_pkg, "load_mimi", lambda *a, **kw: pytest.fail("the published Mimi was loaded"))
    factory, info = load_frame_models(cfg(ck))
    assert info["codec"] == "embedded" and info["tokenizer"] == "default (kame/assets)" and not info["oracle_ids_folded"]
    assert factory(1).codec.fingerprint == json.loads((ck / "config.json").read_text())["kame"]["codec_sha256"]
    # another kind of codec named: refused (as for a Mimi-trained checkpoint), before the weights
    no_weights(monkeypatch)
    with pytest.raises(ConfigError, match=r"codec.spec 'mimi:random-tiny' does not fit the front-end '.*ck': it was "
                                          r"trained with the codec 'embedded' \(its config.json kame.codec\).* Use "
                                          r"codec.spec=auto"):
        load_frame_models(cfg(ck, "codec.spec=mimi:random-tiny"))
    # a recorded codec that does not fit its config.json: the misfit is inside the checkpoint
    # (save_frontend refuses to write that: the file is edited after, as by hand)
    bad = own_ck(tmp_path / "bad", codec="embedded", tokenizer="default")  # (card: the embedded codec's)
    raw = json.loads((bad / "config.json").read_text())
    raw["kame"]["codec"] = "mimi:random-tiny"
    del raw["kame"]["codec_sha256"]
    (bad / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"codec 'mimi:random-tiny' has 128 codes per codebook, the front-end .*bad' "
                                          r"expects 2048 \(its config's card\): its config.json and the codec it "
                                          r"records \(kame.codec 'mimi:random-tiny'\) do not belong together"):
        load_frame_models(cfg(bad))


def test_a_codec_of_another_fit_is_refused_before_the_weights(tmp_path, monkeypatch):
    """A codec whose fingerprint is not the kame.codec_sha256 the front-end was saved with (another
    fit of the embedded codec, the recorded file refitted in place) is a CheckpointError naming both
    sha256 values (was: run, hearing other codes)."""
    from kame.codec.embedded.model import DEFAULT_SHA256
    from kame.codec.embedded.model import load as load_embedded
    from kame.codec.embedded.model import save as save_embedded

    ck = own_ck(tmp_path / "ck", codec="embedded")
    other = tmp_path / "other.safetensors"
    sha = save_embedded(load_embedded(), other, meta={"note": "another fit"})
    assert load_frame_models(cfg(ck, "codec.spec=embedded"))[1]["codec"] == "embedded"
    no_weights(monkeypatch)
    with pytest.raises(CheckpointError, match=rf"front-end '.*ck' was trained with the codec 'embedded' of sha256 "
                                              rf"{DEFAULT_SHA256} \(its config.json kame.codec_sha256\), but codec "
                                              rf"'embedded:.*other.safetensors' has sha256 {sha}: another fit or file.* "
                                              rf"Use the codec file it was trained with \(codec.spec=embedded:PATH\), "
                                              rf"or refit it with the seed and command"):
        load_frame_models(cfg(ck, f"codec.spec=embedded:{other}"))
    fit = tmp_path / "fit.safetensors"
    save_embedded(load_embedded(), fit, meta={"note": "first"})
    ck2 = own_ck(tmp_path / "ck2", codec=f"embedded:{fit}")
    save_embedded(load_embedded(), fit, meta={"note": "refitted"})  # (its .sha256 file too)
    with pytest.raises(CheckpointError, match=rf"trained with the codec 'embedded:{fit}' of sha256 .*, but codec "
                                              rf"'embedded:{fit}' has sha256"):
        load_frame_models(cfg(ck2))


def test_a_codec_without_a_fingerprint_is_run_with_a_warning(tmp_path, caplog):
    mimi = tmp_path / "mimi.safetensors"
    save_mimi(build_random("tiny"), mimi)
    model, _ = load_frontend("random:tiny", card=build_random("tiny").cardinality,
                             text_card=TextTokenizer(DEFAULT_MODEL).vocab_size)
    ck = save_frontend(model, tmp_path / "ck", codec=f"mimi:{mimi}", tokenizer="default")
    assert load_frame_models(cfg(ck))[1]["codec"] == f"mimi:{mimi}"
    assert "has no fingerprint" not in caplog.text
    assert load_frame_models(cfg(ck, "codec.spec=mimi:random-tiny"))[1]["codec"] == "mimi:random-tiny"
    assert "codec mimi:random-tiny has no fingerprint (random weights" in caplog.text


def test_a_tokenizer_of_another_sha256_is_refused_before_the_weights(tmp_path, monkeypatch):
    ck = own_ck(tmp_path / "ck", tokenizer="default", tokenizer_sha256="ab" * 32)
    no_weights(monkeypatch)
    with pytest.raises(CheckpointError, match=rf"front-end '.*ck' was trained with a text tokenizer of sha256 "
                                              rf"{'ab' * 32} \(its config.json kame.tokenizer_sha256\), but "
                                              rf"{DEFAULT_MODEL} has sha256 [0-9a-f]{{64}}: another vocabulary.*"
                                              rf"python -m kame.backend.tokenizer train"):
        load_frame_models(cfg(ck, "codec.spec=embedded"))
    # recorded without naming the tokenizer: checked against the one it would run with (kame's default)
    raw = json.loads((ck / "config.json").read_text())
    raw["kame"] = {"tokenizer_sha256": "ab" * 32}
    (ck / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=rf"but {DEFAULT_MODEL} has sha256"):
        load_frame_models(cfg(ck, "codec.spec=embedded"))


def test_a_kame_config_is_not_taken_for_a_mimi_trained_one(tmp_path):
    """model_type "kame" with a "kame" object is kame's own front-end (was: read as trained on Mimi:
    the embedded codec refused, Moshi's tokenizer asked for)."""
    ck = own_ck(tmp_path / "ck", model_type="kame", train={"steps": 3})
    _, info = load_frame_models(cfg(ck, "codec.spec=embedded"))
    assert info["codec"] == "embedded" and info["tokenizer"] == "default (kame/assets)"


def test_trained_weights_are_not_folded_into_a_tokenizer_that_does_not_fit(tmp_path, monkeypatch):
    """Oracle ids are folded into the text vocabulary of random weights only: trained weights whose
    text_card is smaller than the tokenizer they would run with are refused before the weights load
    (was: kame's 4k tokenizer, ids taken modulo text_card, silently)."""
    small = own_ck(tmp_path / "small", text_card=1000)
    named = own_ck(tmp_path / "named", text_card=1000)  # kame.tokenizer written by hand: save_frontend refuses it
    raw = json.loads((named / "config.json").read_text())
    (named / "config.json").write_text(json.dumps({**raw, "kame": {"tokenizer": "default"}}))
    _, info = load_frame_models(cfg("random:tiny", "codec.spec=embedded"))
    assert info["frontend_random"] and info["oracle_ids_folded"]  # random weights: folded, and said so
    no_weights(monkeypatch)
    with pytest.raises(CheckpointError, match=r"front-end '.*small': its config.json names no text tokenizer "
                                              r"\(tokenizer_name or kame.tokenizer\), so kame's default one would be "
                                              r"used \(.*text_tokenizer_4k.model, 4000 pieces\), which does not fit its "
                                              r"text vocabulary \(text_card 1000\).* Name it in its config.json"):
        load_frame_models(cfg(small, "codec.spec=embedded"))
    with pytest.raises(CheckpointError, match=r"its tokenizer .*text_tokenizer_4k.model has 4000 pieces, more than its "
                                              r"text vocabulary \(text_card 1000\).*check kame.tokenizer in its"):
        load_frame_models(cfg(named, "codec.spec=embedded"))
