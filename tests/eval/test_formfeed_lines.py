"""A FastChat JSONL line ending in a form feed is read (was, once lines were split only at \\n,
\\r\\n and \\r: "not valid JSON (Extra data ...)"; splitlines had split the form feed off)."""

from __future__ import annotations

from kame.eval.reference import fastchat_lines


def test_a_line_ending_in_a_form_feed_is_read(tmp_path):
    text = '{"question_id": 81, "turns": ["Hi"]}\x0c\n{"question_id": 82, "turns": ["Yo"]}\n'
    got = list(fastchat_lines(tmp_path / "q.jsonl", text, "question", lambda d: True, "turns"))
    assert [d["question_id"] for _, d in got] == [81, 82]
    assert [where.rsplit(":", 1)[1] for where, _ in got] == ["1", "2"]
