"""results.jsonl (read_jsonl: resume, kame eval pairwise's folders) is split into lines as the
question, reference and manifest files are (kame.paths.text_lines: at \\n, \\r\\n and \\r only, an
editor's line numbers; was str.splitlines, which split a hand-edited record inside a string at a raw
U+2028 and refused it), and a line ending in \\x0c, \\x0b or \\x1c-\\x1e is still read, as
splitlines read it (text_lines alone leaves it: "Extra data")."""

from __future__ import annotations

import json

import pytest

from kame.errors import ConfigError
from kame.eval.results import read_jsonl


def test_a_raw_line_separator_inside_a_string_is_one_record(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"answer": "a\u2028b"}, ensure_ascii=False) + "\n" + '{"answer": "c"}\n' + "{bad\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"results.jsonl:3: not valid JSON"):  # (was: :1, the record split)
        read_jsonl(path, "rerun")
    path.write_text(path.read_text(encoding="utf-8").replace("{bad\n", ""), encoding="utf-8")
    assert read_jsonl(path, "rerun") == [{"answer": "a\u2028b"}, {"answer": "c"}]


@pytest.mark.parametrize("end", ["\x0c", "\x0b", "\x1c", "\x1e", "\u2028"])
def test_a_line_ending_in_another_break_is_read(tmp_path, end):
    path = tmp_path / "results.jsonl"
    path.write_text('{"answer": "a"}' + end + "\n" + end + '{"answer": "b"}\n', encoding="utf-8")
    assert read_jsonl(path, "rerun") == [{"answer": "a"}, {"answer": "b"}]  # (with text_lines, unstripped: "Extra data")
