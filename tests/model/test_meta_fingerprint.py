"""kame.model.meta.codec_identity: the codec_sha256 save_frontend records is the codec's
fingerprint; kame's embedded codec's is taken from its file (checked as loading it checks it)
without building the codec, any other codec's from the codec created."""

import pytest
import torch

from kame import registry
from kame.codec.embedded import model as embedded
from kame.errors import CheckpointError
from kame.model.loaders import load_frontend, save_frontend, save_tensors
from kame.model.meta import codec_identity
from kame.paths import file_sha256


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """Another fit's file (another sha256), with its .sha256 beside it."""
    path = tmp_path_factory.mktemp("fit") / "other.safetensors"
    embedded.save(embedded.load(), path, meta={"note": "another fit"})
    return path


@pytest.fixture
def built(monkeypatch):
    """The embedded codecs built (each load)."""
    calls, real = [], embedded.load

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(embedded, "load", counting)
    return calls


def test_the_embedded_codec_fingerprint_is_the_created_codecs_without_building_it(other, built, tmp_path):
    shipped = registry.create("codec", "embedded").fingerprint
    fitted = registry.create("codec", f"embedded:{other}").fingerprint
    assert shipped == embedded.DEFAULT_SHA256 and fitted == file_sha256(other) != shipped
    built.clear()
    assert codec_identity("embedded")[0] == shipped
    assert codec_identity(f"embedded:{other}")[0] == fitted
    model = load_frontend("random:tiny", text_card=4000)[0]  # (kame's default tokenizer fits it)
    folder = save_frontend(model, tmp_path / "ck", codec=f"embedded:{other}")
    assert {k: v for k, v in load_frontend(folder)[1].kame.items() if k not in ("format", "written_by")} == \
        {"codec": f"embedded:{other}", "codec_sha256": fitted}
    assert built == []  # no codec was built for it


def test_the_embedded_file_is_checked_as_loading_checks_it(other, tmp_path):
    with pytest.raises(CheckpointError, match=r"embedded codec file not found: .*gone.safetensors"):
        codec_identity(f"embedded:{tmp_path / 'gone.safetensors'}")[0]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(other.read_bytes())
    (tmp_path / "bad.safetensors.sha256").write_text("ab" * 32 + "  bad.safetensors\n")
    with pytest.raises(CheckpointError, match=r"bad.safetensors has sha256 [0-9a-f]{64}, expected abab"):
        codec_identity(f"embedded:{bad}")[0]
    with pytest.raises(CheckpointError, match=r"bad.safetensors has sha256 [0-9a-f]{64}, expected abab"):
        embedded.load(bad)  # (the same check, the same words)
    not_codec = tmp_path / "tok.safetensors"
    save_tensors({"w": torch.zeros(2)}, not_codec)
    with pytest.raises(CheckpointError, match=r"tok.safetensors is not a fitted embedded codec \(it has no 'kame' "
                                              r"metadata\)"):
        codec_identity(f"embedded:{not_codec}")[0]


def test_another_codec_is_created_for_its_fingerprint(monkeypatch, built):
    assert codec_identity("mimi:random-tiny")[0] is None  # (random weights: none)

    class Mine:  # (the numbers and methods the registry asks of a codec)
        sample_rate, frame_rate, frame_size, num_codebooks, cardinality = 24000, 12.5, 1920, 8, 2048
        fingerprint = "cd" * 32
        encode = decode = stream = set_num_codebooks = staticmethod(lambda *a: None)

    made = []
    registry.schemes("codec")  # (kame's table loaded, so the entry below is what is looked up)
    entry = registry.Entry(lambda arg, **kw: made.append(arg) or Mine(), None)
    monkeypatch.setitem(registry._ENTRIES["codec"], "embedded", entry)  # a plugin in the embedded codec's place
    assert codec_identity("embedded:x")[0] == "cd" * 32 and made == ["x"] and built == []
