"""`--codec mimi:ARG` as a user writes it: a file:// path (as config.json's mimi_name takes
one), a misspelled ARG, and a Mimi of another size saved without kame's config (as moshi's
own code writes it)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from kame import registry
from kame.codec.mimi import MIMI_NAME, MimiConfig, build_random, load_mimi, save_mimi
from kame.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("mimi")
    return save_mimi(build_random("tiny", seed=1), d / MIMI_NAME)


def test_a_file_url_is_a_path(tiny):
    # was: "Mimi checkpoint not found: file:/tmp/.../tokenizer-....safetensors"
    x = 0.1 * torch.randn(1, 3840, generator=torch.Generator().manual_seed(0))
    want = load_mimi(tiny).encode(x)
    for spec in (f"mimi:file://{tiny}", f"mimi:file://{tiny.parent}"):
        assert torch.equal(registry.create("codec", spec).encode(x), want)


def test_a_spec_that_names_nothing_says_what_mimi_takes(tmp_path):
    with pytest.raises(CheckpointError, match=r"Mimi checkpoint not found: randm \(mimi:ARG takes a \.safetensors "
                                              r"file, a folder holding one, hf://ORG/REPO\[/FILE\], random or random-tiny\)"):
        registry.create("codec", "mimi:randm")


def test_a_smaller_mimi_without_kame_config_says_the_published_shapes_were_assumed(tiny, tmp_path):
    # was only: "does not match the Mimi config: missing key '...layers.2...' (+119 more)"
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(tiny)), str(bare))  # the tensors alone, as moshi writes them
    with pytest.raises(CheckpointError, match=r"does not match the Mimi config: .*\(the file holds no kame config, so "
                                              r"the published Mimi's shapes were assumed; .*config=MimiConfig"):
        registry.create("codec", f"mimi:{bare}")
    assert load_mimi(bare, config=MimiConfig.tiny()).num_codebooks == 8  # as the message says
    with pytest.raises(CheckpointError) as err:  # a file with its config: no such note
        load_mimi(tiny, config=MimiConfig())
    assert "no kame config" not in str(err.value)


def test_a_mimi_of_fewer_codebooks_codes_with_what_it_holds(tmp_path):
    # was: "num_codebooks must be an int in [1, 4], got 8" - an 8 the user never set
    four = save_mimi(build_random(MimiConfig.tiny(n_q=4, num_codebooks=4)), tmp_path / "four.safetensors")
    assert registry.create("codec", f"mimi:{four}").num_codebooks == 4
    assert load_mimi(four).num_codebooks == 4 and load_mimi(four, num_codebooks=2).num_codebooks == 2
    assert registry.create("codec", f"mimi:{four}", num_codebooks=3).num_codebooks == 3  # what the runtime asks
    with pytest.raises(ConfigError, match=rf"got 8 \(four\.safetensors holds 4 codebooks: {tmp_path}/four"):
        load_mimi(four, num_codebooks=8)
