"""`kame bench step` times what its columns say: "no oracle" is the weights without the oracle
stream (a checkpoint's too: was the same with-oracle model again, fed pad), "oracle" with it; a
front-end without an oracle stream (Kyutai STT, a config.json with "oracle": false) is loaded and
timed as it runs, without one (was: given an oracle table it never runs with), its oracle columns
n/a with the reason. bench_pair is replaced: no timing is checked."""

import argparse
import json

import pytest

from kame.bench import step
from kame.model import loaders
from kame.model.lm import without_oracle

TIMES = dict(p50=0.010, p99=0.020, mean=0.008)
ORACLE_TIMES = dict(p50=0.012, p99=0.024, mean=0.008)


@pytest.fixture
def benched(monkeypatch):
    pairs = []

    def pair(plain, with_oracle, batch, frames, warmup):
        pairs.append((plain, with_oracle))
        return TIMES, (ORACLE_TIMES if with_oracle is not None else None)

    monkeypatch.setattr(step, "bench_pair", pair)
    return pairs


def _run(*specs):
    p = argparse.ArgumentParser()
    step.add_arguments(p)
    argv = [a for s in specs for a in ("--frontend", str(s))] + ["--batch", "1", "--frames", "1", "--warmup", "0"]
    assert step.main(p.parse_args(argv)) == 0


def test_a_kame_checkpoint_is_timed_with_and_without_its_oracle_stream(tmp_path, benched, capsys):
    model, _ = loaders.load_frontend("random:tiny")
    loaders.save_frontend(model, tmp_path / "kame")
    _run(tmp_path / "kame")
    (plain, with_oracle), = benched
    assert with_oracle.has_oracle and not plain.has_oracle and not plain.cfg.oracle  # (was: plain is with_oracle)
    assert plain.text_emb is with_oracle.text_emb  # the same weights, loaded once
    out = capsys.readouterr().out
    assert f"| `{tmp_path / 'kame'}` | 3.6 | 0.06 | 1 | 10.0 / 20.0 | 12.0 / 24.0 | 1.200 | 12.0 | 0.10 |" in out, out
    assert "no oracle: the weights without the oracle stream (as frontend.oracle=off runs them)" in out


def test_the_plain_copy_leaves_the_model_its_oracle_stream():
    model, _ = loaders.load_frontend("random:tiny")
    plain = without_oracle(model)
    assert model.has_oracle and model.cfg.oracle and "oracle_emb" in dict(model.named_children())
    assert plain.num_params() == model.num_params() - model.oracle_emb.weight.numel()


def test_a_checkpoint_saved_without_an_oracle_stream_is_timed_without_one(tmp_path, benched, capsys):
    model, _ = loaders.load_frontend("random:tiny", oracle=False)
    loaders.save_frontend(model, tmp_path / "moshi")
    assert not loaders.load_frontend(tmp_path / "moshi")[0].has_oracle  # (its config.json: "oracle": false)
    _run(tmp_path / "moshi", "random:stt-tiny")
    assert [w for _, w in benched] == [None, None]  # (was: both loaded with an oracle table)
    assert not any(p.has_oracle for p, _ in benched)
    out = capsys.readouterr().out
    assert f"| `{tmp_path / 'moshi'}` | 3.6 | - | 1 | 10.0 / 20.0 | n/a | n/a | 10.0 | 0.10 |" in out, out
    assert "| `random:stt-tiny` | 1.3 | - | 1 | 10.0 / 20.0 | n/a | n/a |" in out, out
    assert (f'`{tmp_path / "moshi"}`: no oracle stream (its config says "oracle": false): timed without one '
            f"only (oracle n/a)") in out
    assert "`random:stt-tiny`: no oracle stream (a Kyutai STT model, model_type stt)" in out


def test_a_moshi_checkpoint_gets_its_text_emb_copy_said(tmp_path, benched, capsys):
    model, _ = loaders.load_frontend("random:tiny", oracle=False)
    loaders.save_frontend(model, tmp_path / "moshi")
    raw = json.loads((tmp_path / "moshi" / "config.json").read_text())
    del raw["model_id"]["kame_lm"]["oracle"]  # (as a published Moshi config.json: kame runs it with a copy of text_emb)
    (tmp_path / "moshi" / "config.json").write_text(json.dumps(raw))
    _run(tmp_path / "moshi")
    (plain, with_oracle), = benched
    assert with_oracle.has_oracle and not plain.has_oracle
    assert "its oracle stream is a copy of text_emb, as kame run initialises it" in capsys.readouterr().out


def test_a_kame_file_whose_config_says_no_oracle_is_timed_both_ways(tmp_path, benched, capsys):
    model, _ = loaders.load_frontend("random:tiny")
    loaders.save_frontend(model, tmp_path / "k")
    raw = json.loads((tmp_path / "k" / "config.json").read_text())
    (tmp_path / "k" / "config.json").write_text(json.dumps({**raw, "oracle": False}))
    _run(tmp_path / "k")  # (kame run refuses it under frontend.oracle=auto; on and off run it)
    (plain, with_oracle), = benched
    assert with_oracle.has_oracle and not plain.has_oracle
    assert 'its config.json says "oracle": false but its weights hold oracle_emb' in capsys.readouterr().out
