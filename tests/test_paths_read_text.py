"""paths.read_text, the reader of the text files a user may have saved from an editor (MT-Bench
question and reference files, manifests, knowledge notes): a UTF-8 BOM is skipped (was: kept, so
json refused line 1: "Unexpected UTF-8 BOM"), a bad byte is counted from the file's start, and
a NUL byte (a binary file, UTF-16 without a BOM: valid UTF-8 otherwise) is refused."""

from __future__ import annotations

import codecs
import json

import pytest

from kame.errors import ConfigError
from kame.paths import read_text
from kame.train.data import DataError
from kame.train.manifest import read_manifest

BOM = codecs.BOM_UTF8


def test_a_bom_is_skipped_and_the_bytes_kept(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_bytes(BOM + '{"a": "café"}\r\n'.encode())
    data, text = read_text(f, "x", "give x")
    assert text == '{"a": "café"}\r\n' and json.loads(text.splitlines()[0]) == {"a": "café"}
    assert data.startswith(BOM)  # (the file as it is: its sha256 is the file's)
    f.write_bytes('{"a": "\ufeff"}'.encode())  # (one inside the text is text)
    assert read_text(f, "x", "give x")[1] == '{"a": "\ufeff"}'


def test_a_bad_byte_is_counted_from_the_files_start(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes(BOM + "Le café".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"^x: not UTF-8 text \(byte 9\); give x$"):
        read_text(f, "x", "give x")


def test_a_nul_byte_is_no_text(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_bytes('{"a": 1}\n'.encode("utf-16-le"))  # (no BOM: every byte valid UTF-8)
    with pytest.raises(DataError, match=r"^x: not text \(a NUL byte at byte 1: a binary file, or UTF-16 text\); "
                                        r"give x$"):
        read_text(f, "x", "give x", DataError)


def test_a_manifest_with_a_bom_is_read(tmp_path):
    m = tmp_path / "train.jsonl"
    m.write_bytes(BOM + b'{"path": "d1", "duration": 1.0, "frames": 12}\r\n')
    (e,) = read_manifest(m, check=False)
    assert e.path == tmp_path / "d1" and e.frames == 12
