"""The front-end config's numbers are checked with kame.numeric.is_finite_number: a number too
large for a float (JSON's 400-digit ones) in a config.json is a ConfigError naming the key (was:
an OverflowError traceback from math.isfinite), and true/false given for a float key through
replace() / load_frontend's keyword overrides is refused (was: taken as 1 / 0), as is any value
of the wrong type there (replace runs config.json's type check: true or 2.5 for a whole-number key)."""

import json
from fractions import Fraction

import numpy as np
import pytest

from kame.errors import ConfigError
from kame.model.config import LMConfig, config_json, preset
from kame.model.stepper import Sampling

HUGE = "1" + "0" * 400  # a JSON number Python reads as an int no float holds


def _from_json(**changes: str) -> LMConfig:
    """LMConfig.from_dict of the tiny preset's config.json text with ``changes`` (key: JSON text)."""
    text = json.dumps(preset("tiny").to_dict())[:-1] + "".join(f', "{k}": {v}' for k, v in changes.items()) + "}"
    return LMConfig.from_dict(json.loads(text))


@pytest.mark.parametrize("key", ["hidden_scale", "max_period", "layer_scale"])
def test_a_float_key_too_large_for_a_float_is_a_config_error_naming_it(key):
    with pytest.raises(ConfigError, match=rf"^{key}={HUGE} must be a finite number > 0$"):
        _from_json(**{key: HUGE})


def test_a_temperature_too_large_for_a_float_is_a_config_error_and_a_huge_top_k_is_no_top_k():
    with pytest.raises(ConfigError, match=rf"^config key lm_gen_config.temp={HUGE}: expected a number >= 0$"):
        _from_json(lm_gen_config=f'{{"temp": {HUGE}}}')
    cfg = _from_json(lm_gen_config=f'{{"top_k": {HUGE}, "temp": 0.5}}')  # (an int is exact: a top-k past the vocabulary)
    assert Sampling.from_lm_gen_config(cfg.meta["lm_gen_config"]).top_k == int(HUGE)


@pytest.mark.parametrize("key", ["hidden_scale", "max_period", "positional_scale", "depformer_layer_scale"])
def test_true_for_a_float_key_is_refused_saying_it_is_not_a_number(key):
    with pytest.raises(ConfigError, match=rf"^config key {key}=True: expected float.* \(true/false is not a number\)$"):
        preset("tiny").replace(**{key: True})
    with pytest.raises(ConfigError, match=rf"^config key {key}=True: expected float"):  # (config.json: its type check)
        _from_json(**{key: "true"})
    with pytest.raises(ConfigError, match=rf"^{key}=True must be a finite number > 0 \(true/false is not a number\)$"):
        LMConfig(**{key: True}).validate()  # (built directly: validate's own check)


@pytest.mark.parametrize("key, value, expected", [("num_layers", True, r"int \(true/false is not a number\)"),
                                                   ("dep_q", False, r"int \(true/false is not a number\)"),
                                                   ("context", 2.5, r"int \| None"), ("dim", 64.0, "int"),
                                                   ("causal", 1, "bool")])
def test_replace_and_load_frontend_overrides_check_types_as_config_json_does(key, value, expected):
    """replace() runs from_dict's type check (was: num_layers=True built a 1-layer model, context=2.5
    or dim=64.0 was a raw torch TypeError when the model or its stepper was made)."""
    from kame.model.loaders import load_frontend

    with pytest.raises(ConfigError, match=rf"^config key {key}={value!r}: expected {expected}$"):
        preset("tiny").replace(**{key: value})
    with pytest.raises(ConfigError, match=rf"^config key {key}={value!r}: expected {expected}$"):
        load_frontend("random:tiny", **{key: value})


def test_a_value_save_frontend_cannot_write_as_a_finite_number_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^save_frontend: kame\.train\.lr=Fraction\(1000.*\) \(Fraction\) cannot "
                                          r"be written to config\.json"):
        config_json(preset("tiny"), {"kame": {"train": {"lr": Fraction(int(HUGE))}}}, "model.safetensors")
    raw = config_json(preset("tiny"), {"kame": {"train": {"lr": Fraction(1, 4)}}}, "model.safetensors")
    assert raw["kame"]["train"]["lr"] == 0.25


def test_numpy_numbers_and_tuples_given_to_replace_and_load_frontend_are_their_json_values():
    """A caller's np.int64(64) for context, np.int32 for dim, np.float32 for a float key and a tuple for
    delays loaded before replace() ran config.json's type check, then were refused ("context=np.int64(64):
    expected int | None"); they are taken as the int, float and list from_dict gives, so config.json
    stays writable, and a bool, 2.5 or a string for a whole-number key is still refused."""
    from kame.model.loaders import load_frontend

    base = preset("tiny")
    cfg = base.replace(context=np.int64(64), dim=np.int32(base.dim), depformer_dim=np.uint16(base.depformer_dim),
                       hidden_scale=np.float32(2.5), max_period=np.int64(5000), delays=tuple(base.delays))
    for key, kind, value in [("context", int, 64), ("dim", int, base.dim), ("depformer_dim", int, base.depformer_dim),
                             ("hidden_scale", float, 2.5), ("max_period", int, 5000), ("delays", list, base.delays)]:
        assert type(getattr(cfg, key)) is kind and getattr(cfg, key) == value, key
    assert all(type(d) is int for d in base.replace(delays=tuple(np.int64(d) for d in base.delays)).delays)
    assert cfg.replace(context=None).context is None
    json.dumps(cfg.to_dict())  # (np.int64 would be "not JSON serializable")
    model, _ = load_frontend("random:tiny", context=np.int64(64), delays=tuple(base.delays))
    assert model.cfg.context == 64 and model.cfg.delays == base.delays
    for key, value, expected in [("context", np.float64(2.5), r"int \| None"), ("dim", np.float32(64), "int"),
                                 ("context", "64", r"int \| None"), ("num_layers", np.bool_(True), "int"),
                                 ("delays", (0, 1.5) + (1,) * 15, r"list\[int\]"), ("delays", (True,) * 17, r"list\[int\]")]:
        with pytest.raises(ConfigError, match=rf"^config key {key}=.*: expected {expected}"):
            base.replace(**{key: value})
