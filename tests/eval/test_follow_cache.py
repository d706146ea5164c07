"""`kame eval follow` on a set whose codes.npz its codec cannot use: kame train's rule
(kame.train.batching: codes_cacheable, cached_dialogue), one mechanism for both. A cache made by
another codebook count (or codec) is said, as kame train says it, and that dialogue encoded on
the fly (was: refused, naming the Python API kame.train.codes.write_codes); a codec without a
fingerprint reads no cache (was: refused, naming use_cache=False, so a front-end trained with one
could not be evaluated on a set with caches). A cache it can use is still read. Nothing is written
to the set."""

from __future__ import annotations

import json

import pytest

from kame import registry
from kame.cli import main
from kame.train.codes import write_codes
from kame.train.data import CODES, read_dialogue
from kame.train.manifest import read_manifest

from ..train._fakes import FakeCodec
from ..train.test_finetune import _data


@pytest.fixture
def codec():
    """kame eval follow's --codec shared: its encode calls are counted (FakeCodec.calls); its
    fingerprint can be taken away."""
    one = FakeCodec()
    registry.register("codec", "counted", lambda arg=None, **kw: one, replace=True)
    yield one
    registry._ENTRIES["codec"].pop("counted", None)


def _cached(tmp_path, num_codebooks: int):
    """A set of 2 dialogues whose codes.npz a FakeCodec of ``num_codebooks`` codebooks wrote."""
    manifest = _data(tmp_path / "data", n=2, T=24)
    for e in read_manifest(manifest):
        write_codes(read_dialogue(e.path), FakeCodec(num_codebooks), spec="fake")
    return manifest, [e.path / CODES for e in read_manifest(manifest)]


def _follow(manifest, out):
    return main(["eval", "follow", str(manifest), "--frontend", "random:tiny", "--codec", "counted", "--no-asr",
                 "--temp", "0", "-o", str(out)])


def _results(out):
    return [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]


def test_a_cache_of_another_codebook_count_is_said_and_encoded_on_the_fly(tmp_path, capsys, codec):
    manifest, caches = _cached(tmp_path, 4)  # (the front-end: random:tiny, 8 codebooks)
    written = [p.read_bytes() for p in caches]
    assert _follow(manifest, tmp_path / "stale") == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    lines = err.splitlines()
    for p in caches:  # kame train's words (batching.cached_dialogue's)
        assert [ln for ln in lines if ln.startswith(f"{p}: cached with 4 codebooks, the codec codes with 8")
                and ln.endswith(": encoding it again")], err
    assert codec.calls == 2  # each dialogue encoded once
    assert [p.read_bytes() for p in caches] == written  # (the set is not written)
    for p in caches:
        p.unlink()
    assert _follow(manifest, tmp_path / "none") == 0
    assert "encoding it again" not in capsys.readouterr().err
    assert _results(tmp_path / "stale") == _results(tmp_path / "none")  # (the same measures)


def test_a_cache_it_can_use_is_read(tmp_path, capsys, codec):
    manifest, _ = _cached(tmp_path, 8)
    assert _follow(manifest, tmp_path / "out") == 0
    assert codec.calls == 0 and "encoding" not in capsys.readouterr().err  # (the codes from codes.npz)


def test_a_codec_without_a_fingerprint_reads_no_cache(tmp_path, capsys, codec):
    manifest, _ = _cached(tmp_path, 8)
    codec.fingerprint = None  # (as mimi:random-tiny, which kame train accepts, encoding on the fly)
    assert _follow(manifest, tmp_path / "out") == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert err.count("codec counted has no fingerprint: its codes cannot be cached, every run encodes them") == 1
    assert "use_cache" not in err and codec.calls == 2
