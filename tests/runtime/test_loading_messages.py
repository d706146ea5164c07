"""kame.runtime.loading.config_keys leads a load error with its key, value and file: the error's
own text follows as a sentence, also for an error raised with several arguments (was shown as
their tuple: "frontend.spec = '/ck' (from kame.toml): ('a', 'b')") or with none."""

from __future__ import annotations

import pytest

from kame.config import load_config
from kame.errors import CheckpointError, MissingPackageError, NotAvailableError
from kame.runtime.loading import config_key, config_keys


def _raise_in(cfg, exc):
    with pytest.raises(type(exc)) as e:
        with config_keys(cfg):
            with config_key("frontend.spec"):
                raise exc
    return e.value


def test_an_error_with_several_arguments_reads_as_one_message(tmp_path):
    toml = tmp_path / "kame.toml"
    toml.write_text('[frontend]\nspec = "/ck"\n')
    cfg = load_config(toml)
    exc = _raise_in(cfg, CheckpointError("front-end '/ck' is not a checkpoint", "give a checkpoint folder"))
    assert str(exc) == f"frontend.spec = '/ck' (from {toml}): front-end '/ck' is not a checkpoint; give a checkpoint folder"
    exc = _raise_in(cfg, MissingPackageError("no package x", "pip install x"))  # (an ImportError too)
    assert str(exc) == f"frontend.spec = '/ck' (from {toml}): no package x; pip install x"


def test_one_argument_is_kept_as_it_is_and_none_says_the_error():
    cfg = load_config(None, ["frontend.spec=/ck"])
    assert str(_raise_in(cfg, CheckpointError("('a', 'b') is its text"))) == \
        "frontend.spec = '/ck': ('a', 'b') is its text"
    assert str(_raise_in(cfg, NotAvailableError())) == "frontend.spec = '/ck': NotAvailableError"
