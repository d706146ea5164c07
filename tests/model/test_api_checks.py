"""The model API refuses bad values at once with a line naming them (a QA sweep found: Sampling's
values unchecked - top_k_text=2.5 a torch TypeError in the step, after it had advanced the KV cache
(the stepper then half-stepped), temp=nan running silently -, a (model, info) tuple or a str
sampling taken then an AttributeError, bool codes taken as codes, the training forward's bad ids a
torch IndexError / RuntimeError, load_frontend(oracle="yes") taken as true, save_frontend under a
file a raw NotADirectoryError)."""

import math

import numpy as np
import pytest
import torch

from kame.errors import CheckpointError
from kame.model.lm import LMModel
from kame.model.loaders import create_random, load_frontend, save_frontend
from kame.model.stepper import Sampling, Stepper


@pytest.fixture(scope="module")
def model():
    return load_frontend("random:tiny")[0]


def user(i):
    return torch.randint(0, 2048, (1, 8), generator=torch.Generator().manual_seed(i))


@pytest.mark.parametrize("kw, error, message", [
    (dict(top_k_text=2.5), TypeError, r"Sampling top_k_text must be an int, got float 2.5"),
    (dict(top_k=True), TypeError, r"Sampling top_k must be an int, got bool True"),
    (dict(top_k=-1), ValueError, r"Sampling top_k must be >= 0 \(0: no top-k\), got -1"),
    (dict(temp="0.8"), TypeError, r"Sampling temp must be a number .*got str '0.8'"),
    (dict(temp_text=math.nan), ValueError, r"Sampling temp_text must be a finite temperature >= 0 .*got nan"),
    (dict(temp=math.inf), ValueError, r"Sampling temp must be a finite temperature"),
    (dict(temp=-0.5), ValueError, r"Sampling temp must be a finite temperature >= 0"),
    (dict(temp_text=10**400), ValueError, r"Sampling temp_text must be a finite temperature >= 0 .*got 1000"),  # (was: OverflowError)
    (dict(greedy="yes"), TypeError, r"Sampling greedy must be a bool, got str 'yes'"),
])
def test_sampling_values_are_checked(kw, error, message):
    with pytest.raises(error, match=message):
        Sampling(**kw)
    field, value = next(iter(kw.items()))
    sp = Sampling()
    with pytest.raises(error, match=message):  # on assignment too
        setattr(sp, field, value)
    assert sp == Sampling()


def test_good_sampling_values_are_normalised():
    sp = Sampling(temp=1, top_k=np.int64(5), temp_text=np.float32(0.5), top_k_text=0, greedy=np.bool_(True))
    assert (sp.temp, sp.top_k, sp.temp_text, sp.top_k_text, sp.greedy) == (1.0, 5, 0.5, 0, True)
    assert type(sp.top_k) is int and type(sp.temp_text) is float and sp.greedy is True


def test_a_0d_tensor_temperature_is_taken_as_top_k_is():
    """(was: temp=torch.tensor(0.5) a TypeError "must be a number" while top_k=torch.tensor(5) was taken)"""
    sp = Sampling(temp=torch.tensor(0.5), top_k=torch.tensor(5), temp_text=torch.tensor(0.25, dtype=torch.float64))
    assert (sp.temp, sp.top_k, sp.temp_text) == (0.5, 5, 0.25) and type(sp.temp) is float
    with pytest.raises(ValueError, match=r"Sampling temp must be a finite temperature >= 0 .*got nan"):
        sp.temp = torch.tensor(math.nan)
    with pytest.raises(TypeError, match=r"Sampling temp_text must be a number .*got bool True"):
        sp.temp_text = torch.tensor(True)
    with pytest.raises(TypeError, match=r"Sampling temp must be a number .*got Tensor"):
        sp.temp = torch.tensor([0.5])


def test_a_refused_sampling_leaves_the_stepper_as_it_was(model):
    """(was: a step failing in its sampling after the KV cache had advanced: later logits differed)"""
    ref = Stepper(model, 1, Sampling(greedy=True))
    want = [ref.step(user(i)).text_logits for i in range(3)]
    st = Stepper(model, 1, Sampling(greedy=True))
    with pytest.raises(TypeError, match=r"Stepper sampling must be a kame.model.Sampling .*got str 'greedy'"):
        st.sampling = "greedy"
    with pytest.raises(TypeError, match=r"Sampling top_k_text must be an int"):
        st.sampling.top_k_text = 2.5
    with pytest.raises(TypeError, match=r"Stepper generator must be a torch.Generator or None, got int"):
        st.generator = 5
    got = [st.step(user(i)).text_logits for i in range(3)]
    assert st.frames == [3] and all(torch.equal(a, b) for a, b in zip(want, got))


def test_stepper_needs_a_model_and_a_sampling(model):
    with pytest.raises(TypeError, match=r"Stepper needs a front-end model \(kame.model.LMModel\), got tuple: .*"
                                        r"model, info = load_frontend\(...\)"):
        Stepper(load_frontend("random:tiny"), 1)
    with pytest.raises(TypeError, match=r"got Frontend: a registry Frontend holds it as .model"):
        Stepper(create_random("tiny"), 1)
    with pytest.raises(TypeError, match=r"Stepper sampling must be a kame.model.Sampling"):
        Stepper(model, 1, sampling="greedy")
    assert Stepper(model, 1).sampling == Sampling()


def test_bool_user_codes_are_refused(model):
    st = Stepper(model, 2)
    with pytest.raises(ValueError, match=r"user_codes must be integer codes .* torch.bool"):
        st.step(torch.ones(2, 8, dtype=torch.bool))
    assert st.frames == [0, 0]


@pytest.mark.parametrize("change, error, message", [
    (lambda c, o: (c.index_fill(1, torch.tensor([0]), 99999), o), ValueError,
     r"codes: text target ids \(stream 0\) must be in \[0, 1000\) \(the logits' classes: .*got ids in "
     r"\[99999, 99999\]"),
    (lambda c, o: (c.index_fill(1, torch.tensor([12]), 2049), o), ValueError,
     r"codes: audio ids \(streams 9..16\) must be in \[0, 2049\) \(or -1: no token\), got ids in \[0, 2049\]"),
    (lambda c, o: (c.index_fill(1, torch.tensor([3]), -2), o), ValueError,
     r"codes: audio target ids \(streams 1..8\) .*got ids in \[-2, 0\]"),
    # codes are the predicted streams' targets: their BOS ids (text_card, card) are inputs only
    # (was: taken, then the loss's IndexError "Target 2048 is out of bounds"; on CUDA a device assert)
    (lambda c, o: (c.index_fill(1, torch.tensor([0]), 1000), o), ValueError,
     r"codes: text target ids \(stream 0\) must be in \[0, 1000\) \(the logits' classes: a BOS id is an input "
     r"only, for inputs=; or -1: no target\), got ids in \[1000, 1000\]"),
    (lambda c, o: (c.index_fill(1, torch.tensor([1]), 2048), o), ValueError,
     r"codes: audio target ids \(streams 1..8\) must be in \[0, 2048\) .*got ids in \[0, 2048\]"),
    (lambda c, o: (c.float(), o), TypeError, r"codes must be an integer tensor \[B, K, T\] of ids, got dtype "
                                             r"torch.float32"),
    (lambda c, o: (c.bool(), o), TypeError, r"codes must be an integer tensor .*torch.bool"),
    (lambda c, o: (c[0], o), ValueError, r"codes must be \[B, K = n_q \+ 1 = 17, T\], got shape \(17, 4\)"),
    (lambda c, o: (c, o + 5000), ValueError, r"oracle: text-vocabulary ids must be in \[0, 1001\) .*\[5000, 5000\]"),
    (lambda c, o: (c, o.float()), TypeError, r"oracle must be an integer tensor \[B, T\] of ids, got dtype"),
])
def test_training_forward_checks_its_ids(model, change, error, message):
    codes, oracle = change(torch.zeros(1, 17, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(error, match=message):
        model(codes, oracle=oracle)


def test_training_forward_checks_inputs_and_takes_good_ids(model):
    codes = torch.zeros(1, 17, 4, dtype=torch.long)
    codes[:, 0, 0], codes[:, 1, 1], codes[:, 12, 2], codes[:, 2, 2] = 999, 2047, 2048, -1  # (the user's BOS)
    with pytest.raises(ValueError, match=r"inputs: text ids \(stream 0\) must be in \[0, 1001\)"):
        model(codes, inputs=codes.index_fill(1, torch.tensor([0]), 1001))
    inputs = codes.clone()
    inputs[:, 0, 1], inputs[:, 1, 2] = 1000, 2048  # BOS ids and the zero token are input ids
    out = model(codes, oracle=torch.full((1, 4), 1000), inputs=inputs)
    assert out.text_logits.shape == (1, 1, 4, 1000)
    assert model(codes).text_logits.shape == (1, 1, 4, 1000)  # (oracle=None: the all-pad one built)


def test_training_forward_reads_its_ids_once(model, monkeypatch):
    """One device sync (.tolist()) for all the id checks of a forward (was: one per group of streams)."""
    calls = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append(self.shape) or tolist(self))
    codes = torch.zeros(1, 17, 4, dtype=torch.long)
    model(codes, oracle=torch.zeros(1, 4, dtype=torch.long), inputs=codes.clone())
    model(codes)
    assert len(calls) == 2, calls


def test_load_frontend_oracle_must_be_a_bool():
    with pytest.raises(TypeError, match=r"load_frontend oracle must be True, False or None .*got str 'yes'"):
        load_frontend("random:tiny", oracle="yes")
    assert not load_frontend("random:tiny", oracle=False)[0].has_oracle


def test_save_frontend_under_a_file_says_so(tmp_path):
    m = LMModel(load_frontend("random:tiny", weights=False)[0].cfg)
    (tmp_path / "file").write_text("x")
    for dest in ("file", "file/sub", "file/sub/deeper"):
        with pytest.raises(CheckpointError, match=r"save_frontend: .*file exists and is not a folder"):
            save_frontend(m, tmp_path / dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_oracle_tokens_for_a_model_without_an_oracle_stream_are_refused():
    """A model loaded with oracle=False has no oracle stream: its feed refuses tokens (was: taken,
    counted nowhere and never fed; "nothing is dropped silently")."""
    torch.manual_seed(0)
    plain, _ = load_frontend("random:tiny", oracle=False)
    st = Stepper(plain, 1)
    for feed in (lambda: st.oracle.reset(0), lambda: st.oracle.append(0, [5, 6, 7])):
        with pytest.raises(ValueError, match="no oracle stream"):
            feed()
    st.oracle.clear(0)  # (clearing nothing is fine)
    assert st.step(user(0)).frame is not None and st.oracle.stats(0).fed == 0  # (it still steps)
