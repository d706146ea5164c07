"""The embedded codec's fitted file as a user meets it: a file of another kind or a cut copy
given as ``embedded:FILE``, the shipped file replaced by another fit, and what `kame codec fit`
says about such a fit and about one too small to be a codec."""

from __future__ import annotations

import argparse
import logging
import shutil

import numpy as np
import pytest
import torch

from kame import registry
from kame.codec.embedded import EmbeddedCodecConfig, fit, load, model, save
from kame.codec.mimi import MIMI_NAME, build_random, save_mimi
from kame.errors import CheckpointError


def test_a_mimi_checkpoint_given_as_the_embedded_codec_says_where_it_goes(tmp_path):
    # was: "mimi.safetensors is not a kame-embedded-codec/2 file (format None)"
    mimi = save_mimi(build_random("tiny"), tmp_path / MIMI_NAME)
    with pytest.raises(CheckpointError, match=rf"{mimi} is not a fitted embedded codec: .*is a Mimi codec "
                                              rf"checkpoint; give it as the codec: mimi:{mimi} \(codec.spec, or "
                                              rf"the command's --codec\)"):
        registry.create("codec", f"embedded:{mimi}")
    other = tmp_path / "other.safetensors"  # safetensors of no known kind: says what it lacks
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match=r"is not a fitted embedded codec \(it has no 'kame' metadata\); .*kame codec fit"):
        load(other)
    # kame metadata that is not JSON (was: "not a readable safetensors file", then "format None")
    save_file({"w": torch.zeros(2)}, str(other), metadata={"kame": "{not json"})
    with pytest.raises(CheckpointError, match=r"is not a fitted embedded codec \(its 'kame' metadata is not JSON\)"):
        load(other)
    newer = tmp_path / "newer.safetensors"  # was: "is not a kame-embedded-codec/2 file (format 'kame-embedded-codec/3')"
    newer.write_bytes(model.DEFAULT_PATH.read_bytes().replace(model.FORMAT.encode(), b"kame-embedded-codec/3"))
    with pytest.raises(CheckpointError, match=r"format 'kame-embedded-codec/3', made by a newer kame; "
                                              r"this one reads up to 'kame-embedded-codec/2': upgrade kame"):
        load(newer)


def test_a_cut_copy_of_a_fitted_file_says_it_is_truncated(tmp_path):
    # was: "not a readable safetensors file (Error while deserializing header: incomplete metadata,
    # file not fully covered)", or with its .sha256 beside it "corrupt or from another fit"
    cut = tmp_path / "fit.safetensors"
    data = model.DEFAULT_PATH.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"fit\.safetensors is truncated: .*incomplete download or copy"):
        load(cut)
    (tmp_path / "fit.safetensors.sha256").write_text(f"{model.DEFAULT_SHA256}  fit.safetensors\n")
    with pytest.raises(CheckpointError, match="is truncated"):
        load(cut)


def test_a_file_url_and_a_home_path_name_a_local_fitted_file(tmp_path, monkeypatch):
    # as mimi: and config.json's file names take them (was: "embedded codec file not found: file:/...")
    copy = tmp_path / "fit.safetensors"
    copy.write_bytes(model.DEFAULT_PATH.read_bytes())
    monkeypatch.setenv("HOME", str(tmp_path))
    for spec in (f"embedded:file://{copy}", "embedded:~/fit.safetensors"):
        assert registry.create("codec", spec).rvq.codebooks.shape == (8, 2048, 64), spec
    from kame.config import frontend_spec_form

    assert frontend_spec_form(f"file://{tmp_path}/ck") == ("path", None, tmp_path / "ck")  # a front-end too


def test_the_shipped_file_replaced_by_another_fit_says_how_to_fix_it(tmp_path, monkeypatch):
    # was: "has sha256 ..., expected ... (corrupt or from another fit; re-run `kame codec fit`)",
    # which a refit with another seed can never satisfy
    shipped = tmp_path / "embedded_codec.safetensors"
    digest = save(load(), shipped, {"seed": 7})
    monkeypatch.setattr(model, "DEFAULT_PATH", shipped)
    with pytest.raises(CheckpointError, match=rf"the shipped embedded codec file {shipped} has sha256 {digest}, "
                                              r"but kame ships .*set DEFAULT_SHA256 to the new sha256; else restore"):
        registry.create("codec", "embedded")
    assert load(shipped).num_codebooks == 8  # as a named file it loads (its .sha256 beside it matches)


def _tiny_fit(monkeypatch, seconds: float):
    """`fit` on a few seconds of a synthetic voice instead of espeak/piper speech."""
    def clips(voices, sentences, seed=0):
        t = np.arange(int(seconds * 24000)) / 24000
        pcm = (0.2 * np.sin(2 * np.pi * 130 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        return [(voices[0], "a", pcm)]

    monkeypatch.setattr(fit, "synthesize", clips)


def test_fit_warns_when_it_has_fewer_vectors_than_codebook_entries(monkeypatch, caplog):
    from dataclasses import replace

    _tiny_fit(monkeypatch, 2.0)  # 25 frames x 4 grid offsets = ~100 vectors
    cfg = replace(EmbeddedCodecConfig(), cardinality=256, kmeans_iters=1, pca_dim=8)
    with caplog.at_level(logging.WARNING, logger="kame.codec.embedded.fit"):
        fit.fit(cfg, sentences=1, correction_clips=1)
    assert "for 256 entries per codebook: the codebooks will copy them" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kame.codec.embedded.fit"):
        fit.fit(replace(cfg, cardinality=16), sentences=1, correction_clips=1)
    assert "entries per codebook" not in caplog.text


def _fitted(monkeypatch, codec) -> None:
    """`fit` gives ``codec`` at once (the command's writing, not its minutes of fitting)."""
    monkeypatch.setattr(fit, "fit", lambda cfg, **kw: (codec, {"seed": 1, "sentences": 1, "clips": 1, "audio_minutes": 0.1,
                                                                "voices": [], "vectors": 1, "synth_s": 0, "vq_s": 0,
                                                                "total_s": 0}))


def test_fit_into_the_shipped_path_says_the_checksum_must_follow(tmp_path, monkeypatch, capsys):
    shipped = tmp_path / "assets" / "embedded_codec.safetensors"
    shipped.parent.mkdir()
    shutil.copy(model.DEFAULT_PATH, shipped)
    monkeypatch.setattr(model, "DEFAULT_PATH", shipped)
    _fitted(monkeypatch, load())
    p = argparse.ArgumentParser()
    fit.add_arguments(p)
    assert fit.main(p.parse_args(["-o", str(shipped)])) == 0
    out = capsys.readouterr().out
    assert "`--codec embedded` refuses it until DEFAULT_SHA256 in kame/codec/embedded/model.py is set to" in out
    assert fit.main(p.parse_args(["-o", str(tmp_path / "elsewhere.safetensors")])) == 0
    assert "DEFAULT_SHA256" not in capsys.readouterr().out


def test_a_save_stopped_midway_leaves_the_previous_fit_whole(tmp_path, monkeypatch):
    """(was: safetensors wrote over the fit in place, then its .sha256: a stopped `kame codec fit -o`
    left a cut fit, or the new one beside the old .sha256)"""
    from kame.model import tensorfiles

    path = tmp_path / "fit.safetensors"
    digest = save(load(), path, {"seed": 7})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert before[path.name + ".sha256"].decode() == f"{digest}  {path.name}\n"
    write = tensorfiles.save_tensors

    def stopped(tensors, to, metadata=None):  # killed (here: Ctrl-C) halfway through the write
        write(tensors, to, metadata)
        to.write_bytes(to.read_bytes()[:1000])
        raise KeyboardInterrupt

    monkeypatch.setattr(tensorfiles, "save_tensors", stopped)
    with pytest.raises(KeyboardInterrupt):
        save(load(), path, {"seed": 8})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # (and no temporary file left)
    monkeypatch.undo()
    assert save(load(), path, {"seed": 7}) == digest and path.read_bytes() == before[path.name]  # (the same bytes)


def test_the_temporaries_a_killed_fit_left_beside_its_output_are_removed(tmp_path, monkeypatch, capsys):
    """A fit killed outright (SIGKILL) as it saved leaves .NAME.RANDOM.tmp beside -o (of the fit and
    its .sha256): the next fit writing it removes those an hour old, and says so on stderr; a fresh
    one, a user's look-alikes and another file's temporary are left (was: never removed)."""
    from tests.train._stale import check_swept, plant

    _fitted(monkeypatch, load())
    out = tmp_path / "fits" / "mine.safetensors"
    stale, kept = plant(out.parent, out.name)
    more, keep = plant(out.parent, out.name + ".sha256")
    p = argparse.ArgumentParser()
    fit.add_arguments(p)
    assert fit.main(p.parse_args(["-o", str(out)])) == 0 and load(out) is not None
    check_swept("kame codec fit", stale + more, kept + keep, capsys.readouterr().err)
