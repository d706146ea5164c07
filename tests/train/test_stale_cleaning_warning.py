"""kame train on a set cleaned otherwise than this kame cleans its oracle text warns once, in one
line naming the `kame data oracle` run that cleans it anew, and trains (was: nothing said)."""

from __future__ import annotations

import json

from kame.backend.speech_text import CLEANING_VERSION
from kame.backend.tokenizer import default_tokenizer

from ._fakes import FakeCodec
from .test_finetune import _data, _tiny


def test_a_set_cleaned_otherwise_is_warned_of_once_and_trains(tmp_path):
    from kame.train.batching import load_examples

    manifest = _data(tmp_path / "data")
    (manifest.parent / "synth.json").write_text(json.dumps({"llm": "random", "interval_s": 0.5, "delay_s": 0.0}))
    said: list[str] = []
    examples = load_examples(manifest, FakeCodec(), default_tokenizer(), _tiny().cfg, codec_spec="fake",
                             echo=said.append)
    warned = [s for s in said if "cleaned" in s]
    assert examples and len(warned) == 1 and warned[0].startswith("warning: ") and "\n" not in warned[0], said
    assert f"`kame data oracle {manifest} --llm random --interval 0.5 --delay 0.0`" in warned[0], warned
    (manifest.parent / "synth.json").write_text(json.dumps({"llm": "random", "cleaning": CLEANING_VERSION}))
    said.clear()
    load_examples(manifest, FakeCodec(), default_tokenizer(), _tiny().cfg, codec_spec="fake", echo=said.append)
    assert not [s for s in said if "cleaned" in s], said
