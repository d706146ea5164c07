"""kame eval mtbench's question file and --reference file saved with a UTF-8 BOM (as Notepad may
save them) are read as without one (was: "q.jsonl:1: not valid JSON (Unexpected UTF-8 BOM ...)",
though kame data synth's QA reader and the TOML config skip it)."""

from __future__ import annotations

import codecs
import hashlib
import json

from kame.eval.mtbench import read_questions
from kame.eval.reference import read_reference_answers


def test_a_question_file_with_a_bom(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_bytes(codecs.BOM_UTF8 + (json.dumps({"question_id": 131, "category": "stem", "turns": ["What is a cat?"]})
                                     + "\r\n").encode())
    (q,) = read_questions(f)
    assert (q.id, q.category, q.turns) == ("131", "stem", ["What is a cat?"])


def test_a_reference_file_with_a_bom(tmp_path):
    f = tmp_path / "gpt-4.jsonl"
    data = codecs.BOM_UTF8 + (json.dumps({"question_id": 101, "choices": [{"index": 0, "turns": ["One."]}]})
                              + "\n").encode()
    f.write_bytes(data)
    ref = read_reference_answers(f)
    assert ref.answers == {"101": ["One."]} and ref.sha256 == hashlib.sha256(data).hexdigest()
