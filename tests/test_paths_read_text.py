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


def test_lines_are_split_where_an_editor_splits_them(tmp_path):
    """U+2028, U+2029 and U+0085, which JSON allows raw inside a string (json.dumps with
    ensure_ascii=False writes them so), do not end a line (was: str.splitlines cut the line there:
    a valid line refused as "Unterminated string", and the numbers after it not an editor's)."""
    from kame.errors import ConfigError as Refused
    from kame.eval.mtbench import read_questions
    from kame.paths import text_lines

    assert text_lines("a\u2028b\u0085c\r\nd\re\nf\x0c") == ["a\u2028b\u0085c", "d", "e", "f"]  # (its end: no white space)
    q = tmp_path / "q.jsonl"
    line = json.dumps({"question_id": 1, "category": "stem", "turns": ["One\u2028two\u2029three\u0085four"]},
                      ensure_ascii=False)
    q.write_text(line + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(Refused, match=r"q.jsonl:2: question_id 1 again \(first at .*q.jsonl:1\)"):  # (an editor's)
        read_questions(q, categories=None)
    q.write_text(line + "\n", encoding="utf-8")
    (question,) = read_questions(q, categories=None)
    assert question.turns == ["One\u2028two\u2029three\u0085four"]
    m = tmp_path / "train.jsonl"
    m.write_text('{"path": "d\u2028 1", "duration": 1.0, "frames": 12}\n{"path": "d2"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train.jsonl:2: not a manifest line"):
        read_manifest(m, check=False)
