"""kame data's QA reader refuses a file holding a NUL byte as paths.read_text does (UTF-16 text
without a BOM, a binary file): valid UTF-8, so it was read and refused as "qa.jsonl:1: not a JSON
line (Expecting property name ...)", which says nothing of the encoding."""

from __future__ import annotations

import json

import pytest

from kame.train.data import DataError
from kame.train.qa import read_qa

RECS = [{"question": "What is a cat?", "answer": "A small mammal."}, {"question": "And a dog?", "answer": "One too."}]


@pytest.mark.parametrize("name, text", [("qa.jsonl", "".join(json.dumps(r) + "\n" for r in RECS)),
                                        ("qa.json", json.dumps(RECS))])
def test_a_utf16_file_without_a_bom_is_refused_as_not_text(tmp_path, name, text):
    f = tmp_path / name
    f.write_bytes(text.encode("utf-16-le"))
    with pytest.raises(DataError, match=r"^" + str(f) + r": not text \(a NUL byte at byte 1: a binary file, or "
                                        r"UTF-16 text\); save it as UTF-8 \(iconv"):
        read_qa(f)
    f.write_bytes(text.encode())  # (the same as UTF-8: read)
    assert [i.question for i in read_qa(f)] == ["What is a cat?", "And a dog?"]
