"""kame data synth's record of a set (synth.json, kame.train.synth.settings_of): what kame train's
warning of a set cleaned otherwise (kame.train.oracle_sim.stale_cleaning) names comes from it."""

from __future__ import annotations

import argparse

from kame.train.oracle_sim import SimOracleConfig
from kame.train.synth import SynthConfig, settings_of


def test_the_tokenizer_is_recorded_as_a_path_from_anywhere(tmp_path, monkeypatch):
    """kame train's warning names the set's `kame data oracle` run with its --tokenizer: a path as
    typed ("tok.model") named another file when kame train ran from another folder."""
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(qa="qa.jsonl", format="auto", language=None, images=False, llm="none",
                              tokenizer="tok.model", turns=1)
    assert settings_of(args, SynthConfig(), SimOracleConfig())["tokenizer"] == str(tmp_path / "tok.model")
    args.tokenizer = None
    assert settings_of(args, SynthConfig(), SimOracleConfig())["tokenizer"] is None
