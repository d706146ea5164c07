"""`kame bench step` runs and prints its table (tiny config, a few steps; no timing checks)."""

import argparse

from kame.bench import step


def test_bench_step_prints_table(capsys):
    p = argparse.ArgumentParser()
    step.add_arguments(p)
    args = p.parse_args(["--frontend", "random:tiny", "--frontend", "random:stt-tiny", "--batch", "2",
                         "--frames", "3", "--warmup", "1"])
    assert step.main(args) == 0
    out = capsys.readouterr().out
    assert "| `random:tiny` | 3.6 | 0.06 | 2 |" in out
    assert "`random:stt-tiny`" in out and "oracle overhead" in out


def test_bench_step_checks_every_spec_and_the_dtype_first(monkeypatch):
    import pytest

    from kame.errors import ConfigError

    p = argparse.ArgumentParser()
    step.add_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--dtype", "int8"])  # argparse: "invalid choice"
    benched = []
    monkeypatch.setattr(step, "bench_pair", lambda *a: benched.append(a))
    args = p.parse_args(["--frontend", "random:tiny", "--frontend", "random:7b"])
    with pytest.raises(ConfigError, match="random:7b"):
        step.main(args)
    assert not benched  # not after benching random:tiny


def test_bench_step_refuses_context_null_before_the_weights(tmp_path, monkeypatch):
    """(was: the weights read, then "this model's config has context null" from the stepper,
    naming no front-end)"""
    import json

    import pytest

    from kame.errors import ConfigError
    from kame.model import loaders

    model, _ = loaders.load_frontend("random:tiny")
    loaders.save_frontend(model, tmp_path / "ck")
    raw = json.loads((tmp_path / "ck" / "config.json").read_text())
    (tmp_path / "ck" / "config.json").write_text(json.dumps({**raw, "context": None}))
    monkeypatch.setattr(loaders, "read_state", lambda *a: pytest.fail("the weights were read"))
    p = argparse.ArgumentParser()
    step.add_arguments(p)
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'ck'}: its config has context null"):
        step.main(p.parse_args(["--frontend", str(tmp_path / "ck"), "--frames", "1"]))
