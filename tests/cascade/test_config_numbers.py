"""The [cascade] section's numbers (CascadeConfig.from_dict, and so a config file / --set): a count
(max_tokens, first_clause_min_words, max_segment_words) is an integer, as the [backend] counts
are; any other number a finite one (kame.numeric.is_finite_number). Were: 2.5 words taken by
from_dict, and a JSON / TOML number too large for a float an OverflowError traceback."""

import pytest

from kame.cascade.config import CascadeConfig
from kame.config import load_config
from kame.errors import ConfigError

HUGE = 10**400  # what JSON's and TOML's 400-digit numbers parse to


@pytest.mark.parametrize("d, message", [
    ({"max_tokens": 2.5}, "cascade.max_tokens: expected an integer, got 2.5"),
    ({"max_segment_words": 30.0}, "cascade.max_segment_words: expected an integer, got 30.0"),
    ({"first_clause_min_words": True}, "cascade.first_clause_min_words: expected an integer, got True"),
    ({"temperature": HUGE}, f"cascade.temperature: expected a finite number, got {HUGE}"),
    ({"end_of_turn_silence": -HUGE}, f"cascade.end_of_turn_silence: expected a finite number, got {-HUGE}"),
    ({"vad_threshold": False}, "cascade.vad_threshold: expected a finite number, got False"),
])
def test_a_count_is_an_integer_and_any_other_number_a_finite_one(d, message):
    with pytest.raises(ConfigError) as e:
        CascadeConfig.from_dict(d)
    assert str(e.value) == message


def test_a_count_of_any_size_is_a_count():
    """(an int is exact: a reply cap no float holds is no cap, as backend.llm_max_tokens takes it)"""
    assert CascadeConfig.from_dict({"max_tokens": HUGE, "max_segment_words": 40}).max_tokens == HUGE
    assert load_config(None, [f"cascade.max_tokens={HUGE}"]).cascade.max_tokens == HUGE
