"""kame eval mtbench runs the mode its config says, as kame run does (was: --mode's default tandem
was applied over the config, so `--set mode=cascade` or a config with mode = "cascade" ran the
tandem and recorded "mode": "tandem" next to "set": ["mode=cascade"])."""

from __future__ import annotations

import json

import pytest

from kame.cli import _build_parser
from kame.eval.mtbench import agent_config, agent_fingerprint, check_settings

from . import test_mtbench
from .test_mtbench import QUESTIONS, eval_, write

judges = test_mtbench.judges  # (test_mtbench's scripted judges: a fixture, used by name)


def settings_of(tmp_path, *options) -> tuple[str, dict]:
    """The mode the command's config gives, and the eval.json it writes for it (nothing run)."""
    argv = ["eval", "mtbench", "q.jsonl", "-o", str(tmp_path / "out"), "--judge", "embedded", *options]
    parser, _ = _build_parser(argv)
    args = parser.parse_args(argv)
    cfg = agent_config(args)
    (tmp_path / "out").mkdir(exist_ok=True)
    settings = check_settings(tmp_path / "out", args, agent_fingerprint(args, cfg))
    return cfg.mode, settings


@pytest.mark.parametrize("options, mode", [
    ((), "tandem"),  # (the config's default)
    (("--set", "mode=cascade"), "cascade"),
    (("--config", "CASCADE"), "cascade"),
    (("--config", "CASCADE", "--mode", "tandem"), "tandem"),  # (--mode still overrides the config)
    (("--set", "mode=cascade", "--mode", "tandem"), "tandem"),
])
def test_the_configs_mode_is_run_and_recorded(tmp_path, options, mode):
    toml = tmp_path / "cascade.toml"
    toml.write_text('mode = "cascade"\n')
    options = tuple(str(toml) if o == "CASCADE" else o for o in options)
    got, settings = settings_of(tmp_path, *options)
    assert (got, settings["mode"]) == (mode, mode)
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["mode"] == mode


def test_set_mode_cascade_runs_the_cascade(tmp_path, capsys, fake_components, judges):
    """End to end (fake STT/LLM/TTS): the header, eval.json and each result say cascade."""
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    assert eval_(qf, out, "--set", "mode=cascade", "--set", "cascade.tts=fake") == 0
    assert "mode cascade, judge test_judge" in capsys.readouterr().out
    assert json.loads((out / "eval.json").read_text())["mode"] == "cascade"
    (r,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert r["mode"] == "cascade"
