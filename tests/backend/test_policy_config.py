"""Every field of the oracle's re-prediction policy has its backend.* config key (was: only some;
restart_on_final, event_driven and the timeouts were Python-only, min_interval followed poll_interval_s)."""

import dataclasses

import pytest

from kame.backend.policy import OraclePolicy
from kame.config import BackendConfig, load_config
from kame.errors import ConfigError


def test_the_default_config_gives_the_policy_it_gave_before_the_keys():
    # what from_config made of the defaults when only the poll/restart/LLM keys existed
    before = OraclePolicy(min_new_words=2, max_restarts=5, window=2.0, poll_interval=0.5, min_interval=0.5,
                          max_tokens=80, temperature=0.0, retry_backoff=1.0, wait_first_token=False)
    assert OraclePolicy.from_config(BackendConfig()) == before
    assert OraclePolicy.from_config(load_config(None).backend) == before


def test_set_overrides_reach_every_policy_field():
    sets = ["backend.min_new_words=3", "backend.restart_on_final=false", "backend.min_interval_s=1.5",
            "backend.max_restarts=7", "backend.restart_window_s=4", "backend.poll_interval_s=0.25",
            "backend.event_driven=false", "backend.wait_first_token=true", "backend.llm_max_tokens=40",
            "backend.llm_temperature=0.5", "backend.llm_first_token_timeout_s=30",
            "backend.llm_chunk_timeout_s=12.5", "backend.retry_s=2", "backend.llm_retry_max_s=20",
            "backend.reset_on_first_token=false"]  # as `kame run --set KEY=VALUE` passes them
    got = OraclePolicy.from_config(load_config(None, sets).backend)
    want = OraclePolicy(min_new_words=3, restart_on_final=False, min_interval=1.5, max_restarts=7, window=4.0,
                        poll_interval=0.25, event_driven=False, wait_first_token=True, max_tokens=40,
                        temperature=0.5, first_token_timeout=30.0, chunk_timeout=12.5, retry_backoff=2.0,
                        max_backoff=20.0, reset_on_first_token=False)
    defaults = OraclePolicy()
    # (each field differs from its default: none is left out of the keys)
    assert [f.name for f in dataclasses.fields(want) if getattr(want, f.name) == getattr(defaults, f.name)] == []
    assert got == want


def test_min_interval_follows_the_poll_interval_unless_set():
    assert OraclePolicy.from_config(load_config(None, ["backend.poll_interval_s=1.0"]).backend).min_interval == 1.0
    p = OraclePolicy.from_config(load_config(None, ["backend.poll_interval_s=1.0", "backend.min_interval_s=0"]).backend)
    assert (p.poll_interval, p.min_interval) == (1.0, 0.0)
    p = OraclePolicy.from_config(load_config(None, ["backend.min_interval_s=0.2", "backend.min_interval_s=none"]).backend)
    assert p.min_interval == 0.5


@pytest.mark.parametrize("item, message", [
    ("backend.llm_chunk_timeout_s=0", "backend.llm_chunk_timeout_s: must be >= 0.1, got 0.0"),
    ("backend.min_interval_s=-1", "backend.min_interval_s: must be >= 0.0, got -1.0"),
    ("backend.event_driven=maybe", "backend.event_driven: expected true/false, got 'maybe'"),
])
def test_bad_policy_values_name_their_key(item, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [item])
