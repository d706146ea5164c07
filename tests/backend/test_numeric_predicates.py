"""kame.numeric.is_finite_number (re-exported by kame.backend.options): the one "finite real
number, not a bool" check that the client's message checks, the STT's word times, mtbench's
results, the training data's dialogues and recorded runs share (review1 #7: five copies before),
and the front-end config, the embedded codec's file and the [cascade] section (four more)."""

from fractions import Fraction

import numpy as np
import pytest

from kame.numeric import is_finite_number, is_real_number


@pytest.mark.parametrize("x", [0, -3, 2.5, np.float32(1.5), np.float64(-0.0), np.int64(7), Fraction(1, 3)])
def test_finite_real_numbers_are_numbers(x):
    assert is_finite_number(x) and is_real_number(x)


@pytest.mark.parametrize("x", [True, False, float("nan"), float("inf"), -np.inf, np.float32("nan"), "1", None,
                               [1.0], 1j])
def test_bools_nan_infinities_and_non_numbers_are_not(x):
    assert not is_finite_number(x)


def test_an_infinity_is_real_but_not_finite_and_a_bool_is_neither():
    assert is_real_number(float("inf")) and not is_finite_number(float("inf"))
    assert not is_real_number(True) and not is_real_number("2")


def test_the_copies_use_it():
    """The checks that had their own copy give the same answers through it."""
    from kame.backend import options
    from kame.backend.stt import base
    from kame.cascade import config as cascade_config
    from kame.codec.embedded import model as embedded_model
    from kame.eval.results import rated_problem
    from kame.model import config as model_config
    from kame.server import client

    assert options.is_finite_number is is_finite_number and options.is_real_number is is_real_number
    assert client.READ_FIELDS["info"]["t0"] is is_finite_number and base.is_finite_number is is_finite_number
    assert all(m.is_finite_number is is_finite_number for m in (cascade_config, embedded_model, model_config))
    good = {"question_id": "81", "category": "writing", "turn": 1, "rating": 7, "latency_s": 1.5}
    assert rated_problem(good) is None
    assert "latency_s" in rated_problem({**good, "latency_s": float("nan")})
    assert "latency_s" in rated_problem({**good, "latency_s": True})
    assert "rating" in rated_problem({**good, "rating": np.float64("inf")})


def test_an_int_too_large_for_a_float_is_not_a_finite_number():
    """(JSON's 400-digit numbers parse to such ints: math.isfinite raised OverflowError, a traceback
    in kame client's reading of server metadata and in the eval and training file checks)"""
    assert not is_finite_number(10**400) and is_finite_number(10**300)


@pytest.mark.parametrize("check, message", [
    ("config", r"^backend.llm_temperature: expected a finite number, got 1000"),
    ("options", r"^openai STT: timeout must be a number > 0, got 1000"),
    ("cliargs", r"^expected a finite number, got '1000.*' \(too large\)$"),
])
def test_an_int_too_large_for_a_float_is_an_error_naming_the_setting(check, message):
    """(was an OverflowError traceback from math.isfinite / float(): `--set backend.llm_temperature=`
    and `kame serve --max-sessions` with 400 digits, a back-end option; Sampling's: test_api_checks)"""
    import argparse

    from kame.backend.options import number
    from kame.cliargs import at_least
    from kame.config import load_config
    from kame.errors import ConfigError

    huge = 10**400
    with pytest.raises((ConfigError, argparse.ArgumentTypeError), match=message):
        if check == "config":
            load_config(None, [f"backend.llm_temperature={huge}"])
        elif check == "options":
            number("openai STT", "timeout", huge, above=0)
        else:
            at_least(1)(str(huge))
