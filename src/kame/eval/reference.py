"""Reference answers for ``kame eval mtbench --reference FILE``: FastChat's
``data/mt_bench/reference_answer/gpt-4.jsonl`` (its model-answer format: one object a line,
question_id and choices[0].turns, one answer per turn).

    ref = read_reference_answers("gpt-4.jsonl")       # ConfigError naming file:line on a bad line
    missing = apply_references(questions, ref)       # ids of NEED_REF_CATS questions left without one
    check_references(questions, by_q, ref, recorded, results)  # stored ratings of other references: refused

As FastChat's single-answer judging (gen_judgment.py), the file's answers are used for the
categories that need a reference (NEED_REF_CATS) only; a question's own "reference" is the
fallback, per turn. fastchat_lines reads the lines of both FastChat files (this one and
question.jsonl).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..paths import read_text, text_lines

NEED_REF_CATS = ("math", "reasoning", "coding")  # FastChat's (without its arena-hard-200)


@dataclass
class ReferenceFile:
    path: str
    sha256: str
    answers: dict[str, list[str]]  # question_id (as a string) -> one answer per turn

    def record(self) -> dict:
        """What eval.json records of it."""
        return {"path": str(Path(self.path).resolve()), "sha256": self.sha256}


def fastchat_lines(path, text: str, what: str, ok, needs: str):
    """(file:line, object) for each non-blank line of a FastChat JSONL file (question.jsonl, a
    reference-answer file): refused, by file:line, a line not JSON, one without question_id or
    that ``ok(object)`` rejects (``needs``: what a line needs), a question_id that is not an
    integer or a non-empty string (id_ok), a question_id given twice."""
    seen = {}
    for n, line in enumerate(text_lines(text), 1):  # (an editor's line numbers: paths.text_lines)
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be one "
                              f"{what} object") from None
        if not isinstance(d, dict) or "question_id" not in d or not ok(d):
            raise ConfigError(f"{where}: a {what} needs {needs}")
        if not id_ok(d["question_id"]):  # (was: any value, made a string: "None", "{'a': 1}", "")
            raise ConfigError(f"{where}: question_id {json.dumps(d['question_id'])} is not an id: give an integer "
                              f"(as MT-Bench's) or a non-empty string")
        qid = str(d["question_id"])
        if qid in seen:  # (FastChat keeps the last one silently: most likely a mistake)
            raise ConfigError(f"{where}: question_id {qid} again (first at {seen[qid]}); ids must be unique: "
                              f"delete one of the two lines")
        seen[qid] = where
        yield where, d


def id_ok(qid) -> bool:
    """A question_id: an integer (FastChat's; not a bool) or a non-empty string."""
    return (isinstance(qid, int) and not isinstance(qid, bool)) or (isinstance(qid, str) and bool(qid.strip()))


def turns_ok(turns) -> bool:
    """A FastChat "turns": a list of non-empty strings."""
    return isinstance(turns, list) and bool(turns) and all(isinstance(t, str) and t.strip() for t in turns)


def _answer_ok(d: dict) -> bool:
    choices = d.get("choices")
    return isinstance(choices, list) and bool(choices) and isinstance(choices[0], dict) \
        and turns_ok(choices[0].get("turns"))


def read_reference_answers(path: str | Path) -> ReferenceFile:
    path = Path(path)
    data, text = read_text(path, f"--reference {path}", "give FastChat's reference-answer file, e.g. "
                           "fastchat/llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl")
    answers = {}
    for where, d in fastchat_lines(path, text, "reference answer", _answer_ok,
                                   "question_id and choices[0].turns (a list of non-empty strings, one per turn), "
                                   "as FastChat's reference_answer/gpt-4.jsonl has"):
        answers[str(d["question_id"])] = d["choices"][0]["turns"]
    if not answers:
        raise ConfigError(f"--reference {path}: no reference answer in it (an empty file?)")
    return ReferenceFile(str(path), hashlib.sha256(data).hexdigest(), answers)


def apply_references(questions: list, ref: ReferenceFile | None) -> list[str]:
    """Set each question's per-turn reference (in place): for a NEED_REF_CATS question, the file's
    answer for the turn, else the question's own; other categories keep their own. Returns the
    NEED_REF_CATS questions left with a turn without a reference (see unreferenced)."""
    for q in questions:
        own = q.reference or []
        mine = (ref.answers.get(q.id, []) if ref and q.category in NEED_REF_CATS else [])
        q.reference = [mine[k] if k < len(mine) else (own[k] if k < len(own) else None) for k in range(len(q.turns))]
    return unreferenced((q.id, q.category, q.reference) for q in questions)


def unreferenced(rows) -> list[str]:
    """Of ``rows`` (question id, category, each turn's reference), the NEED_REF_CATS questions with a
    turn without a reference: the id, or "ID turn K" when another turn has one."""
    out = []
    for qid, category, refs in rows:
        gaps = [k + 1 for k, r in enumerate(refs) if not r]
        if category in NEED_REF_CATS and gaps:
            out.append(qid if len(gaps) == len(refs) else f"{qid} turn {', '.join(map(str, gaps))}")
    return out


def reference_warning(missing: list[str], ref: ReferenceFile | None) -> str:
    """The warning for the ``missing`` of apply_references (judged without: see docs/eval.md for
    why this is not refused)."""
    where = f"--reference {ref.path}" if ref else "a --reference file"
    todo = ("add theirs to that file" if ref else "give FastChat's with --reference (its "
            "data/mt_bench/reference_answer/gpt-4.jsonl)") + ", or a \"reference\" to the questions,"
    return (f"warning: {len(missing)} {'/'.join(NEED_REF_CATS)} question(s) have no reference answer (neither in "
            f"{where} nor their own \"reference\"), and are judged without one, unlike FastChat's MT-Bench: "
            f"{', '.join(missing)}; {todo} for comparable scores")


def check_references(questions: list, by_q: dict, ref: ReferenceFile | None, recorded: dict | None,
                     results: Path) -> None:
    """Refuse the stored ratings (``by_q``: question id -> its records) made with other reference
    answers than the questions have now; ``recorded``: eval.json's "reference_answers"."""
    changed = [q.id for q in questions if q.id in by_q and first_changed(by_q[q.id], q.reference) is not None]
    if not changed:
        return
    if recorded != (ref.record() if ref else None):
        why = f"eval.json has {'--reference ' + recorded['path'] if recorded else 'no --reference file'}"
    else:  # (the same file as eval.json's: not what changed)
        why = "the --reference eval.json has: the questions' own \"reference\" changed, or a --rejudge was cut short"
    raise ConfigError(f"{results} has ratings made with other reference answers than now (questions "
                      f"{', '.join(changed)}; {why}); give --rejudge to re-rate them (the agent is not run "
                      f"again), or another -o")


def first_changed(recs: list[dict], refs: list) -> int | None:
    """The first turn whose stored record was rated with another reference than ``refs`` gives now
    (its rating and the later turns', which see it as context, are stale); None: all the same."""
    for k, r in enumerate(recs):
        now = refs[k] if k < len(refs) else None
        if (r.get("reference") or None) != (now or None):
            return k
    return None


def record_reference(settings: Path, ref: ReferenceFile | None) -> None:
    """Record ``ref`` in eval.json (``settings``) as "reference_answers" (null: no file); written
    whole or not at all."""
    from .results import write_settings

    have = json.loads(settings.read_text())
    want = ref.record() if ref else None
    if "reference_answers" not in have or have["reference_answers"] != want:
        write_settings(settings, {**have, "reference_answers": want})
